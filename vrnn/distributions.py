"""Log-densities and divergences used by the VRNN, each with its formula. All in nats.

Reference implementations for the tests: torch.distributions.Normal, kl_divergence,
MixtureSameFamily.

Precision: every function computes in at least float32. Inputs in a 16-bit type (the bf16 outputs of
matrix products under `torch.autocast`, `--precision bf16`) are upcast first (`at_least_fp32`), so the
log-densities, the KL and the loss summed from them are float32; float64 inputs stay float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def at_least_fp32(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor as float32 if it is a 16-bit float (bf16, fp16), else unchanged (float32, float64)."""
    return tuple(t.float() if t.is_floating_point() and t.element_size() < 4 else t for t in tensors)


def std_from_raw(raw: torch.Tensor, sigma_min: float = 1e-4) -> torch.Tensor:
    """sigma = softplus(raw) + sigma_min (the authors' parameterisation, jych/nips2015_vrnn), in at least
    float32 (a bf16 raw is upcast first: bf16's 8 bits of mantissa cannot hold sigma_min beside 1)."""
    (raw,) = at_least_fp32(raw)
    return F.softplus(raw) + sigma_min


def gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density summed over the last dimension.

    log N(x; mu, diag(sigma^2)) = -1/2 sum_d [ log 2 pi + 2 log sigma_d + ((x_d - mu_d) / sigma_d)^2 ]

    x, mu, sigma: [..., D] (broadcastable). Returns [...] in nats.
    """
    x, mu, sigma = at_least_fp32(x, mu, sigma)
    return -0.5 * (LOG_2PI + 2.0 * torch.log(sigma) + ((x - mu) / sigma) ** 2).sum(-1)


def gaussian_kl_per_dim(mu_q: torch.Tensor, sigma_q: torch.Tensor, mu_p: torch.Tensor,
                        sigma_p: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(q || p) between diagonal Gaussians, one term per dimension.

    KL_d = log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2
    (the KL term of Chung et al. 2015, eq. (11), with q the approximate posterior of eqs. (9)-(10) and p the
    prior of eq. (5).)

    All arguments [..., Z] (broadcastable). Returns [..., Z] in nats, >= 0.
    """
    mu_q, sigma_q, mu_p, sigma_p = at_least_fp32(mu_q, sigma_q, mu_p, sigma_p)
    var_ratio = (sigma_q / sigma_p) ** 2
    return 0.5 * (var_ratio + ((mu_q - mu_p) / sigma_p) ** 2 - 1.0 - torch.log(var_ratio))


def gaussian_kl(mu_q: torch.Tensor, sigma_q: torch.Tensor, mu_p: torch.Tensor, sigma_p: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(q || p) between diagonal Gaussians, summed over the last dimension
    (`gaussian_kl_per_dim` summed). All arguments [..., Z]; returns [...] in nats, >= 0."""
    return gaussian_kl_per_dim(mu_q, sigma_q, mu_p, sigma_p).sum(-1)


def gmm_log_prob(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mixture of K diagonal Gaussians over the whole frame, one set of weights per frame.

    log p(x) = logsumexp_k [ log pi_k + log N(x; mu_k, diag(sigma_k^2)) ],  pi = softmax(logits)
    (the authors' `cle` GMM cost: the mixture is over whole frames, not per dimension).

    x: [..., D]; logits: [..., K]; mu, sigma: [..., K, D]. Returns [...] in nats.
    """
    (logits,) = at_least_fp32(logits)
    comp = gaussian_log_prob(x.unsqueeze(-2), mu, sigma)  # [..., K]
    return torch.logsumexp(torch.log_softmax(logits, dim=-1) + comp, dim=-1)


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w_k), computed stably with logsumexp along `dim` (K = size of `dim`)."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])
