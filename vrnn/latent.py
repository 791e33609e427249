"""What the latent variable does over a clip, and what the model hears.

    p = fit_pca(a.z_mean)                                   # a projection fitted on this clip's posterior means
    xy = p(a.z_mean)                                        # [T, 3] the trajectory; p(a.prior_mean) beside it
    heard = reconstruct(model, waveform)                    # float32 [N]: decoder mean along the posterior-mean path
    more = continue_clip(model, waveform, at=1.0, seconds=2.0, seed=0)   # condition on 0..1 s, then sample

`listen` (behind `reconstruct` and the conditioning of `continue_clip`) runs the model one frame at a time
with its public parts (`VRNN.step`, `prior_params`, `decoder_params`; Chung et al. 2015, eqs. (5)-(9)),
because `VRNN.forward` returns neither the decoder's parameters nor the LSTM state; `continue_clip` then
samples with `generate(state=...)` (`VRNN.sample` or its fused twin) from that state. tests/test_latent.py checks the
loop against `VRNN.forward` (KL_t, log p(x_t | .), posterior means) and the continuation from t = 0 against
`generate` with the same seed, so a change of the model shows up there. No Streamlit, no files here except `Projection.save`/`load`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .analysis import generate
from .audio import FRAME_SIZE, SAMPLE_RATE, AudioError, frame
from .distributions import gaussian_kl
from .model import VRNN

Progress = Callable[[int, int], None]  # called as progress(frames_done, frames_total)
PROGRESS_EVERY = 256  # frames between progress calls of the frame loops (3.2 s of audio)


# -- projections of the latent space ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Projection:
    """A linear map of latent vectors to k principal axes: y = (z - mean) @ components.T.

    mean [Z]; components [k, Z], orthonormal rows ordered by explained variance, each signed so that its
    largest-magnitude loading is positive (a fit is reproducible, not up to a sign); explained [k] the
    fraction of the fitted data's variance along each axis; source: what it was fitted on, in words.
    """

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    source: str = ""

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """[..., Z] -> [..., k] float32."""
        return ((np.asarray(z, dtype=np.float64) - self.mean) @ self.components.T).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "components": self.components.tolist(),
                "explained": self.explained.tolist(), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> Projection:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["components"], dtype=np.float64),
                   np.asarray(d["explained"], dtype=np.float64), str(d.get("source", "")))

    def save(self, path: str | os.PathLike, **extra) -> None:
        """Write as JSON (plus `extra` keys, e.g. the checkpoint's SHA-256)."""
        Path(path).write_text(json.dumps({**self.to_dict(), **extra}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple[Projection, dict]:
        """(projection, the whole JSON dict) from `save`'s file."""
        d = json.loads(Path(path).read_text())
        return cls.from_dict(d), d


def fit_pca(z: np.ndarray, k: int = 3, source: str = "") -> Projection:
    """Principal axes of latent vectors z [N, Z] (N >= 2): the SVD of the centred data (numpy.linalg.svd).

    k is capped at min(N, Z). Returns a `Projection`; `explained` sums to at most 1.
    """
    z = np.asarray(z, dtype=np.float64).reshape(-1, np.shape(z)[-1])
    if z.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 latent vectors, got {z.shape[0]}.")
    mean = z.mean(0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    k = min(k, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    var = s ** 2
    explained = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
    return Projection(mean, comps, explained, source)


@torch.inference_mode()
def window_posterior_means(model: VRNN, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Posterior means mu_z,t of 0.5 s windows, each run from a zero state as in training.

    windows: float32 [S, W] waveforms (W a multiple of 200 samples) in [-1, 1]. Returns float32 [S * W / 200, Z].
    Raises ValueError for a model without latent variables.
    """
    if not model.config.has_latent:
        raise ValueError(f"A {model.config.family} model has no latent variable to project.")
    out = []
    dev = model.x_mean.device
    for i in range(0, len(windows), batch_size):
        x = model.normalize(torch.from_numpy(frame(np.ascontiguousarray(windows[i:i + batch_size]))).to(dev))
        out.append(model(x, sample=False).posterior_mean.reshape(-1, model.config.z_dim).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.z_dim), np.float32)


def fit_checkpoint_projection(model: VRNN, windows: np.ndarray, source: str, k: int = 3) -> Projection:
    """A fixed projection for one checkpoint: PCA of the posterior means of `windows` [S, W] (see
    `window_posterior_means`), so that every clip is drawn in the same axes. `source` says which windows."""
    return fit_pca(window_posterior_means(model, windows), k, source)


# -- the model one frame at a time ----------------------------------------------------------------------------

@dataclass
class Heard:
    """A teacher-forced pass along the posterior-mean path (z_t = mu_z,t), frame by frame.

    x_mean: [T, X] the decoder's mean of p(x_t | z_t, h_{t-1}) in normalised units (for a GMM output the
        mixture's mean, sum_k pi_k mu_k); kl, log_px: [T] nats; z_mean: [T, Z] (None for RNNs);
    state: (h_T, c_T) [1, H] each, the LSTM state after the last frame.
    """

    x_mean: torch.Tensor
    kl: torch.Tensor
    log_px: torch.Tensor
    z_mean: torch.Tensor | None
    state: tuple[torch.Tensor, torch.Tensor]


def _decoder_mean(model: VRNN, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The mean of p(x_t | .) from `decoder_params`: mu [..., X], or sum_k softmax(logits)_k mu_k for a GMM."""
    if model.config.gmm_output:
        logits, mu, _ = params
        return (logits.softmax(-1)[..., None] * mu).sum(-2)
    return params[0]


def _check(waveform: np.ndarray, frame_size: int = FRAME_SIZE) -> np.ndarray:
    w = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if w.shape[0] < frame_size:
        raise AudioError(f"The clip has {w.shape[0]} samples; at least one frame of {frame_size} is needed.")
    if not np.isfinite(w).all():
        raise AudioError("The clip contains NaN or infinite samples.")
    return w


@torch.inference_mode()
def listen(model: VRNN, waveform: np.ndarray, n_frames: int | None = None,
           progress: Progress | None = None) -> Heard:
    """Run the model over the first `n_frames` frames of a clip (all whole frames by default), one frame at
    a time along the posterior mean, keeping what `VRNN.forward` does not return: the decoder's mean at
    every frame and the final LSTM state.

    waveform: float32 [N] at 16 kHz, not normalised (the model's statistics are applied). Per frame t:
    `VRNN.step` with no noise (the encoder q(z_t | x_t, h_{t-1}), eq. 9, z_t = mu_z,t, h_t = LSTM(...),
    eq. 7); then, batched over the stacked h_{t-1}: the prior (eq. 5), the decoder (eq. 6) and KL_t.
    progress(frames_done, n_frames) is called every PROGRESS_EVERY frames and at the end.
    Raises AudioError for fewer than one frame or non-finite samples.
    """
    w = _check(waveform, model.config.x_dim)
    c = model.config
    dev, dtype = model.x_mean.device, model.x_mean.dtype
    frames = frame(w, c.x_dim)
    T = frames.shape[0] if n_frames is None else max(0, min(int(n_frames), frames.shape[0]))
    x = model.normalize(torch.from_numpy(np.ascontiguousarray(frames[:T])).to(dev, dtype))  # [T, X]
    h = torch.zeros(1, c.h_dim, device=dev, dtype=dtype)
    state = (h, torch.zeros_like(h))  # (h_0, c_0)
    px = model.phi_x(x)  # [T, Dx], all frames at once (it does not depend on the state)
    hs, posts = [], []
    for t in range(T):
        hs.append(state[0])  # h_{t-1}
        post, state = model.step(px[t:t + 1], state)  # eps None: z_t = mu_z,t
        posts.append(post)
        if progress is not None and (t + 1) % PROGRESS_EVERY == 0:
            progress(t + 1, T)
    h_prev = torch.cat(hs) if hs else x.new_zeros(0, c.h_dim)  # [T, H]
    if c.has_latent:
        mu_q, sigma_q = (torch.cat(v) for v in zip(*[(p.mean, p.std) for p in posts], strict=True)) if posts \
            else (x.new_zeros(0, c.z_dim),) * 2
        phi_z = torch.cat([p.phi_z for p in posts]) if posts else None
        mu_p, sigma_p = model.prior_params(h_prev)  # eq. (5)
        dec = model.decoder_params(phi_z, h_prev)  # eq. (6)
        kl = gaussian_kl(mu_q, sigma_q, mu_p, sigma_p)
        z = mu_q
    else:
        dec = model.decoder_params(None, h_prev)
        kl = torch.zeros(T, device=dev, dtype=dtype)
        z = None
    if progress is not None:
        progress(T, T)
    return Heard(x_mean=_decoder_mean(model, dec), kl=kl, log_px=model.output_log_prob(x, dec), z_mean=z,
                 state=state)


def reconstruct(model: VRNN, waveform: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """What the model hears: the decoder's mean of p(x_t | z_t = mu_z,t, h_{t-1}) at every frame, along the
    posterior-mean path, de-normalised with the model's training statistics.

    waveform: float32 [N] at 16 kHz. Returns float32 [T * 200] at 16 kHz (T whole frames), sample-aligned
    with the input: frame t of the result is the model's reconstruction of frame t. For an RNN model it is
    the one-step prediction of frame t from the frames before it.
    """
    heard = listen(model, waveform, progress=progress)
    return model.denormalize(heard.x_mean).reshape(-1).float().cpu().numpy()


@torch.inference_mode()
def continue_clip(model: VRNN, waveform: np.ndarray, at: float, seconds: float, seed: int = 0,
                  output_noise: bool = True, progress: Progress | None = None, fast: bool = True,
                  threads: int | None = None) -> np.ndarray:
    """Condition on the clip up to `at` seconds, then sample from the prior onward (Chung et al. 2015, sec. 3.2).

    The first floor(at / 12.5 ms) frames are teacher-forced along the posterior mean (`listen`); from that
    LSTM state `generate(state=...)` draws each new frame's z_t ~ p(z_t | h_{t-1}), x_t ~ p(x_t | z_t,
    h_{t-1}) (its mean if output_noise=False) and feeds both back, with the random numbers drawn from
    torch.Generator().manual_seed(seed) as `generate` draws them: the same seed gives the same audio, and at = 0
    gives exactly `generate`'s audio. `fast` and `threads` as in `generate` (the fused loop, or the readable
    model's; the same audio up to float rounding). progress(frames_done, frames_total) while conditioning
    (the long part of a long clip), and (total, total) at the end.

    Returns float32 [round(seconds / 12.5 ms) * 200] at 16 kHz: the continuation alone, starting at
    floor(at / 12.5 ms) * 12.5 ms on the clip's time axis. Raises ValueError for seconds <= 0 or a negative
    `at`; AudioError for a bad clip.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}.")
    if at < 0:
        raise ValueError(f"the continuation point must be >= 0 s, got {at}.")
    X = model.config.x_dim
    n_prefix = int(np.floor(at * SAMPLE_RATE / X + 1e-9))
    n_new = max(1, int(round(seconds * SAMPLE_RATE / X)))
    w = _check(waveform, X)
    n_prefix = min(n_prefix, len(w) // X)
    total = n_prefix + n_new
    state = None  # (h_0, c_0) = zeros: `generate`
    if n_prefix > 0:
        told = None if progress is None else (lambda done, _: progress(done, total))
        state = listen(model, w, n_prefix, progress=told).state  # [1, H] each
    audio = generate(model, seconds, seed=int(seed), output_noise=output_noise, fast=fast, threads=threads,
                     state=state)
    if progress is not None:
        progress(total, total)
    return audio


def frame_labels(times: np.ndarray, segments: Sequence[tuple[float, float, str]]) -> list[str]:
    """The label of each frame from reference segments [(start_s, end_s, label), ...] (e.g. phones): the
    segment holding the frame's centre `times` [T] s, '' where none does. Segments may be unsorted."""
    out = [""] * len(times)
    for start, end, label in segments:
        i0, i1 = np.searchsorted(times, [start, end], side="left")
        for i in range(int(i0), int(i1)):
            out[i] = str(label)
    return out


__all__ = ["Projection", "fit_pca", "window_posterior_means", "fit_checkpoint_projection", "Heard", "listen",
           "reconstruct", "continue_clip", "frame_labels"]
