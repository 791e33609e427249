"""The per-frame quantities of Chung et al. 2015, Figure 2, for one clip, and sampling audio.

    delta_t = sum_j (mu_{z,t}^j - mu_{z,t-1}^j)^2     change of the posterior mean (delta_0 = 0)
    KL_t    = KL( q(z_t | x_t, h_{t-1}) || p(z_t | h_{t-1}) )   nats, closed form
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, frame, frame_times
from .distributions import gaussian_kl_per_dim
from .fused import SPLIT_MAX_BATCH, FusedVRNN, inference_threads, intra_op_threads
from .model import VRNN

CSV_COLUMNS = ("time_s", "delta_t", "kl_t_nats", "log_px_t_nats")  # the per-frame table's columns


@dataclass
class Analysis:
    """Figure 2 of Chung et al. 2015 for one clip; T frames of 12.5 ms.

    times [T] s (frame centres); delta [T] (delta_t, 0 at t = 0; squared units of z);
    kl [T] nats; log_px [T] nats (log p(x_t | z_t, h_{t-1}) in normalised space);
    z_mean, z_std, prior_mean, prior_std [T, Z] (None for RNN models); kl_per_dim [T, Z] nats;
    elbo: nats for the whole clip, sum_t (log_px - kl) along the analysed path;
    waveform [N] float32 at 16 kHz, what was analysed (trailing samples past the last whole frame dropped).
    """

    times: np.ndarray
    delta: np.ndarray | None
    kl: np.ndarray | None
    log_px: np.ndarray
    z_mean: np.ndarray | None
    z_std: np.ndarray | None
    prior_mean: np.ndarray | None
    prior_std: np.ndarray | None
    kl_per_dim: np.ndarray | None
    elbo: float
    waveform: np.ndarray
    sample_rate: int = SAMPLE_RATE
    sampled: bool = False

    @property
    def has_latent(self) -> bool:
        return self.z_mean is not None

    @property
    def n_frames(self) -> int:
        return len(self.times)

    def table(self) -> dict[str, np.ndarray]:
        """Per-frame columns [T]: time_s, delta_t, kl_t_nats, log_px_t_nats (no delta_t or kl_t_nats for RNN
        models)."""
        time_s, delta_t, kl_t, log_px_t = CSV_COLUMNS
        cols = {time_s: self.times}
        if self.has_latent:
            cols[delta_t], cols[kl_t] = self.delta, self.kl
        cols[log_px_t] = self.log_px
        return cols

    def to_csv(self) -> str:
        """The per-frame table as CSV text, one row per frame, the header
        time_s, delta_t, kl_t_nats, log_px_t_nats (frame centre in s; delta_t; KL_t and log p(x_t | .) in
        nats). RNN models have no latent variable: their delta_t and kl_t_nats cells are empty, so every
        model's file has the same columns. The one writer of `vrnn analyze --csv` and the app's download."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        empty = [""] * self.n_frames
        delta = self.delta if self.has_latent else empty
        kl = self.kl if self.has_latent else empty
        g = lambda v: v if v == "" else f"{v:.6g}"  # noqa: E731
        w.writerows([f"{t:.5f}", g(d), g(k), g(lp)] for t, d, k, lp in zip(self.times, delta, kl, self.log_px,
                                                                             strict=True))
        return buf.getvalue()


