"""Configuration dataclasses and named presets.

`ModelConfig` holds every number that determines a tensor shape, so a checkpoint's config alone
rebuilds its network; `TrainConfig` holds the optimisation options. Presets are plain functions.

Source for the `paper` sizes and optimiser settings: Chung et al. 2015, section 5.1 and Table 4
(Blizzard), and the authors' public code (github.com/jych/nips2015_vrnn, github.com/jych/cle).
"""

from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields

from .audio import FRAME_SIZE, WINDOW_FRAMES

FAMILIES = ("rnn-gauss", "rnn-gmm", "vrnn-i-gauss", "vrnn-gauss", "vrnn-gmm")
PRESETS = ("tiny", "cpu", "paper")
PRECISIONS = ("fp32", "bf16", "auto")
LOSS_SCALES = ("sequence", "frame")
LR_SCHEDULES = ("constant", "cosine")
AUTHORS_MAX_NORM = 1.9365  # jych/cle WeightNorm: every W's output-unit norm clipped to this after each update
AUTHORS_SIGMA_BIAS = 0.6  # jych/nips2015_vrnn: init_b_sig = InitCell('const', mean=0.6), sigma = softplus + 1e-4


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


def option(default, help: str, low: float | None = None, high: float | None = None, low_open: bool = False,
           flag: str | None = None, choices: tuple[str, ...] | None = None):
    """A dataclass field with its help text and valid range in its metadata: low <= value <= high (low <
    value with low_open), or one of `choices` for a text option. The one home of an option: `check_option`
    enforces the range in the config and `python -m vrnn train` builds its flag (--name-with-dashes, or
    `flag`) from it."""
    return field(default=default, metadata={"help": help, "low": low, "high": high, "low_open": low_open,
                                            "flag": flag, "choices": choices})


def check_option(f: Field, value) -> None:
    """Raise ValueError naming the option unless `value` is in field `f`'s range (see `option`)."""
    m = f.metadata
    if m.get("choices"):
        if value not in m["choices"]:
            raise ValueError(f"{f.name} must be one of {', '.join(m['choices'])}, got {value!r}.")
        return
    low, high = m.get("low"), m.get("high")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{f.name} must be a finite number, got {value}.")
    if low is not None and (value <= low if m.get("low_open") else value < low):
        raise ValueError(f"{f.name} must be {'above' if m.get('low_open') else 'at least'} {low}, got {value}.")
    if high is not None and value > high:
        raise ValueError(f"{f.name} must be at most {high}, got {value}.")


@dataclass
class TrainConfig:
    """Optimisation options (authors' code: Adam 3e-4, gradient norm clipped at 5). Each field's help text
    and valid range are in its metadata (`option`); the CLI's train flags are made from them.

    Raises ValueError for a value outside its range (a batch of 0, a negative learning rate, ...).
    """

    lr: float = option(3e-4, "Adam learning rate", low=0, low_open=True)
    batch_size: int = option(64, "0.5 s windows per update (the global batch, over all processes)", low=1)
    window_frames: int = option(WINDOW_FRAMES, "frames per training window (40 frames of 200 samples = 0.5 s)", low=1)
    steps: int = option(2000, "optimiser updates in total", low=1)
    clip_norm: float = option(5.0, "clip the global gradient norm to this before each step", low=0, low_open=True)
    seed: int = option(0, "seed for weights, windows and noise", low=0)
    snapshot_every: int = option(500, "keep a snapshot every N steps (0: none)", low=0)
    num_workers: int = option(0, "data-loading worker processes", low=0, flag="--workers")
    max_bad_steps: int = option(50, "stop after this many non-finite steps in a row", low=1)
    checkpoint_every: int = option(0, "also refresh RUN_DIR/last.safetensors every N steps (0: only by time and "
                                      "at epoch ends)", low=0)
    checkpoint_minutes: float = option(5.0, "refresh RUN_DIR/last.safetensors when it is older than this many "
                                            "minutes", low=0, low_open=True)
    precision: str = option("fp32", "matrix products in bf16 under torch.autocast (weights, Adam state, the "
                                    "decoder, log-densities, KL and the loss in fp32), fp32, or auto: bf16 where the "
                                    "CPU reports avx512_bf16/AMX or the CUDA device supports it",
                            choices=PRECISIONS)
    # The recipe (issue 12): the defaults keep the recipe of the first bundled models; the authors' values
    # (jych/nips2015_vrnn with jych/cle) are in each help text; docs/ablation.md compares them.
    sigma_bias: float = option(0.0, "initial bias of the sigma heads (prior, encoder, decoder): sigma = "
                                    "softplus(raw) + sigma_min starts near softplus(bias) (authors: 0.6)")
    loss_scale: str = option("sequence", "the loss whose gradient is clipped: 'sequence' = negative ELBO per "
                                         "sequence (nats per 0.5 s, batch mean); 'frame' = per-frame mean with "
                                         "the gradient divided by the batch size before the clip (authors)",
                             choices=LOSS_SCALES)
    max_norm: float = option(0.0, "after each update, clip every feed-forward and LSTM-input weight row "
                                  "(one unit's incoming weights) to this L2 norm; 0: off (authors: 1.9365)",
                             low=0)
    carry_state: int = option(0, "carry the LSTM state between consecutive windows of the same stream, "
                                 "reset every N updates (the batches then hold N consecutive windows per "
                                 "stream); 0: every window starts from zero (authors: 4)", low=0)
    lr_schedule: str = option("constant", "learning rate: constant, or linear warm-up over --warmup-steps then "
                                          "cosine decay to lr/10 at --steps", choices=LR_SCHEDULES)
    warmup_steps: int = option(0, "updates of linear learning-rate warm-up (cosine schedule)", low=0)
    init_from: str = option("", "start from the weights and normalisation of this checkpoint (.safetensors "
                                "from train or assets/; same family and sizes) instead of a random init; "
                                "Adam, the step count and the schedule start afresh, and the checkpoints "
                                "record it (continue a finished run for a longer budget)")

    def __post_init__(self) -> None:
        for f in fields(self):
            check_option(f, getattr(self, f.name))


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
