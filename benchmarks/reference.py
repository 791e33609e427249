"""A straightforward VRNN, written as most public implementations write it: the speed baseline.

Every network (phi_x, the encoder, the prior, phi_z, the decoder and the LSTM cell) and the per-step
costs (KL_t and log p(x_t | z_t, h_{t-1})) run inside one Python loop over time steps, as in
emited/VariationalRecurrentNeuralNetwork and the many VRNN repositories derived from it. Nothing is
precomputed, batched over time or fused. One concession, so that both paths see the same noise: its
random numbers come pre-drawn (`vrnn.model.generation_noise`, `noise=` in `forward`) where public code
draws them inside the loop, which would cost it an estimated ~2 % more (two `randn` calls of ~5 us in a
generation step of ~550 us).

The modules carry the same names and shapes as `vrnn.VRNN`, so `ReferenceVRNN.from_model(model)`
loads a model's own state dict (strictly) and the two compute the same numbers: `tests/test_reference.py`
checks that, and `benchmarks/engine.py` times both. The log-densities and the KL are written out here
again, from their formulas, instead of importing `vrnn.distributions`, so that a change there is caught.

Shapes are batch first: x [B, T, X], per-step results [B, T], latent statistics [B, T, Z].
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vrnn.config import ModelConfig  # noqa: E402
from vrnn.model import VRNN, VRNNOutput, generation_noise, mlp  # noqa: E402

LOG_2PI = math.log(2.0 * math.pi)


def _std(raw: torch.Tensor, sigma_min: float) -> torch.Tensor:
    return F.softplus(raw) + sigma_min  # sigma = softplus(raw) + sigma_min


def _kl_gauss(mu_q, sigma_q, mu_p, sigma_p) -> torch.Tensor:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) = sum_d [2 log(sigma_p/sigma_q) + (sigma_q^2 + (mu_q-mu_p)^2)/sigma_p^2 - 1] / 2."""
    return 0.5 * (2 * torch.log(sigma_p) - 2 * torch.log(sigma_q)
                  + (sigma_q.pow(2) + (mu_q - mu_p).pow(2)) / sigma_p.pow(2) - 1).sum(-1)


def _log_gauss(x, mu, sigma) -> torch.Tensor:
    """log N(x; mu, diag sigma^2) = -sum_d [log 2 pi + 2 log sigma_d + ((x_d - mu_d)/sigma_d)^2] / 2."""
    return -0.5 * (LOG_2PI + 2 * torch.log(sigma) + ((x - mu) / sigma).pow(2)).sum(-1)


