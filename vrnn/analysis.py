"""The per-frame quantities of Chung et al. 2015, Figure 2, for one clip, and sampling audio.

    delta_t = sum_j (mu_{z,t}^j - mu_{z,t-1}^j)^2     change of the posterior mean (delta_0 = 0)
    KL_t    = KL( q(z_t | x_t, h_{t-1}) || p(z_t | h_{t-1}) )   nats, closed form
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, frame, frame_times, resample
from .distributions import gaussian_kl_per_dim
from .fused import SPLIT_MAX_BATCH, FusedVRNN, inference_threads, intra_op_threads
from .model import VRNN, VRNNOutput

CSV_COLUMNS = ("time_s", "delta_t", "kl_t_nats", "log_px_t_nats")  # the per-frame table's columns
_PER_FRAME = ("delta", "kl", "log_px", "z_mean", "z_std", "prior_mean", "prior_std", "kl_per_dim")


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
        return self.kl is not None  # None for RNN models (and z_mean too, except in a summary without it)

    @property
    def n_frames(self) -> int:
        return len(self.times)

    def astype(self, dtype=np.float32) -> Analysis:
        """A copy with every per-frame array in `dtype` (times stay float64; arrays already in `dtype` are
        shared, not copied): float32 halves the memory of a long clip. The waveform is shared."""
        conv = lambda v: None if v is None else np.asarray(v, dtype=dtype)  # noqa: E731
        return dataclasses.replace(self, **{f: conv(getattr(self, f)) for f in _PER_FRAME})

    def table(self) -> dict[str, np.ndarray]:
        """Per-frame columns [T]: time_s, delta_t, kl_t_nats, log_px_t_nats (no delta_t or kl_t_nats for RNN
        models)."""
        time_s, delta_t, kl_t, log_px_t = CSV_COLUMNS
        cols = {time_s: self.times}
        if self.has_latent:
            cols[delta_t], cols[kl_t] = self.delta, self.kl
        cols[log_px_t] = self.log_px
        return cols

    def to_csv(self, header: bool = True) -> str:
        """The per-frame table as CSV text, one row per frame, the header
        time_s, delta_t, kl_t_nats, log_px_t_nats (frame centre in s; delta_t; KL_t and log p(x_t | .) in
        nats). RNN models have no latent variable: their delta_t and kl_t_nats cells are empty, so every
        model's file has the same columns. The one writer of `vrnn analyze --csv` and the app's download;
        header=False gives the rows alone, to append one block of `analyze_blocks` after another."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(CSV_COLUMNS)
        empty = [""] * self.n_frames
        delta = self.delta if self.has_latent else empty
        kl = self.kl if self.has_latent else empty
        g = lambda v: v if v == "" else f"{v:.6g}"  # noqa: E731
        w.writerows([f"{t:.5f}", g(d), g(k), g(lp)] for t, d, k, lp in zip(self.times, delta, kl, self.log_px,
                                                                             strict=True))
        return buf.getvalue()


ANALYSIS_BLOCK_FRAMES = 1024  # frames per block of `analyze_blocks` (12.8 s): the most held at a time
Progress = Callable[[int, int], None]  # progress(done_frames, total_frames), called after every block