@torch.inference_mode()
def analyze(model: VRNN, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, sample: bool = False,
            seed: int = 0, fast: bool = True, threads: int | None = None) -> Analysis:
    """Run the posterior pass of `model` over one clip and return Figure 2's quantities.

    Args:
        model: from `load_checkpoint`.
        waveform: float32 [N] at `sample_rate` (use `load_audio` for files). Not normalised per clip:
            the model's global training statistics are applied.
        sample_rate: must be 16000 (resample with `load_audio`).
        sample: by default the pass follows the posterior mean (z_t = mu_z,t, no sampling noise), so a
            figure is reproducible; True draws z_t ~ q(z_t | x_t, h_{t-1}) with `seed`.
        fast: run the fused CPU path (`vrnn.fused.FusedVRNN`, split over torch's threads); False runs
            the readable `model.forward` (the same numbers, slower; whole-clip activations in memory).
        threads: CPU threads for the pass (torch's intra-op count and the fused path's column split);
            default `vrnn.fused.default_threads()`: 1, or VRNN_THREADS.

    `elbo` is evaluated along the analysed path (mean path by default: then it is the ELBO's
    integrand at z = mu, not a bound in expectation). Raises AudioError for a rate other than
    16 kHz, non-finite samples, or fewer than 200 samples.
    """
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"analyze expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; load it with load_audio.")
    waveform = np.asarray(waveform, dtype=np.float32).reshape(-1)
    X = model.config.x_dim  # samples per frame: the model's own (200 = 12.5 ms for every bundled model)
    if waveform.shape[0] < X:
        raise AudioError(f"The clip has {waveform.shape[0]} samples; at least one frame of {X} is needed.")
    if not np.isfinite(waveform).all():
        raise AudioError("The clip contains NaN or infinite samples.")
    frames = frame(waveform, X)  # [T, X]
    device = model.x_mean.device
    dtype = model.x_mean.dtype  # float32, or float64 for a model cast with .double()
    x = model.normalize(torch.from_numpy(np.ascontiguousarray(frames)).to(device, dtype))[None]  # [1, T, X]
    gen = torch.Generator(device=device).manual_seed(seed)
    n = threads or inference_threads(1, device)
    net = FusedVRNN(model, threads=n) if fast else model
    with intra_op_threads(n if device.type == "cpu" else None):
        out = net(x, sample=sample, generator=gen)
    times = frame_times(frames.shape[0], X)
    log_px = out.log_px[0].double().cpu().numpy()
    kw = dict(times=times, log_px=log_px, elbo=float(out.elbo[0]), waveform=frames.reshape(-1).copy(),
              sampled=sample)
    if out.posterior_mean is None:
        return Analysis(delta=None, kl=None, z_mean=None, z_std=None, prior_mean=None, prior_std=None,
                        kl_per_dim=None, **kw)
    mu = out.posterior_mean[0]  # [T, Z]
    delta = torch.zeros(mu.shape[0], dtype=mu.dtype, device=mu.device)
    delta[1:] = ((mu[1:] - mu[:-1]) ** 2).sum(-1)
    kl_dim = gaussian_kl_per_dim(mu, out.posterior_std[0], out.prior_mean[0], out.prior_std[0])  # [T, Z]
    np_ = lambda t: t.double().cpu().numpy()  # noqa: E731
    return Analysis(delta=np_(delta), kl=np_(out.kl[0]), z_mean=np_(mu), z_std=np_(out.posterior_std[0]),
                    prior_mean=np_(out.prior_mean[0]), prior_std=np_(out.prior_std[0]), kl_per_dim=np_(kl_dim), **kw)


@torch.inference_mode()
def generate(model: VRNN, seconds: float = 3.0, seed: int = 0, n_samples: int = 1,
             output_noise: bool = True, fast: bool = True, threads: int | None = None) -> np.ndarray:
    """Sample speech-like audio from the model (Chung et al. 2015, Figure 3).

    z_t comes from the prior p(z_t | h_{t-1}) and x_t from p(x_t | z_t, h_{t-1}); the result is
    de-normalised with the model's training statistics. Returns float32 [N] at 16 kHz (n_samples = 1)
    or [n_samples, N]. `fast` runs the fused CPU loop (`vrnn.fused.FusedVRNN.sample`), False the readable
    `model.sample`; both draw the same noise for a seed and give the same audio. output_noise=False takes
    the decoder's mean for each x_t instead of a draw (not the paper's samples: no output noise). threads:
    CPU threads for up to SPLIT_MAX_BATCH samples (default `vrnn.fused.default_threads()`: 1, or
    VRNN_THREADS); larger batches keep torch's setting. Raises ValueError for a non-positive length.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}.")
    n_frames = max(1, int(round(seconds * SAMPLE_RATE / model.config.x_dim)))
    gen = torch.Generator(device=model.x_mean.device).manual_seed(seed)
    device = model.x_mean.device
    n = threads or inference_threads(n_samples, device)
    net = FusedVRNN(model, threads=n) if fast else model
    small = device.type == "cpu" and n_samples <= SPLIT_MAX_BATCH
    with intra_op_threads(n if small else None):
        x = net.sample(n_frames, batch_size=n_samples, generator=gen, output_noise=output_noise)  # [B, T, X]
    audio = model.denormalize(x).reshape(n_samples, -1).float().cpu().numpy()
    return audio[0] if n_samples == 1 else audio