class ReferenceVRNN(nn.Module):
    """The straightforward per-step VRNN (all five families), weight-compatible with `vrnn.VRNN`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        X, H, Z = c.x_dim, c.h_dim, c.z_dim
        self.register_buffer("x_mean", torch.tensor(0.0))
        self.register_buffer("x_std", torch.tensor(1.0))
        self.phi_x = mlp(X, c.phi_x)
        dz = 0
        if c.has_latent:
            self.phi_z = mlp(Z, c.phi_z)
            dz = c.phi_z[-1]
            self.encoder = mlp(c.phi_x[-1] + H, c.encoder)
            self.encoder_head = nn.Linear(c.encoder[-1], 2 * Z)
            if c.learned_prior:
                self.prior = mlp(H, c.prior)
                self.prior_head = nn.Linear(c.prior[-1], 2 * Z)
        self.decoder = mlp(dz + H, c.decoder)
        out = c.n_components * (1 + 2 * X) if c.gmm_output else 2 * X
        self.decoder_head = nn.Linear(c.decoder[-1], out)
        self.rnn = nn.LSTMCell(c.phi_x[-1] + dz, H)

    @classmethod
    def from_model(cls, model: VRNN) -> ReferenceVRNN:
        """A reference with `model`'s weights (its state dict, loaded strictly), same device and dtype."""
        ref = cls(model.config).to(device=model.x_mean.device, dtype=model.rnn.weight_hh.dtype)
        ref.load_state_dict(model.state_dict())
        return ref.train(model.training)

    def normalize(self, waveform: torch.Tensor) -> torch.Tensor:
        return (waveform - self.x_mean) / self.x_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.x_std + self.x_mean

    # -- the networks of one step --
    def _prior(self, h):
        c = self.config
        if not c.learned_prior:
            return torch.zeros(h.shape[0], c.z_dim, dtype=h.dtype, device=h.device), \
                torch.ones(h.shape[0], c.z_dim, dtype=h.dtype, device=h.device)
        mu, raw = self.prior_head(self.prior(h)).chunk(2, dim=-1)
        return mu, _std(raw, c.sigma_min)

    def _decoder(self, phi_z_t, h):
        c = self.config
        inp = h if phi_z_t is None else torch.cat([phi_z_t, h], dim=-1)
        raw = self.decoder_head(self.decoder(inp))
        if not c.gmm_output:
            mu, s = raw.chunk(2, dim=-1)
            return mu, _std(s, c.sigma_min)
        K, X = c.n_components, c.x_dim
        logits = raw[:, :K]
        rest = raw[:, K:].reshape(-1, K, 2 * X)
        return logits, rest[..., :X], _std(rest[..., X:], c.sigma_min)

    def _log_px(self, x_t, dec):
        if not self.config.gmm_output:
            return _log_gauss(x_t, *dec)
        logits, mu, sigma = dec  # mixture over whole frames: logsumexp_k [log pi_k + log N(x; mu_k, sigma_k)]
        return torch.logsumexp(F.log_softmax(logits, -1) + _log_gauss(x_t[:, None], mu, sigma), dim=-1)

    def forward(self, x: torch.Tensor, sample: bool = True, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> VRNNOutput:
        """Teacher-forced pass over normalised frames x [B, T, X]; same contract as `vrnn.VRNN.forward`.

        With the same `noise` [B, T, Z] (or sample=False, the posterior-mean path) the results equal
        `vrnn.VRNN`'s up to float rounding.
        """
        c = self.config
        B, T, _ = x.shape
        if sample and c.has_latent and noise is None:
            noise = torch.randn(B, T, c.z_dim, generator=generator, device=x.device, dtype=x.dtype)
        h = torch.zeros(B, c.h_dim, dtype=x.dtype, device=x.device)
        cell = torch.zeros(B, c.h_dim, dtype=x.dtype, device=x.device)
        log_px, kl, log_pz, log_qz, mu_q, sd_q, mu_p, sd_p, zs = ([] for _ in range(9))
        for t in range(T):
            x_t = x[:, t]
            phi_x_t = self.phi_x(x_t)
            if not c.has_latent:
                log_px.append(self._log_px(x_t, self._decoder(None, h)))
                h, cell = self.rnn(phi_x_t, (h, cell))
                continue
            enc_mu, enc_raw = self.encoder_head(self.encoder(torch.cat([phi_x_t, h], dim=-1))).chunk(2, dim=-1)
            enc_sd = _std(enc_raw, c.sigma_min)
            prior_mu, prior_sd = self._prior(h)
            z_t = enc_mu + enc_sd * noise[:, t] if sample else enc_mu
            phi_z_t = self.phi_z(z_t)
            dec = self._decoder(phi_z_t, h)
            kl.append(_kl_gauss(enc_mu, enc_sd, prior_mu, prior_sd))
            log_px.append(self._log_px(x_t, dec))
            log_pz.append(_log_gauss(z_t, prior_mu, prior_sd))
            log_qz.append(_log_gauss(z_t, enc_mu, enc_sd))
            mu_q.append(enc_mu)
            sd_q.append(enc_sd)
            mu_p.append(prior_mu)
            sd_p.append(prior_sd)
            zs.append(z_t)
            h, cell = self.rnn(torch.cat([phi_x_t, phi_z_t], dim=-1), (h, cell))
        if not c.has_latent:
            lp = torch.stack(log_px, 1)
            return VRNNOutput(log_px=lp, kl=torch.zeros_like(lp))
        s = lambda v: torch.stack(v, 1)  # noqa: E731
        return VRNNOutput(log_px=s(log_px), kl=s(kl), log_pz=s(log_pz), log_qz=s(log_qz), posterior_mean=s(mu_q),
                          posterior_std=s(sd_q), prior_mean=s(mu_p), prior_std=s(sd_p), z=s(zs))

    @torch.no_grad()
    def sample(self, n_frames: int, batch_size: int = 1, generator: torch.Generator | None = None,
               output_noise: bool = True) -> torch.Tensor:
        """Generate normalised frames [B, T, X]: z_t ~ prior, x_t ~ decoder, then the LSTM step.

        Takes its random numbers from `vrnn.model.generation_noise`, as `vrnn.VRNN.sample` does (all drawn
        before the loop: eps_z [T, B, Z], Gumbel noise [T, B, K] for GMMs, eps_x [T, B, X]), so the same
        seed gives the same audio. The mixture component is the Gumbel-max draw argmax_k (logits_k + g_k).
        """
        c = self.config
        p = self.rnn.weight_hh
        eps_z, gumbel, eps_x = generation_noise(c, n_frames, batch_size, generator, output_noise, p.device, p.dtype)
        h = torch.zeros(batch_size, c.h_dim, dtype=p.dtype, device=p.device)
        cell = torch.zeros_like(h)
        frames = []
        for t in range(n_frames):
            phi_z_t = None
            if c.has_latent:
                mu, sd = self._prior(h)
                z_t = mu + sd * eps_z[t]
                phi_z_t = self.phi_z(z_t)
            dec = self._decoder(phi_z_t, h)
            if c.gmm_output:
                logits, mu, sd = dec
                k = torch.argmax(logits + gumbel[t], -1)  # [B]
                rows = torch.arange(batch_size, device=p.device)
                mu, sd = mu[rows, k], sd[rows, k]
            else:
                mu, sd = dec
            x_t = mu + sd * eps_x[t] if output_noise else mu
            frames.append(x_t)
            phi_x_t = self.phi_x(x_t)
            inp = phi_x_t if phi_z_t is None else torch.cat([phi_x_t, phi_z_t], dim=-1)
            h, cell = self.rnn(inp, (h, cell))
        return torch.stack(frames, 1)


@torch.no_grad()
def reference_analyze(ref: ReferenceVRNN, waveform: np.ndarray) -> dict[str, np.ndarray | float]:
    """What `vrnn.analyze` computes, the straightforward way: the posterior-mean pass over one clip
    (float32 [N] at 16 kHz; trailing samples past the last whole 200-sample frame dropped).

    Returns numpy arrays kl [T], delta [T] (delta_t = sum_j (mu_t^j - mu_{t-1}^j)^2, delta_0 = 0),
    log_px [T], z_mean [T, Z] (None for RNN models) and the float elbo = sum_t (log_px - kl).
    """
    X = ref.config.x_dim
    n = len(waveform) // X
    frames = torch.from_numpy(np.ascontiguousarray(waveform[:n * X], dtype=np.float32)).view(1, n, X)
    out = ref(ref.normalize(frames.to(ref.x_mean.device)), sample=False)
    res = {"log_px": out.log_px[0].double().cpu().numpy(), "kl": out.kl[0].double().cpu().numpy(),
           "elbo": float(out.elbo[0]), "delta": None, "z_mean": None}
    if out.posterior_mean is not None:
        mu = out.posterior_mean[0]
        res["z_mean"] = mu.double().cpu().numpy()
        res["delta"] = np.concatenate([[0.0], ((mu[1:] - mu[:-1]) ** 2).sum(-1).double().cpu().numpy()])
    return res


@torch.no_grad()
def reference_generate(ref: ReferenceVRNN, seconds: float, seed: int = 0, output_noise: bool = True) -> np.ndarray:
    """What `vrnn.generate` computes for one sample, with the straightforward loop: float32 [N] at 16 kHz."""
    n_frames = max(1, int(round(seconds * 16_000 / ref.config.x_dim)))
    gen = torch.Generator(device=ref.x_mean.device).manual_seed(seed)
    x = ref.sample(n_frames, 1, generator=gen, output_noise=output_noise)
    return ref.denormalize(x).reshape(-1).float().cpu().numpy()
