"""The VRNN of Chung et al. 2015 (section 3) and its RNN baselines, written as the paper writes it.

Pure: no I/O, no logging. Shapes are batch first, [B, T, D]:

    x_t      frame t of the normalised waveform                       x  [B, T, X], X = 200 samples
    h_{t-1}  the LSTM's output before step t (h_0 = 0)                h  [B, T, H]
    z_t      the latent variable of step t                            z  [B, T, Z]

The networks, each a module of `VRNN` named as in the paper (phi^x_tau, phi^z_tau, phi^prior_tau,
phi^enc_tau, phi^dec_tau), and the equation each implements:

    phi_x     features of x_t                   phi_x(x_t)                             [.., X] -> [.., Dx]
    phi_z     features of z_t                   phi_z(z_t)                             [.., Z] -> [.., Dz]
    prior     p(z_t | h_{t-1})      = N(mu_0,t, diag sigma_0,t^2)                      eq. (5)   `prior_params`
    encoder   q(z_t | x_t, h_{t-1}) = N(mu_z,t, diag sigma_z,t^2), from phi_x(x_t)     eq. (9)   `posterior_params`
    decoder   p(x_t | z_t, h_{t-1}) = N(mu_x,t, diag sigma_x,t^2) or a GMM,
              from phi_z(z_t)                                                          eq. (6)   `decoder_params`
    rnn       h_t = LSTM([phi_x(x_t), phi_z(z_t)], h_{t-1})                            eq. (7)   `step`
    objective sum_t [ log p(x_t | z_t, h_{t-1}) - KL(q(z_t | x_t, h_{t-1}) || p(z_t | h_{t-1})) ]
                                                                                       eq. (11)  `VRNNOutput.elbo`

The family switch (`ModelConfig.family`): `vrnn-gauss` and `vrnn-gmm` are the model above with a
Gaussian or a mixture-of-Gaussians output; `vrnn-i-gauss` has no prior network, its prior is N(0, I)
at every step (the paper's VRNN-I); `rnn-gauss` and `rnn-gmm` have no z_t at all:
h_t = LSTM(phi_x(x_t), h_{t-1}) and p(x_t | h_{t-1}) (eq. (1) and (2)), whose log-likelihood is exact.

`VRNN.forward` is the teacher-forced pass (training, evaluation, analysis) and `VRNN.sample` generates
(z_t from the prior, never from the encoder). Only what feeds the recurrence runs inside the time
loop (`step`: encoder, phi_z, LSTM cell); phi_x runs over all steps before it, the prior and the
decoder over the stacked states after it. `vrnn.fused.FusedVRNN` computes the same numbers faster on
CPU from this model's weights; `analyze`, `generate`, `score_sequences` and `train` use it unless
called with `fast=False`; tests/test_fused.py checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

from .config import ModelConfig
from .distributions import at_least_fp32, gaussian_kl, gaussian_log_prob, gmm_log_prob, std_from_raw

INIT_RANGE = 0.08  # weights ~ U(-0.08, 0.08), as the authors' code (jych/nips2015_vrnn)


def mlp(in_dim: int, sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear + ReLU for each size in `sizes`: [..., in_dim] -> [..., sizes[-1]]."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    return nn.Sequential(*layers)


def gaussian_params(raw: torch.Tensor, sigma_min: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A head's output [..., 2D] -> (mu, sigma) [..., D] each, sigma = softplus(raw sigma) + sigma_min."""
    mu, raw_sigma = raw.chunk(2, dim=-1)
    return mu, std_from_raw(raw_sigma, sigma_min)


