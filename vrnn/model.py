"""The VRNN and its RNN baselines (Chung et al. 2015, section 3). Pure: no I/O, no logging.

Notation (batch first, [B, T, D]):
    x_t      frame t of the normalised waveform, [B, T, X] with X = 200 samples
    h_{t-1}  LSTM output before step t, [B, T, H]
    z_t      latent variable, [B, T, Z]

    prior    p(z_t | h_{t-1})            = N(mu_0,t, diag sigma_0,t^2)               eq. (5)
    encoder  q(z_t | x_t, h_{t-1})       = N(mu_z,t, diag sigma_z,t^2), from phi_x(x_t)   eq. (9)
    decoder  p(x_t | z_t, h_{t-1})       = N(mu_x,t, diag sigma_x,t^2) or a GMM, from phi_z(z_t)  eq. (6)
    recurrence h_t = LSTM([phi_x(x_t), phi_z(z_t)], h_{t-1})                           eq. (7)

Only what feeds the recurrence runs inside the time loop (the encoder, phi_z and the LSTM cell).
phi_x runs over all steps at once, and the first layers' input projections of the encoder and the
LSTM are precomputed for all steps; the prior and the decoder run batched on the stacked states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .distributions import gaussian_kl, gaussian_log_prob, gmm_log_prob, std_from_raw

INIT_RANGE = 0.08  # weights ~ U(-0.08, 0.08), as the authors' code (jych/nips2015_vrnn)


def mlp(in_dim: int, sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear + ReLU for each size in `sizes`: [..., in_dim] -> [..., sizes[-1]]."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    return nn.Sequential(*layers)


@dataclass
class VRNNOutput:
    """Per-step results of one teacher-forced pass; all in nats where a log-density.

    log_px:  [B, T] log p(x_t | z_t, h_{t-1}) (the reconstruction term; for RNNs log p(x_t | h_{t-1}))
    kl:      [B, T] KL(q(z_t | x_t, h_{t-1}) || p(z_t | h_{t-1})), closed form; zeros for RNNs
    log_pz:  [B, T] log p(z_t | h_{t-1}) at the z used (None for RNNs)
    log_qz:  [B, T] log q(z_t | x_t, h_{t-1}) at the z used (None for RNNs)
    posterior_mean, posterior_std, prior_mean, prior_std, z: [B, T, Z] (None for RNNs)
    """

    log_px: torch.Tensor
    kl: torch.Tensor
    log_pz: torch.Tensor | None = None
    log_qz: torch.Tensor | None = None
    posterior_mean: torch.Tensor | None = None
    posterior_std: torch.Tensor | None = None
    prior_mean: torch.Tensor | None = None
    prior_std: torch.Tensor | None = None
    z: torch.Tensor | None = None

    @property
    def elbo(self) -> torch.Tensor:
        """[B] sum_t ( log p(x_t | z_t, h_{t-1}) - KL_t ): the ELBO (eq. (11)); the exact
        log-likelihood for RNNs."""
        return (self.log_px - self.kl).sum(-1)

    @property
    def log_weight(self) -> torch.Tensor:
        """[B] log p(x, z) - log q(z | x) along the sampled path: one importance weight
        (Burda et al. 2016). Equals `elbo` for RNNs."""
        if self.log_pz is None:
            return self.log_px.sum(-1)
        return (self.log_px + self.log_pz - self.log_qz).sum(-1)


class VRNN(nn.Module):
    """Variational recurrent neural network and its RNN baselines; the family is `config.family`.

    The module also holds the global normalisation statistics of its training waveforms
    (`x_mean`, `x_std`, buffers), applied by `normalize` and inverted by `denormalize`.
    """

    def __init__(self, config: ModelConfig, x_mean: float = 0.0, x_std: float = 1.0):
        super().__init__()
        c = self.config = config
        X, H, Z = c.x_dim, c.h_dim, c.z_dim
        self.register_buffer("x_mean", torch.tensor(float(x_mean)))
        self.register_buffer("x_std", torch.tensor(float(x_std)))
        self.phi_x = mlp(X, c.phi_x)
        dx = c.phi_x[-1]
        dz = 0
        if c.has_latent:
            self.phi_z = mlp(Z, c.phi_z)
            dz = c.phi_z[-1]
            self.encoder = mlp(dx + H, c.encoder)  # input [phi_x(x_t), h_{t-1}]
            self.encoder_head = nn.Linear(c.encoder[-1], 2 * Z)  # mu, raw sigma
            if c.learned_prior:
                self.prior = mlp(H, c.prior)
                self.prior_head = nn.Linear(c.prior[-1], 2 * Z)
        self.decoder = mlp(dz + H, c.decoder)  # input [phi_z(z_t), h_{t-1}]
        out = c.n_components * (1 + 2 * X) if c.gmm_output else 2 * X
        self.decoder_head = nn.Linear(c.decoder[-1], out)
        self.rnn = nn.LSTMCell(dx + dz, H)  # input [phi_x(x_t), phi_z(z_t)]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-0.08, 0.08) weights, zero biases, orthogonal recurrent weights per gate (authors' code)."""
        for name, p in self.named_parameters():
            if name.endswith("bias") or name.startswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -INIT_RANGE, INIT_RANGE)
        H = self.config.h_dim
        with torch.no_grad():
            for k in range(4):  # gates i, f, g, o
                nn.init.orthogonal_(self.rnn.weight_hh[k * H:(k + 1) * H])

    # -- normalisation (one global mean and std of the training waveforms, never per clip) --
    def normalize(self, waveform: torch.Tensor) -> torch.Tensor:
        return (waveform - self.x_mean) / self.x_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.x_std + self.x_mean

    # -- heads: each returns its distribution's parameters --
    def _gaussian(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, s = raw.chunk(2, dim=-1)
        return mu, std_from_raw(s, self.config.sigma_min)

    def prior_params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_t | h_{t-1}): h [..., H] -> (mu, sigma) [..., Z]. N(0, I) for vrnn-i-gauss."""
        if not self.config.learned_prior:
            zeros = h.new_zeros(*h.shape[:-1], self.config.z_dim)
            return zeros, zeros + 1.0
        return self._gaussian(self.prior_head(self.prior(h)))

    def decoder_params(self, phi_z: torch.Tensor | None, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """p(x_t | z_t, h_{t-1}): -> (mu, sigma) [..., X], or (logits [..., K], mu, sigma [..., K, X])."""
        inp = h if phi_z is None else torch.cat([phi_z, h], dim=-1)
        raw = self.decoder_head(self.decoder(inp))
        c = self.config
        if not c.gmm_output:
            return self._gaussian(raw)
        K, X = c.n_components, c.x_dim
        logits, rest = raw.split([K, 2 * K * X], dim=-1)
        mu, s = rest.unflatten(-1, (K, 2 * X)).chunk(2, dim=-1)  # [..., K, X] each
        return logits, mu, std_from_raw(s, c.sigma_min)

    def output_log_prob(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """log p(x_t | .) summed over the frame: x [..., X] -> [...] nats."""
        if self.config.gmm_output:
            return gmm_log_prob(x, *params)
        return gaussian_log_prob(x, *params)

    def sample_output(self, params: tuple[torch.Tensor, ...], generator: torch.Generator | None = None,
                      noise: bool = True) -> torch.Tensor:
        """Draw x_t [B, X] from the decoder's distribution (its mean, or the chosen component's mean,
        when noise=False)."""
        if self.config.gmm_output:
            logits, mu, sigma = params
            k = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)  # [B, 1]
            idx = k[..., None].expand(-1, 1, mu.shape[-1])
            mu, sigma = mu.gather(-2, idx).squeeze(-2), sigma.gather(-2, idx).squeeze(-2)
        else:
            mu, sigma = params
        if not noise:
            return mu
        return mu + sigma * torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)

    # -- the teacher-forced pass --
    def forward(self, x: torch.Tensor, sample: bool = True, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> VRNNOutput:
        """Run the model over normalised frames.

        Args:
            x: [B, T, X] normalised frames (`normalize` then `audio.frame`).
            sample: draw z_t = mu + sigma * eps from the posterior (reparameterised); if False, follow
                the posterior mean z_t = mu_z,t (no noise), which makes analysis reproducible.
            noise: optional eps [B, T, Z] ~ N(0, I) to use instead of fresh draws.
            generator: random generator for eps.

        Returns:
            VRNNOutput with per-step log p(x_t | .), KL_t and the latent statistics, all [B, T(, Z)].
        """
        c = self.config
        B, T, _ = x.shape
        H = c.h_dim
        px = self.phi_x(x)  # [B, T, Dx], all steps at once
        W_ih, W_hh = self.rnn.weight_ih, self.rnn.weight_hh
        dx = px.shape[-1]
        if not c.has_latent:
            return self._forward_rnn(x, px)
        # Input projections of the encoder's first layer and of the LSTM, precomputed for all steps.
        enc_first: nn.Linear = self.encoder[0]
        enc_x = F.linear(px, enc_first.weight[:, :dx], enc_first.bias)  # [B, T, E1]
        gates_x = F.linear(px, W_ih[:, :dx], self.rnn.bias_ih + self.rnn.bias_hh)  # [B, T, 4H]
        # h_{t-1} feeds both the encoder's first layer and the LSTM gates: one matmul per step.
        W_h = torch.cat([enc_first.weight[:, dx:], W_hh], dim=0)  # [E1 + 4H, H]
        W_z = W_ih[:, dx:]  # [4H, Dz]
        E1 = enc_first.weight.shape[0]
        enc_rest = self.encoder[1:]
        if sample and noise is None:
            noise = torch.randn(B, T, c.z_dim, generator=generator, device=x.device, dtype=x.dtype)
        h = x.new_zeros(B, H)
        cell = x.new_zeros(B, H)
        hs, mus, sigmas, zs, phi_zs = [], [], [], [], []
        for t in range(T):
            hs.append(h)  # h_{t-1}
            proj = h @ W_h.t()  # [B, E1 + 4H]
            e = enc_rest(torch.relu(enc_x[:, t] + proj[:, :E1]))
            mu, sigma = self._gaussian(self.encoder_head(e))  # q(z_t | x_t, h_{t-1}), eq. (9)
            z = mu + sigma * noise[:, t] if sample else mu  # reparameterised
            pz = self.phi_z(z)
            gates = torch.addmm(gates_x[:, t] + proj[:, E1:], pz, W_z.t())  # [B, 4H], order i, f, g, o
            i, f, g, o = gates.chunk(4, dim=-1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(cell)  # eq. (7)
            mus.append(mu)
            sigmas.append(sigma)
            zs.append(z)
            phi_zs.append(pz)
        h_prev = torch.stack(hs, 1)  # [B, T, H]
        mu_q, sigma_q, z = torch.stack(mus, 1), torch.stack(sigmas, 1), torch.stack(zs, 1)  # [B, T, Z]
        mu_p, sigma_p = self.prior_params(h_prev)  # [B, T, Z], eq. (5)
        dec = self.decoder_params(torch.stack(phi_zs, 1), h_prev)  # eq. (6)
        return VRNNOutput(
            log_px=self.output_log_prob(x, dec),
            kl=gaussian_kl(mu_q, sigma_q, mu_p, sigma_p),
            log_pz=gaussian_log_prob(z, mu_p, sigma_p),
            log_qz=gaussian_log_prob(z, mu_q, sigma_q),
            posterior_mean=mu_q, posterior_std=sigma_q, prior_mean=mu_p, prior_std=sigma_p, z=z,
        )

    def _forward_rnn(self, x: torch.Tensor, px: torch.Tensor) -> VRNNOutput:
        """RNN baselines: h_t = LSTM(phi_x(x_t), h_{t-1}); p(x_t | h_{t-1}). Exact log-likelihood."""
        B, T, _ = x.shape
        H = self.config.h_dim
        gates_x = F.linear(px, self.rnn.weight_ih, self.rnn.bias_ih + self.rnn.bias_hh)  # [B, T, 4H]
        W_hh = self.rnn.weight_hh
        h = x.new_zeros(B, H)
        cell = x.new_zeros(B, H)
        hs = []
        for t in range(T):
            hs.append(h)
            i, f, g, o = torch.addmm(gates_x[:, t], h, W_hh.t()).chunk(4, dim=-1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(cell)
        h_prev = torch.stack(hs, 1)  # [B, T, H]
        log_px = self.output_log_prob(x, self.decoder_params(None, h_prev))
        return VRNNOutput(log_px=log_px, kl=torch.zeros_like(log_px))

    @torch.no_grad()
    def sample(self, n_frames: int, batch_size: int = 1, generator: torch.Generator | None = None,
               output_noise: bool = True) -> torch.Tensor:
        """Generate normalised frames [B, T, X] from the model (Chung et al. 2015, section 3.2).

        Each step draws z_t from the prior p(z_t | h_{t-1}) (never the encoder), x_t from
        p(x_t | z_t, h_{t-1}) (its mean if output_noise=False), then h_t = LSTM([phi_x(x_t), phi_z(z_t)], h_{t-1}).
        """
        c = self.config
        dev, dtype = self.x_mean.device, self.rnn.weight_hh.dtype
        h = torch.zeros(batch_size, c.h_dim, device=dev, dtype=dtype)
        cell = torch.zeros_like(h)
        out = torch.empty(batch_size, n_frames, c.x_dim, device=dev, dtype=dtype)
        for t in range(n_frames):
            if c.has_latent:
                mu, sigma = self.prior_params(h)
                z = mu + sigma * torch.randn(mu.shape, generator=generator, device=dev, dtype=dtype)
                pz = self.phi_z(z)
                x_t = self.sample_output(self.decoder_params(pz, h), generator, output_noise)
                inp = torch.cat([self.phi_x(x_t), pz], dim=-1)
            else:
                x_t = self.sample_output(self.decoder_params(None, h), generator, output_noise)
                inp = self.phi_x(x_t)
            h, cell = self.rnn(inp, (h, cell))
            out[:, t] = x_t
        return out
