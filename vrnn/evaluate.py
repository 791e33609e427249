"""ELBO and importance-sampled log-likelihood over a set of 0.5 s sequences (Chung et al. 2015, Table 1).

Units as the paper: nats per sequence (40 frames = 0.5 s of 16 kHz audio), averaged over sequences,
in the normalised waveform space the model was trained in; also nats per frame (= per sequence / 40).

Importance sampling (Burda et al. 2016, "Importance Weighted Autoencoders", eq. (8)):

    log p(x) >= L_K = E[ log (1/K) sum_k p(x, z^k) / q(z^k | x) ],   z^k ~ q(z | x)

where each z^k = (z^k_1 .. z^k_T) is drawn from the posterior along its own path (z^k_t depends on
h^k_{t-1}, which depends on z^k_{<t}), and the mean over k is taken with log-sum-exp. L_1 is the ELBO;
L_K is a lower bound on log p(x) that does not decrease with K. For RNN models the log-likelihood is
exact and no sampling happens.

Per frame (`score_each_sequence`): the ELBO is a sum over frames of e_t = log p(x_t | z_t, h_{t-1}) - KL_t
(Chung et al. 2015, eq. (11)), so it splits exactly by frame; for RNNs e_t = log p(x_t | x_{<t}) and the
split is of the exact log-likelihood. L_K (a log of a mean over whole paths) does not split by frame.
`loudness_split` averages e_t over speech frames and over near-silent frames (`NEAR_SILENT_DBFS`), and
`paired_difference` gives a t interval for the mean per-sequence difference of two models on the same
sequences.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .audio import frame, frame_rms_dbfs
from .distributions import log_mean_exp
from .fused import FusedVRNN, inference_threads
from .model import VRNN

NEAR_SILENT_DBFS = -60.0  # dBFS: a frame whose RMS (vrnn.audio.frame_rms_dbfs) is below this is near-silent.
#   Chosen once, on the training split of the Allison corpus (never the test split): its frame loudness has a
#   floor mode at -85..-75 dBFS (pauses: the recording's noise floor) and a speech mode at -25..-10 dBFS;
#   -60 lies 20 dB above the floor mode and puts 7.7% of training frames (8.6% of validation) below it.


@dataclass
class Scores:
    """Average scores over n_sequences sequences of n_frames frames; nats."""

    n_sequences: int
    n_frames: int
    elbo_per_sequence: float
    loglik_per_sequence: float

    @property
    def elbo_per_frame(self) -> float:
        return self.elbo_per_sequence / self.n_frames

    @property
    def loglik_per_frame(self) -> float:
        return self.loglik_per_sequence / self.n_frames

    def to_dict(self) -> dict:
        return {**asdict(self), "elbo_per_frame": self.elbo_per_frame, "loglik_per_frame": self.loglik_per_frame}


@dataclass
class SequenceScores:
    """Scores of S sequences of T frames each, one row per sequence, in the order given; nats, float64.

    frame_elbo: [S, T] e_t = log p(x_t | z_t, h_{t-1}) - KL_t per frame (eq. (11)), averaged over the K
                posterior paths (K = `samples`; one path when K = 1). For RNNs the exact log p(x_t | x_{<t}).
    loglik:     [S] L_K per sequence (Burda et al. 2016); for RNNs the exact log p(x); for a VRNN scored with
                K = 1, the ELBO.
    samples:    K actually used (1 for RNNs, which need no samples).
    """

    frame_elbo: np.ndarray
    loglik: np.ndarray
    samples: int

    @property
    def elbo(self) -> np.ndarray:
        """[S] the ELBO per sequence: sum_t e_t (for RNNs the exact log-likelihood)."""
        return self.frame_elbo.sum(axis=1)

    def summary(self) -> Scores:
        """Averages over the sequences (the `Scores` of `score_sequences`)."""
        S, T = self.frame_elbo.shape
        return Scores(S, T, float(self.elbo.mean()), float(self.loglik.mean()))


@torch.no_grad()
def score_each_sequence(model: VRNN, chunks: np.ndarray | torch.Tensor, samples: int = 1, batch_size: int = 64,
                        seed: int = 0, progress: bool = False, fast: bool = True) -> SequenceScores:
    """Score waveform chunks one by one: per sequence L_K and per frame the ELBO's terms.

    Args:
        model: a trained model (its normalisation is applied here).
        chunks: [S, N] waveform chunks in [-1, 1], N a multiple of the model's frame size (8000 samples = 40
            frames for the paper's unit).
        samples: K, importance samples per sequence for VRNN models (1 = ELBO only).
        batch_size: rows per forward pass; with K > 1 each pass holds max(1, batch_size // K) sequences, each
            repeated K times.
        seed: makes the result deterministic (one torch.Generator drives every pass, in order).
        fast: run the fused CPU path (`vrnn.fused.FusedVRNN`); False runs the readable `model.forward`.

    With K = 1 one pass per batch draws one posterior path per sequence (the ELBO; its noise is drawn as
    training's validation draws it). With K > 1 the K paths of each sequence give both L_K (log-mean-exp of
    their importance weights) and the ELBO's per-frame terms averaged over the K paths.

    Returns SequenceScores. Raises ValueError for no chunks, or samples or batch_size below 1.
    """
    from tqdm import tqdm

    if not all(isinstance(v, numbers.Integral) and v >= 1 for v in (samples, batch_size)):
        raise ValueError(f"samples and batch_size must be whole numbers >= 1, got samples={samples!r}, "
                         f"batch_size={batch_size!r}.")
    chunks = torch.as_tensor(np.asarray(chunks, dtype=np.float32))
    if chunks.ndim != 2 or chunks.shape[0] == 0:
        raise ValueError("No 0.5 s sequences to score: the audio is shorter than one sequence.")
    device = model.x_mean.device
    gen = torch.Generator(device=device).manual_seed(seed)
    X = model.config.x_dim  # samples per frame
    K = samples if model.config.has_latent else 1
    bs = max(1, batch_size // K)  # sequences per pass
    net = FusedVRNN(model, threads=inference_threads(bs, device)) if fast else model
    frame_rows, ll_rows = [], []
    for start in tqdm(range(0, chunks.shape[0], bs), desc="evaluate", unit="batch", disable=not progress):
        x = model.normalize(torch.from_numpy(frame(chunks[start:start + bs].numpy(), X)).to(device))  # [b, T, X]
        b, T = x.shape[:2]
        if K == 1:
            out = net(x, sample=True, generator=gen)
            frame_rows.append((out.log_px - out.kl).double())  # [b, T]
            ll_rows.append(out.elbo.double() if model.config.has_latent else out.log_weight.double())  # [b]
            continue
        out = net(x.repeat(K, 1, 1), sample=True, generator=gen)  # [K * b, T, X]: path k of sequence i at row k * b + i
        frame_rows.append((out.log_px - out.kl).double().view(K, b, T).mean(0))  # [b, T]
        ll_rows.append(log_mean_exp(out.log_weight.double().view(K, b), dim=0))  # [b]
    return SequenceScores(torch.cat(frame_rows).cpu().numpy(), torch.cat(ll_rows).cpu().numpy(), K)


def score_sequences(model: VRNN, chunks: np.ndarray | torch.Tensor, samples: int = 1, batch_size: int = 64,
                    seed: int = 0, progress: bool = False, fast: bool = True) -> Scores:
    """Average scores of waveform chunks: `score_each_sequence(...).summary()` (the same arguments).

    Returns Scores with the ELBO (one posterior path per sequence when samples = 1, else the mean over the K
    paths) and the K-sample estimate of log p(x) (for RNNs both are the exact log-likelihood). Raises
    ValueError for no chunks, or samples or batch_size below 1.
    """
    return score_each_sequence(model, chunks, samples, batch_size, seed, progress, fast).summary()


def _chunk_frame_dbfs(chunks: np.ndarray, n_frames: int, frame_size: int | None) -> np.ndarray:
    """float64 [S, n_frames]: `vrnn.audio.frame_rms_dbfs` of raw waveforms [S, n_frames * F], F = frame_size
    (default: the waveform length / n_frames). Raises ValueError when the lengths do not match."""
    chunks = np.asarray(chunks)
    F = frame_size or chunks.shape[-1] // n_frames
    if F * n_frames != chunks.shape[-1]:
        raise ValueError(f"{n_frames} frames of {F} samples do not make a waveform of {chunks.shape[-1]} samples.")
    return frame_rms_dbfs(chunks, F)


def _scores_and_dbfs(frame_scores: np.ndarray, chunks: np.ndarray,
                     frame_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [S, T] frame_scores, float64 [S, T] dBFS of the frame each scores), shapes checked."""
    scores = np.asarray(frame_scores, dtype=np.float64)
    if scores.ndim != 2 or np.ndim(chunks) != 2 or np.shape(chunks)[0] != scores.shape[0]:
        raise ValueError(f"frame_scores [S, T] and chunks [S, N] must have the same S; got {scores.shape} and "
                         f"{np.shape(chunks)}.")
    return scores, _chunk_frame_dbfs(chunks, scores.shape[1], frame_size)


def _part(scores: np.ndarray, mask: np.ndarray) -> dict:
    """{"frames", "share", "mean_per_frame" (None if empty), "per_sequence"} of the frames in `mask` [S, T]."""
    S, T = scores.shape
    n = int(mask.sum())
    return {"frames": n, "share": n / (S * T), "mean_per_frame": float(scores[mask].mean()) if n else None,
            "per_sequence": float(scores[mask].sum() / S)}


def near_silent_frames(chunks: np.ndarray, n_frames: int, threshold_db: float = NEAR_SILENT_DBFS,
                       frame_size: int | None = None) -> np.ndarray:
    """bool [S, n_frames]: which frames of the raw waveforms `chunks` [S, n_frames * F] (in [-1, 1], before the
    model's normalisation) are near-silent, i.e. have RMS (`vrnn.audio.frame_rms_dbfs`) below `threshold_db`.
    F = frame_size (default: the waveform length / n_frames). Raises ValueError when the lengths do not match."""
    return _chunk_frame_dbfs(chunks, n_frames, frame_size) < threshold_db


def loudness_split(frame_scores: np.ndarray, chunks: np.ndarray, threshold_db: float = NEAR_SILENT_DBFS,
                   frame_size: int | None = None) -> dict:
    """Split per-frame scores by the loudness of the raw waveform frame they score.

    frame_scores: [S, T] nats per frame (e.g. `SequenceScores.frame_elbo`). chunks: [S, T * F] the raw waveforms
    in [-1, 1] (before the model's normalisation), F = frame_size (default: the waveform length / T).
    A frame is near-silent when its RMS (`vrnn.audio.frame_rms_dbfs`) is below `threshold_db`, speech otherwise.

    Returns {"speech": part, "near_silent": part, "threshold_db": threshold_db}, each part
    {"frames": count, "share": count / (S T), "mean_per_frame": mean score over its frames (None if none),
    "per_sequence": sum of its frames' scores / S}. The two "per_sequence" values add up to the mean of
    frame_scores.sum(1). Raises ValueError when the shapes do not match.
    """
    scores, db = _scores_and_dbfs(frame_scores, chunks, frame_size)
    quiet = db < threshold_db
    return {"threshold_db": float(threshold_db), "speech": _part(scores, ~quiet), "near_silent": _part(scores, quiet)}


def loudness_bands(frame_scores: np.ndarray, chunks: np.ndarray, edges_db: tuple[float, ...] | list[float],
                   frame_size: int | None = None) -> list[dict]:
    """Per-frame scores averaged within bands of raw frame loudness (finer than `loudness_split`).

    frame_scores [S, T], chunks [S, T * F] as `loudness_split`; edges_db ascending, in dBFS. The bands are
    [-inf, e_0), [e_0, e_1), ..., [e_last, +inf). Returns one dict per band: {"lo_db", "hi_db" (None for
    infinite), "frames", "share", "mean_per_frame" (None if empty), "per_sequence"}.
    Raises ValueError for shapes that do not match or edges that do not increase.
    """
    edges = [float(e) for e in edges_db]
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"edges_db must increase, got {edges}.")
    scores, db = _scores_and_dbfs(frame_scores, chunks, frame_size)
    band = np.searchsorted(np.asarray(edges), db, side="right")  # [S, T]: 0 below e_0, i for [e_{i-1}, e_i)
    return [{"lo_db": lo, "hi_db": hi, **_part(scores, band == i)}
            for i, (lo, hi) in enumerate(zip([None, *edges], [*edges, None], strict=True))]