@dataclass
class VRNNOutput:
    """Per-step results of one teacher-forced pass; all in nats where a log-density.

    log_px:  [B, T] log p(x_t | z_t, h_{t-1}) (the reconstruction term; for RNNs log p(x_t | h_{t-1}))
    kl:      [B, T] KL(q(z_t | x_t, h_{t-1}) || p(z_t | h_{t-1})), closed form; zeros for RNNs
    log_pz:  [B, T] log p(z_t | h_{t-1}) at the z used (None for RNNs)
    log_qz:  [B, T] log q(z_t | x_t, h_{t-1}) at the z used (None for RNNs)
    posterior_mean, posterior_std, prior_mean, prior_std, z: [B, T, Z] (None for RNNs)
    state:   (h_T, c_T), [B, H] each: the LSTM's state after the last step, to go on with the next block of
             a long input (`forward(..., state=out.state)`)
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
    state: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def elbo(self) -> torch.Tensor:
        """[B] sum_t ( log p(x_t | z_t, h_{t-1}) - KL_t ): the ELBO, Chung et al. 2015, eq. (11) (one
        sample of z per step; the KL in closed form). The exact log-likelihood for RNNs."""
        return (self.log_px - self.kl).sum(-1)

    @property
    def log_weight(self) -> torch.Tensor:
        """[B] log p(x, z) - log q(z | x) along the sampled path: one importance weight
        (Burda et al. 2016). Equals `elbo` for RNNs."""
        if self.log_pz is None:
            return self.log_px.sum(-1)
        return (self.log_px + self.log_pz - self.log_qz).sum(-1)


class Posterior(NamedTuple):
    """What one step of the time loop produces besides h_t, each [B, Z] (phi_z [B, Dz])."""

    mean: torch.Tensor  # mu_z,t of q(z_t | x_t, h_{t-1})
    std: torch.Tensor  # sigma_z,t
    z: torch.Tensor  # z_t = mu_z,t + sigma_z,t * eps_t (or mu_z,t on the mean path)
    phi_z: torch.Tensor  # phi_z(z_t)


class VRNN(nn.Module):
    """Variational recurrent neural network and its RNN baselines; the family is `config.family`.

    The module also holds the global normalisation statistics of its training waveforms
    (`x_mean`, `x_std`, 0-dim buffers), applied by `normalize` and inverted by `denormalize`.
    The module names and shapes are the checkpoint format (`vrnn.checkpoint`): keep them.
    """

    def __init__(self, config: ModelConfig, x_mean: float = 0.0, x_std: float = 1.0):
        super().__init__()
        c = self.config = config
        X, H, Z = c.x_dim, c.h_dim, c.z_dim
        self.register_buffer("x_mean", torch.tensor(float(x_mean)))
        self.register_buffer("x_std", torch.tensor(float(x_std)))
        Dx = c.phi_x[-1]
        Dz = c.phi_z[-1] if c.has_latent else 0
        self.phi_x = mlp(X, c.phi_x)  # x_t [.., X] -> [.., Dx]
        if c.has_latent:
            self.phi_z = mlp(Z, c.phi_z)  # z_t [.., Z] -> [.., Dz]
            # q(z_t | x_t, h_{t-1}), eq. (9): [phi_x(x_t), h_{t-1}] [.., Dx + H] -> (mu_z, raw sigma_z) [.., 2Z]
            self.encoder = mlp(Dx + H, c.encoder)
            self.encoder_head = nn.Linear(c.encoder[-1], 2 * Z)
            if c.learned_prior:
                # p(z_t | h_{t-1}), eq. (5): h_{t-1} [.., H] -> (mu_0, raw sigma_0) [.., 2Z]
                self.prior = mlp(H, c.prior)
                self.prior_head = nn.Linear(c.prior[-1], 2 * Z)
        # p(x_t | z_t, h_{t-1}), eq. (6): [phi_z(z_t), h_{t-1}] [.., Dz + H] -> (mu_x, raw sigma_x) [.., 2X],
        # or for a GMM (logits [.., K], then K x (mu_x,k, raw sigma_x,k)) [.., K (1 + 2X)]
        self.decoder = mlp(Dz + H, c.decoder)
        out = c.n_components * (1 + 2 * X) if c.gmm_output else 2 * X
        self.decoder_head = nn.Linear(c.decoder[-1], out)
        # the recurrence, eq. (7): h_t = LSTM([phi_x(x_t), phi_z(z_t)], h_{t-1}); [B, Dx + Dz] -> [B, H]
        self.rnn = nn.LSTMCell(Dx + Dz, H)
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

    # -- the distributions of one step: each returns its parameters --
    def prior_params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_t | h_{t-1}) = N(mu_0,t, diag sigma_0,t^2), eq. (5): h_{t-1} [..., H] -> (mu_0, sigma_0)
        [..., Z] each. N(0, I) for vrnn-i-gauss."""
        if not self.config.learned_prior:
            zeros = h.new_zeros(*h.shape[:-1], self.config.z_dim)
            return zeros, zeros + 1.0
        return gaussian_params(self.prior_head(self.prior(h)), self.config.sigma_min)

    def posterior_params(self, phi_x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z_t | x_t, h_{t-1}) = N(mu_z,t, diag sigma_z,t^2), eq. (9): phi_x(x_t) [..., Dx] and h_{t-1}
        [..., H] -> (mu_z, sigma_z) [..., Z] each. VRNN families only."""
        raw = self.encoder_head(self.encoder(torch.cat([phi_x, h], dim=-1)))  # [..., 2Z]
        return gaussian_params(raw, self.config.sigma_min)

    def decoder_params(self, phi_z: torch.Tensor | None, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """p(x_t | z_t, h_{t-1}), eq. (6): phi_z(z_t) [..., Dz] (None for RNNs) and h_{t-1} [..., H] ->
        (mu_x, sigma_x) [..., X] each, or for a GMM (logits [..., K], mu_x [..., K, X], sigma_x [..., K, X]).

        Always in at least float32, also under `torch.autocast` (`--precision bf16`): a trained decoder
        predicts sigma_x down to about 1e-3 of the signal's scale in quiet frames, where bf16's 8-bit
        mantissa puts errors in mu_x of many sigma_x (measured on the bundled VRNN-Gauss: validation ELBO
        +387 nats per sequence in fp32, -1546 with the whole forward pass in bf16, +385 with the decoder in
        fp32; training in bf16 then moved the fp32 model away from its optimum)."""
        inp = h if phi_z is None else torch.cat([phi_z, h], dim=-1)
        with torch.autocast(inp.device.type, enabled=False):
            raw = self.decoder_head(self.decoder(at_least_fp32(inp)[0]))
        c = self.config
        if not c.gmm_output:
            return gaussian_params(raw, c.sigma_min)
        K, X = c.n_components, c.x_dim
        logits, rest = raw.split([K, 2 * K * X], dim=-1)
        mu, sigma = gaussian_params(rest.unflatten(-1, (K, 2 * X)), c.sigma_min)  # [..., K, X] each
        return logits, mu, sigma

    def output_log_prob(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """log p(x_t | .) of frames x [..., X] under `decoder_params`' output, summed over the frame:
        -> [...] nats (`vrnn.distributions` has each formula)."""
        if self.config.gmm_output:
            return gmm_log_prob(x, *params)
        return gaussian_log_prob(x, *params)

    # -- the teacher-forced pass --
    def step(self, phi_x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
             eps_t: torch.Tensor | None = None) -> tuple[Posterior | None, tuple[torch.Tensor, torch.Tensor]]:
        """One step of the time loop: everything that feeds h_t, nothing else.

        Args:
            phi_x_t: [B, Dx] phi_x(x_t).
            state: (h_{t-1}, c_{t-1}), [B, H] each: the LSTM's output and cell.
            eps_t: [B, Z] N(0, I) noise for z_t, or None to take the posterior mean z_t = mu_z,t.

        Returns (Posterior of step t, or None for the RNN families; (h_t, c_t)).
        """
        h, _ = state
        if not self.config.has_latent:  # RNN: h_t = LSTM(phi_x(x_t), h_{t-1}), eq. (1)
            return None, self.rnn(phi_x_t, state)
        mu_z, sigma_z = self.posterior_params(phi_x_t, h)  # q(z_t | x_t, h_{t-1}), eq. (9)
        z_t = mu_z if eps_t is None else mu_z + sigma_z * eps_t  # reparameterised: z_t ~ q, differentiable
        phi_z_t = self.phi_z(z_t)
        state = self.rnn(torch.cat([phi_x_t, phi_z_t], dim=-1), state)  # h_t, eq. (7)
        return Posterior(mu_z, sigma_z, z_t, phi_z_t), state

    def forward(self, x: torch.Tensor, sample: bool = True, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                state: tuple[torch.Tensor, torch.Tensor] | None = None) -> VRNNOutput:
        """Run the model over normalised frames, teacher-forced, and return the terms of eq. (11).

        Args:
            x: [B, T, X] normalised frames (`normalize` then `audio.frame`).
            sample: draw z_t = mu_z,t + sigma_z,t * eps_t from the posterior (reparameterised); if False,
                follow the posterior mean z_t = mu_z,t (no noise), which makes analysis reproducible.
            noise: optional eps [B, T, Z] ~ N(0, I) to use instead of fresh draws.
            generator: random generator for eps.
            state: (h_0, c_0) [B, H] each to start from, e.g. the previous block's `VRNNOutput.state`
                when a long input goes through in blocks; None: zeros.

        Returns VRNNOutput: per-step log p(x_t | .), KL_t and the latent statistics, all [B, T(, Z)], and
        the final LSTM state.
        """
        c = self.config
        B, T, _ = x.shape
        if sample and c.has_latent and noise is None:
            noise = torch.randn(B, T, c.z_dim, generator=generator, device=x.device, dtype=x.dtype)
        phi_x = self.phi_x(x)  # [B, T, Dx], every step at once: nothing in it depends on h
        if state is None:
            state = (x.new_zeros(B, c.h_dim), x.new_zeros(B, c.h_dim))  # (h_0, c_0)
        h_prev, posteriors = [], []
        for t in range(T):
            h_prev.append(state[0])  # h_{t-1}
            eps_t = noise[:, t] if sample and c.has_latent else None
            posterior, state = self.step(phi_x[:, t], state, eps_t)
            posteriors.append(posterior)
        h_prev = torch.stack(h_prev, 1)  # [B, T, H]: h_0 .. h_{T-1}
        if not c.has_latent:  # RNN: log p(x_t | h_{t-1}), eq. (2); no KL term
            log_px = self.output_log_prob(x, self.decoder_params(None, h_prev))
            return VRNNOutput(log_px=log_px, kl=torch.zeros_like(log_px), state=state)
        mu_q, sigma_q, z, phi_z = (torch.stack(v, 1) for v in zip(*posteriors, strict=True))  # [B, T, Z], phi_z [B, T, Dz]
        mu_p, sigma_p = self.prior_params(h_prev)  # p(z_t | h_{t-1}), eq. (5): [B, T, Z] each
        dec = self.decoder_params(phi_z, h_prev)  # p(x_t | z_t, h_{t-1}), eq. (6)
        return VRNNOutput(
            log_px=self.output_log_prob(x, dec),  # eq. (11), first term
            kl=gaussian_kl(mu_q, sigma_q, mu_p, sigma_p),  # eq. (11), second term
            log_pz=gaussian_log_prob(z, mu_p, sigma_p),
            log_qz=gaussian_log_prob(z, mu_q, sigma_q),
            posterior_mean=mu_q, posterior_std=sigma_q, prior_mean=mu_p, prior_std=sigma_p, z=z, state=state,
        )

    # -- generation --
    @torch.no_grad()
    def sample(self, n_frames: int, batch_size: int = 1, generator: torch.Generator | None = None,
               output_noise: bool = True, noise: GenerationNoise | None = None,
               state: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Generate normalised frames [B, T, X] from the model (Chung et al. 2015, section 3, "Generation").

        Each step draws z_t from the prior p(z_t | h_{t-1}) (never the encoder), x_t from
        p(x_t | z_t, h_{t-1}) (its mean if output_noise=False), then h_t = LSTM([phi_x(x_t), phi_z(z_t)],
        h_{t-1}). All random numbers are drawn before the loop (`generation_noise`, from `generator`),
        so a seed gives the same audio here and in `vrnn.fused`; or pass `noise`.

        state: (h_0, c_0), [B, H] each, the LSTM's output and cell to start from, e.g. the state after
        conditioning on a clip (`vrnn.latent.listen(...).state`); zeros by default. Raises ValueError when
        its shape is not [batch_size, h_dim].
        """
        c = self.config
        dev, dtype = self.x_mean.device, self.rnn.weight_hh.dtype
        check_state(state, batch_size, c.h_dim)
        if noise is None:
            noise = generation_noise(c, n_frames, batch_size, generator, output_noise, dev, dtype)
        if state is None:
            h = torch.zeros(batch_size, c.h_dim, device=dev, dtype=dtype)  # h_0
            state = (h, torch.zeros_like(h))
        frames = []
        for t in range(n_frames):
            h, _ = state
            phi_z_t = None
            if c.has_latent:
                mu_0, sigma_0 = self.prior_params(h)  # p(z_t | h_{t-1}), eq. (5)
                z_t = mu_0 + sigma_0 * noise.eps_z[t]  # [B, Z]
                phi_z_t = self.phi_z(z_t)
            x_t = self.draw_frame(self.decoder_params(phi_z_t, h),  # p(x_t | z_t, h_{t-1}), eq. (6)
                                  None if noise.gumbel is None else noise.gumbel[t],
                                  None if noise.eps_x is None else noise.eps_x[t])
            frames.append(x_t)
            phi_x_t = self.phi_x(x_t)
            rnn_input = phi_x_t if phi_z_t is None else torch.cat([phi_x_t, phi_z_t], dim=-1)
            state = self.rnn(rnn_input, state)  # h_t, eq. (7)
        return torch.stack(frames, 1)

    def draw_frame(self, params: tuple[torch.Tensor, ...], gumbel_t: torch.Tensor | None,
                   eps_t: torch.Tensor | None) -> torch.Tensor:
        """x_t ~ p(x_t | z_t, h_{t-1}) from `decoder_params`' output for a batch [B, .]: x_t = mu + sigma * eps_t
        [B, X], or the mean mu when eps_t is None. For a GMM the component is first drawn by the
        Gumbel-max trick, k = argmax_k (logits_k + gumbel_t,k) ~ Categorical(softmax(logits))."""
        if self.config.gmm_output:
            logits, mu, sigma = params  # [B, K], [B, K, X], [B, K, X]
            k = torch.argmax(logits + gumbel_t, dim=-1)  # [B]
            rows = torch.arange(len(k), device=k.device)
            mu, sigma = mu[rows, k], sigma[rows, k]  # [B, X]
        else:
            mu, sigma = params
        return mu if eps_t is None else mu + sigma * eps_t


