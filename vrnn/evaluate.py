"""ELBO and importance-sampled log-likelihood over a set of 0.5 s sequences (Chung et al. 2015, Table 1).

Units as the paper: nats per sequence (40 frames = 0.5 s of 16 kHz audio), averaged over sequences,
in the normalised waveform space the model was trained in; also nats per frame (= per sequence / 40).

Importance sampling (Burda et al. 2016, "Importance Weighted Autoencoders", eq. (8)):

    log p(x) >= L_K = E[ log (1/K) sum_k p(x, z^k) / q(z^k | x) ],   z^k ~ q(z | x)

where each z^k = (z^k_1 .. z^k_T) is drawn from the posterior along its own path (z^k_t depends on
h^k_{t-1}, which depends on z^k_{<t}), and the mean over k is taken with log-sum-exp. L_1 is the ELBO;
L_K is a lower bound on log p(x) that does not decrease with K. For RNN models the log-likelihood is
exact and no sampling happens.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .audio import frame
from .distributions import log_mean_exp
from .fused import FusedVRNN, inference_threads
from .model import VRNN


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


@torch.no_grad()
def score_sequences(model: VRNN, chunks: np.ndarray | torch.Tensor, samples: int = 1, batch_size: int = 64,
                    seed: int = 0, progress: bool = False, fast: bool = True) -> Scores:
    """Score waveform chunks.

    Args:
        model: a trained model (its normalisation is applied here).
        chunks: [S, N] waveform chunks in [-1, 1], N a multiple of 200 (8000 for the paper's unit).
        samples: K, importance samples per sequence for VRNN models (1 = ELBO only).
        batch_size: sequences per forward pass (each repeated K times).
        seed: makes the result deterministic.
        fast: run the fused CPU path (`vrnn.fused.FusedVRNN`); False runs the readable `model.forward`.

    Returns Scores with the ELBO (posterior sampled once per sequence) and the K-sample estimate
    of log p(x) (for RNNs both are the exact log-likelihood). Raises ValueError for no chunks, or samples or
    batch_size below 1.
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
    n_frames = chunks.shape[1] // X
    elbo_sum, ll_sum = 0.0, 0.0
    K = samples if model.config.has_latent else 1
    bs = max(1, batch_size // max(1, K)) if K > 1 else batch_size
    net = FusedVRNN(model, threads=inference_threads(bs, device)) if fast else model
    for start in tqdm(range(0, chunks.shape[0], bs), desc="evaluate", unit="batch", disable=not progress):
        x = model.normalize(torch.from_numpy(frame(chunks[start:start + bs].numpy(), X)).to(device))  # [b, T, X]
        b = x.shape[0]
        out = net(x, sample=True, generator=gen)
        elbo_sum += out.elbo.sum().item()
        if K == 1:
            ll_sum += out.log_weight.sum().item() if not model.config.has_latent else out.elbo.sum().item()
            continue
        xk = x.repeat(K, 1, 1)  # [K * b, T, X], sample k of sequence i at row k * b + i
        log_w = net(xk, sample=True, generator=gen).log_weight.view(K, b)  # [K, b]
        ll_sum += log_mean_exp(log_w, dim=0).sum().item()
    S = chunks.shape[0]
    return Scores(S, n_frames, elbo_sum / S, ll_sum / S)