@dataclass
class PairedDifference:
    """Mean of per-sequence differences a_i - b_i with a two-sided t interval; nats per sequence.

    n: sequences; mean, se: the mean difference and its standard error sd(d) / sqrt(n) (sd with n - 1);
    t: the Student-t quantile at (1 + confidence) / 2 with n - 1 degrees of freedom; lo, hi = mean -+ t se.
    """

    n: int
    mean: float
    se: float
    t: float
    lo: float
    hi: float
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> PairedDifference:
    """Paired t interval for mean(a - b) over sequences scored by two models (the same sequences, same order).

    d_i = a_i - b_i;  mean(d) -+ t_{(1 + c)/2, n - 1} * sd(d) / sqrt(n)   (scipy.stats.t for the quantile).
    Each a_i, b_i may itself be a Monte Carlo estimate (L_K): its noise is part of sd(d), so the interval
    covers it. Raises ValueError for other than two 1-D arrays of one length >= 2, or confidence not in (0, 1).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"Two 1-D arrays of one length >= 2 are needed; got shapes {a.shape} and {b.shape}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    d = a - b
    n = d.shape[0]
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    t = float(stats.t.ppf((1 + confidence) / 2, n - 1))
    return PairedDifference(n, mean, se, t, mean - t * se, mean + t * se, confidence)