def check_state(state: tuple[torch.Tensor, torch.Tensor] | None, batch_size: int, h_dim: int) -> None:
    """ValueError unless `state` is None or (h, c) of shape [batch_size, h_dim] each (a wrong batch would
    otherwise broadcast against the noise without a word)."""
    if state is not None and any(tuple(s.shape) != (batch_size, h_dim) for s in state):
        raise ValueError(f"the state to sample from must be (h, c) of shape [{batch_size}, {h_dim}] each "
                         f"(batch_size, h_dim), got {[tuple(s.shape) for s in state]}.")


@dataclass
class GenerationNoise:
    """The random numbers of one generation, drawn before the loop, time major.

    eps_z:  [T, B, Z] N(0, I), z_t = mu_0,t + sigma_0,t * eps_z (None for RNNs)
    gumbel: [T, B, K] standard Gumbel, the mixture component k_t = argmax_k (logits_k + gumbel_k)
            (the Gumbel-max trick: a draw from softmax(logits); None unless the output is a GMM)
    eps_x:  [T, B, X] N(0, I), x_t = mu_x,t + sigma_x,t * eps_x (None when the output's mean is used)
    """

    eps_z: torch.Tensor | None
    gumbel: torch.Tensor | None
    eps_x: torch.Tensor | None


def generation_noise(config: ModelConfig, n_frames: int, batch_size: int = 1,
                     generator: torch.Generator | None = None, output_noise: bool = True,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> GenerationNoise:
    """Draw all the random numbers of `VRNN.sample` at once, in this order: eps_z, then the Gumbel noise
    (-log(-log u), u ~ U[0, 1)), then eps_x. Shapes in `GenerationNoise`."""
    T, B = n_frames, batch_size
    draw = lambda f, d: f((T, B, d), generator=generator, device=device, dtype=dtype)  # noqa: E731
    eps_z = draw(torch.randn, config.z_dim) if config.has_latent else None
    gumbel = draw(torch.rand, config.n_components).log_().neg_().log_().neg_() if config.gmm_output else None
    eps_x = draw(torch.randn, config.x_dim) if output_noise else None
    return GenerationNoise(eps_z, gumbel, eps_x)
