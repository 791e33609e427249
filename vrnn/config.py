"""Configuration dataclasses and named presets.

`ModelConfig` holds every number that determines a tensor shape, so a checkpoint's config alone
rebuilds its network; `TrainConfig` holds the optimisation options. Presets are plain functions.

Source for the `paper` sizes and optimiser settings: Chung et al. 2015, section 5.1 and Table 4
(Blizzard), and the authors' public code (github.com/jych/nips2015_vrnn, github.com/jych/cle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .audio import FRAME_SIZE

FAMILIES = ("rnn-gauss", "rnn-gmm", "vrnn-i-gauss", "vrnn-gauss", "vrnn-gmm")
PRESETS = ("tiny", "cpu", "paper")


@dataclass(frozen=True)
class ModelConfig:
    """Every shape-determining number of a model (Chung et al. 2015, section 3).

    family: one of FAMILIES. `rnn-*` have no latent variable; `vrnn-i-gauss` has the prior N(0, I)
        at every step; `*-gmm` decoders emit a mixture of `n_components` diagonal Gaussians over the
        whole frame (one set of mixture weights per frame, as the authors' `cle` GMM cost).
    x_dim: samples per frame (200 = 12.5 ms at 16 kHz).
    h_dim: LSTM units. z_dim: latent dimensions.
    phi_x, phi_z, encoder, prior, decoder: hidden sizes of each ReLU network, input to output.
    sigma_min: added to softplus for every standard deviation (authors' code: 1e-4).
    """

    family: str = "vrnn-gauss"
    x_dim: int = FRAME_SIZE
    h_dim: int = 512
    z_dim: int = 64
    phi_x: tuple[int, ...] = (256, 256)
    phi_z: tuple[int, ...] = (256, 256)
    encoder: tuple[int, ...] = (256, 256)
    prior: tuple[int, ...] = (256, 256)
    decoder: tuple[int, ...] = (256, 256)
    n_components: int = 20
    sigma_min: float = 1e-4

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Unknown model family {self.family!r}; choose one of {', '.join(FAMILIES)}.")
        for name in ("phi_x", "phi_z", "encoder", "prior", "decoder"):
            sizes = getattr(self, name)
            if not sizes or any(int(s) <= 0 for s in sizes):
                raise ValueError(f"ModelConfig.{name} needs at least one positive layer size, got {sizes!r}.")
            object.__setattr__(self, name, tuple(int(s) for s in sizes))

    @property
    def has_latent(self) -> bool:
        """True for the VRNN families (a latent z_t at every step)."""
        return self.family.startswith("vrnn")

    @property
    def learned_prior(self) -> bool:
        """True where the prior p(z_t | h_{t-1}) is a network (False for vrnn-i-gauss and RNNs)."""
        return self.family in ("vrnn-gauss", "vrnn-gmm")

    @property
    def gmm_output(self) -> bool:
        """True where p(x_t | .) is a mixture of `n_components` diagonal Gaussians."""
        return self.family.endswith("gmm")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown model config fields {sorted(unknown)}; was this made by a newer version?")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class TrainConfig:
    """Optimisation options (authors' code: Adam 3e-4, gradient norm clipped at 5).

    batch_size: 0.5 s windows per update (global, over all processes).
    window_frames: frames per training window (40 frames = 8000 samples = 0.5 s).
    steps: total optimiser updates. snapshot_every: steps between kept snapshots (0 = none).
    checkpoint_every / checkpoint_minutes: also refresh last.safetensors every N steps (0: off) and
        whenever it is older than this many minutes, so a crash loses little.
    max_bad_steps: a streak of this many non-finite steps stops the run.
    """

    lr: float = 3e-4
    batch_size: int = 64
    window_frames: int = 40
    steps: int = 2000
    clip_norm: float = 5.0
    seed: int = 0
    snapshot_every: int = 500
    num_workers: int = 0
    max_bad_steps: int = 50
    checkpoint_every: int = 0
    checkpoint_minutes: float = 5.0
    extra: dict = field(default_factory=dict)


def preset(name: str, family: str = "vrnn-gauss") -> ModelConfig:
    """Named model sizes.

    tiny:  for tests; trains in seconds (LSTM 32, latent 8, one 32-unit layer per network).
    cpu:   the bundled checkpoints: LSTM 512, latent 64, two 256-unit ReLU layers per network;
           trains in about an hour on 2 CPU cores. Deviates from the paper (4 layers, LSTM 4000)
           only in size, to fit a laptop.
    paper: the authors' Blizzard sizes (Chung et al. 2015, section 5.1): LSTM 4000, latent 200,
           4 ReLU layers: phi_x 600, phi_z 500, encoder 500, prior 500, decoder 600. For GPUs.

    Raises ValueError for an unknown name or family.
    """
    if name == "tiny":
        return ModelConfig(family=family, h_dim=32, z_dim=8, phi_x=(32,), phi_z=(32,), encoder=(32,),
                           prior=(32,), decoder=(32,), n_components=3)
    if name == "cpu":
        return ModelConfig(family=family)
    if name == "paper":
        return ModelConfig(family=family, h_dim=4000, z_dim=200, phi_x=(600,) * 4, phi_z=(500,) * 4,
                           encoder=(500,) * 4, prior=(500,) * 4, decoder=(600,) * 4)
    raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