def analyze_blocks(model: VRNN, pieces: Iterable[np.ndarray], *, sample: bool = False, seed: int = 0,
                   fast: bool = True, total_frames: int | None = None, progress: Progress | None = None,
                   block_frames: int | None = None, threads: int | None = None) -> Iterator[Analysis]:
    """Figure 2's quantities for a clip of any length that arrives in pieces, one block at a time.

    The posterior pass runs over blocks of `block_frames` frames, the LSTM state (h, c) carried from each
    block to the next, so the numbers are those of one pass over the whole clip (`analyze` is this
    function with the blocks put together); only one block's activations and results are in memory at
    a time, so memory does not grow with the clip's length.

    Args:
        model: from `load_checkpoint`.
        pieces: float32 [n] pieces, in order, of one mono waveform at 16 kHz, of any lengths (e.g. the
            iterator of `vrnn.audio.read_audio_blocks`). The samples past the last whole frame are dropped.
        sample, seed, fast: as `analyze`.
        total_frames: the clip's length in frames if known, for `progress`.
        progress: called after each block as progress(done_frames, total_frames) (total_frames is at least
            done_frames; the last call has done_frames == total_frames).
        block_frames: frames per block; None: ANALYSIS_BLOCK_FRAMES (1024 = 12.8 s of 200-sample frames).
        threads: as `analyze` (torch's thread count is set for each block's pass and restored after it).

    Yields one `Analysis` per block, for frames [start, start + n) of the clip: `times` are the clip's
    (s), delta_t of a block's first frame is taken against the previous block's last posterior mean
    (0 only at t = 0), `elbo` is this block's share (nats; the clip's ELBO is the sum over blocks),
    `waveform` the block's samples. Arrays are in the model's dtype (float32 for a loaded checkpoint).

    Raises AudioError for NaN or infinite samples (when their piece is reached) or, at the end, a clip
    shorter than one frame (the model's x_dim samples: 200 = 12.5 ms).
    """
    device, dtype = model.x_mean.device, model.x_mean.dtype  # float32, or float64 for a model cast with .double()
    gen = torch.Generator(device=device).manual_seed(seed)
    n_threads = threads or inference_threads(1, device)
    net = FusedVRNN(model, threads=n_threads) if fast else model
    X = model.config.x_dim  # samples per frame: the model's own (200 = 12.5 ms for every bundled model)
    step = (block_frames or ANALYSIS_BLOCK_FRAMES) * X  # samples per block
    pending = np.zeros(0, np.float32)  # samples not yet analysed, fewer than one block (until the end)
    state, last_mu, done, n_samples = None, None, 0, 0

    def run(samples: np.ndarray) -> Analysis:
        nonlocal state, last_mu, done
        frames = frame(samples, X)  # [n, X]
        with torch.inference_mode(), intra_op_threads(n_threads if device.type == "cpu" else None):
            x = model.normalize(torch.from_numpy(np.ascontiguousarray(frames)).to(device, dtype))[None]  # [1, n, X]
            out = net(x, sample=sample, generator=gen, state=state)
            state = out.state
            part = _block_analysis(out, done, last_mu, frames, sample)
            if out.posterior_mean is not None:
                last_mu = out.posterior_mean[0, -1]  # [Z]
        done += frames.shape[0]
        if progress is not None:
            progress(done, max(done, total_frames or 0))
        return part

    for piece in pieces:
        piece = np.asarray(piece, dtype=np.float32).reshape(-1)
        if not np.isfinite(piece).all():
            raise AudioError("The clip contains NaN or infinite samples.")
        n_samples += piece.shape[0]
        pending = np.concatenate([pending, piece]) if pending.size else piece
        cut = (pending.shape[0] // step) * step
        for i in range(0, cut, step):
            yield run(pending[i:i + step])
        pending = pending[cut:]
    tail = (pending.shape[0] // X) * X
    if tail:
        yield run(pending[:tail])
    if done == 0:
        raise AudioError(f"The clip has {n_samples} samples; at least one frame of {X} is needed.")
    if progress is not None and total_frames is not None and total_frames != done:
        progress(done, done)


def _block_analysis(out: VRNNOutput, start: int, last_mu: torch.Tensor | None, frames: np.ndarray,
                    sample: bool) -> Analysis:
    """One block's `Analysis` from the model's output for it (batch of one); `start` is its first frame's
    index in the clip, `last_mu` [Z] the previous block's last posterior mean (None for the first)."""
    n = frames.shape[0]
    times = (np.arange(start, start + n) + 0.5) * (frames.shape[1] / SAMPLE_RATE)  # = frame_times(T, X)[start:start + n]
    np_ = lambda t: t.cpu().numpy()  # noqa: E731
    kw = dict(times=times, log_px=np_(out.log_px[0]), elbo=float(out.elbo[0]), waveform=frames.reshape(-1),
              sampled=sample)
    if out.posterior_mean is None:
        return Analysis(delta=None, kl=None, z_mean=None, z_std=None, prior_mean=None, prior_std=None,
                        kl_per_dim=None, **kw)
    mu = out.posterior_mean[0]  # [n, Z]
    previous = mu[:1] if last_mu is None else last_mu[None]  # delta_0 = 0
    delta = ((mu - torch.cat([previous, mu[:-1]])) ** 2).sum(-1)  # [n]
    kl_dim = gaussian_kl_per_dim(mu, out.posterior_std[0], out.prior_mean[0], out.prior_std[0])  # [n, Z]
    return Analysis(delta=np_(delta), kl=np_(out.kl[0]), z_mean=np_(mu), z_std=np_(out.posterior_std[0]),
                    prior_mean=np_(out.prior_mean[0]), prior_std=np_(out.prior_std[0]), kl_per_dim=np_(kl_dim), **kw)


def analyze(model: VRNN, waveform: np.ndarray, sample_rate: float = SAMPLE_RATE, sample: bool = False,
            seed: int = 0, fast: bool = True, progress: Progress | None = None,
            threads: int | None = None) -> Analysis:
    """Run the posterior pass of `model` over one clip and return Figure 2's quantities.

    Args:
        model: from `load_checkpoint`.
        waveform: mono float32 [N] at `sample_rate` (use `load_audio` for files; the shape and rate
            contract is in `vrnn.audio`'s docstring). Not normalised per clip: the model's global training
            statistics are applied.
        sample_rate: Hz, any positive rate; other than 16 kHz the clip is resampled to 16 kHz (soxr, HQ)
            first, so `Analysis.waveform` and the frames are always at 16 kHz.
        sample: by default the pass follows the posterior mean (z_t = mu_z,t, no sampling noise), so a
            figure is reproducible; True draws z_t ~ q(z_t | x_t, h_{t-1}) with `seed`.
        fast: run the fused CPU path (`vrnn.fused.FusedVRNN`, split over torch's threads); False runs
            the readable `model.forward` (the same numbers, slower).
        progress: called after each block of 1024 frames (12.8 s) as progress(done_frames, total_frames).
        threads: CPU threads for the pass (torch's intra-op count while it runs, and the fused path's
            column split); default `vrnn.fused.default_threads()`: 1, or VRNN_THREADS.

    The pass runs in blocks (`analyze_blocks`), so besides the clip and the result only one block's
    activations are in memory; the per-frame arrays are in the model's dtype (float32 for a loaded
    checkpoint). `elbo` is evaluated along the analysed path (mean path by default: then it is the
    ELBO's integrand at z = mu, not a bound in expectation). Raises AudioError for a waveform that is not
    mono [N] ([N, 1] and [1, N] are accepted), a sample rate that is not a positive number, non-finite
    samples, or fewer samples at 16 kHz than one frame (200 = 12.5 ms for every bundled model).
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        if waveform.ndim != 2 or 1 not in waveform.shape:
            raise AudioError(f"analyze takes a mono waveform [N]; got an array of shape {waveform.shape}. "
                             "Average the channels first, or read the file with load_audio.")
        waveform = waveform.reshape(-1)
    if not np.isfinite(waveform).all():
        raise AudioError("The clip contains NaN or infinite samples.")
    waveform = resample(waveform, sample_rate)  # [N] at 16 kHz
    X = model.config.x_dim  # samples per frame: the model's own (200 = 12.5 ms for every bundled model)
    if waveform.shape[0] < X:
        raise AudioError(f"The clip has {waveform.shape[0]} samples at {SAMPLE_RATE} Hz; at least one frame of "
                         f"{X} is needed.")
    T = waveform.shape[0] // X
    samples = waveform[:T * X]
    cols: dict[str, np.ndarray | None] = {}
    elbo, i = 0.0, 0  # i: the block's first frame
    for part in analyze_blocks(model, [samples], sample=sample, seed=seed, fast=fast, total_frames=T,
                               progress=progress, threads=threads):
        if not cols:  # the clip's arrays, filled block by block
            cols = {name: None if getattr(part, name) is None
                    else np.empty((T, *getattr(part, name).shape[1:]), getattr(part, name).dtype)
                    for name in _PER_FRAME}
        for name, col in cols.items():
            if col is not None:
                col[i:i + part.n_frames] = getattr(part, name)
        elbo += part.elbo
        i += part.n_frames
    return Analysis(times=frame_times(T, X), elbo=elbo, waveform=samples.copy(), sampled=sample, **cols)


_PER_FRAME = ("delta", "kl", "log_px", "z_mean", "z_std", "prior_mean", "prior_std", "kl_per_dim")  # [T, ...]


@torch.inference_mode()
def generate(model: VRNN, seconds: float = 3.0, seed: int = 0, n_samples: int = 1,
             output_noise: bool = True, fast: bool = True, threads: int | None = None,
             state: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """Sample speech-like audio from the model (Chung et al. 2015, Figure 3).

    z_t comes from the prior p(z_t | h_{t-1}) and x_t from p(x_t | z_t, h_{t-1}); the result is
    de-normalised with the model's training statistics. Returns float32 [N] at 16 kHz (n_samples = 1)
    or [n_samples, N]. `fast` runs the fused CPU loop (`vrnn.fused.FusedVRNN.sample`), False the readable
    `model.sample`; both draw the same noise for a seed and give the same audio. output_noise=False takes
    the decoder's mean for each x_t instead of a draw (not the paper's samples: no output noise). threads:
    CPU threads for up to SPLIT_MAX_BATCH samples (default `vrnn.fused.default_threads()`: 1, or
    VRNN_THREADS); larger batches keep torch's setting. state: (h_0, c_0), [n_samples, H] each, the LSTM
    state to start from (e.g. after conditioning on a clip: `vrnn.latent.continue_clip`); zeros by default.
    Raises ValueError for a length that is not a positive finite number, n_samples < 1, or a state of
    another shape.
    """
    if not (isinstance(seconds, numbers.Real) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive finite number, got {seconds!r}.")
    if not (isinstance(n_samples, numbers.Integral) and n_samples >= 1):
        raise ValueError(f"n_samples must be a whole number >= 1, got {n_samples!r}.")
    n_frames = max(1, int(round(seconds * SAMPLE_RATE / model.config.x_dim)))
    gen = torch.Generator(device=model.x_mean.device).manual_seed(seed)
    device = model.x_mean.device
    n = threads or inference_threads(n_samples, device)
    net = FusedVRNN(model, threads=n) if fast else model
    small = device.type == "cpu" and n_samples <= SPLIT_MAX_BATCH
    with intra_op_threads(n if small else None):
        x = net.sample(n_frames, batch_size=n_samples, generator=gen, output_noise=output_noise, state=state)  # [B, T, X]
    audio = model.denormalize(x).reshape(n_samples, -1).float().cpu().numpy()
    return audio[0] if n_samples == 1 else audio
