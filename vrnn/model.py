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
Products that share an input are fused into one (h_{t-1} feeds the encoder and the gates), long
inputs run in blocks of BLOCK_FRAMES steps, and the RNN baselines, whose recurrence has no feedback,
use the library's LSTM. Generation must run every network at every step; it fuses the same way.
The speed and its measurements: benchmarks/README.md; equality with a straightforward per-step
implementation: tests/test_reference.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .distributions import gaussian_kl, gaussian_log_prob, gmm_log_prob, std_from_raw

INIT_RANGE = 0.08  # weights ~ U(-0.08, 0.08), as the authors' code (jych/nips2015_vrnn)
BLOCK_FRAMES = 256  # steps per block of a long input (3.2 s): bounds the batched activations' memory
SPLIT_MIN_BYTES = 2**20  # loop weights at least this large are split over threads (see _split_parts)


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

        Long inputs run in blocks of BLOCK_FRAMES steps, the LSTM state carried from one block to the
        next, so that the batched networks' activations stay bounded (a 10 minute clip is 48,000 steps).
        """
        c = self.config
        B, T, _ = x.shape
        sample = sample and c.has_latent
        if sample and noise is None:
            noise = torch.randn(B, T, c.z_dim, generator=generator, device=x.device, dtype=x.dtype)
        weights = self._recurrence_weights(_split_parts(x)) if c.has_latent else None
        state = (x.new_zeros(B, c.h_dim), x.new_zeros(B, c.h_dim))  # (h_0, c_0)
        outs = []
        for s in range(0, T, BLOCK_FRAMES):
            block = x[:, s:s + BLOCK_FRAMES]
            if c.has_latent:
                eps = noise[:, s:s + BLOCK_FRAMES] if sample else None
                out, state = self._forward_block(block, eps, state, weights)
            else:
                out, state = self._forward_rnn(block, state)
            outs.append(out)
        if len(outs) == 1:
            return outs[0]
        cat = lambda name: torch.cat([getattr(o, name) for o in outs], 1)  # noqa: E731
        return VRNNOutput(**{f.name: None if getattr(out, f.name) is None else cat(f.name) for f in fields(out)})

    def _recurrence_weights(self, parts: int = 1) -> dict:
        """The weights of the time loop, fused where one input feeds several networks and stored
        [in, out] (contiguous), the faster layout for the loop's small-batch products; the large
        ones split into `parts` column blocks (see `_split_parts`)."""
        dx = self.config.phi_x[-1]
        enc_first: nn.Linear = self.encoder[0]
        W_ih, W_hh = self.rnn.weight_ih, self.rnn.weight_hh
        return {
            # phi_x(x_t) -> [encoder layer 1 (x part) | gates], with both LSTM biases: batched over steps
            "W_x": torch.cat([enc_first.weight[:, :dx], W_ih[:, :dx]]),  # [E1 + 4H, Dx]
            "b_x": torch.cat([enc_first.bias, self.rnn.bias_ih + self.rnn.bias_hh]),  # [E1 + 4H]
            # h_{t-1} -> [encoder layer 1 (h part) | gates]: one product per step
            "W_h": _split_cols(torch.cat([enc_first.weight[:, dx:], W_hh]), parts),  # [H, E1 + 4H]
            "W_z": _split_cols(W_ih[:, dx:], parts),  # [Dz, 4H]
            "enc_rest": _linears(self.encoder[2:]),  # the encoder's layers after the first
            "head": (self.encoder_head.weight.t().contiguous(), self.encoder_head.bias),  # [E, 2Z]
            "phi_z": _linears(self.phi_z),
        }

    def _forward_block(self, x: torch.Tensor, eps: torch.Tensor | None, state: tuple[torch.Tensor, torch.Tensor],
                       w: dict) -> tuple[VRNNOutput, tuple[torch.Tensor, torch.Tensor]]:
        """VRNN pass over x [B, T, X] from state (h, c) [B, H]; eps [B, T, Z], or None for the mean path.

        Only the encoder, phi_z and the LSTM run inside the loop; phi_x and the input projections of
        the encoder's first layer and of the LSTM run before it for all steps, the prior and the
        decoder after it on the stacked states.
        """
        Z, sigma_min = self.config.z_dim, self.config.sigma_min
        E1 = self.encoder[0].weight.shape[0]
        px = self.phi_x(x)  # [B, T, Dx], all steps at once
        pre = F.linear(px.transpose(0, 1), w["W_x"], w["b_x"]).unbind(0)  # T x [B, E1 + 4H], time major
        steps = eps.transpose(0, 1).unbind(0) if eps is not None else None  # T x [B, Z]
        W_h, W_z, enc_rest, phi_z = w["W_h"], w["W_z"], w["enc_rest"], w["phi_z"]
        head_w, head_b = w["head"]
        h, cell = state
        hs, raws, zs, phi_zs = [], [], [], []
        for t in range(len(pre)):
            hs.append(h)  # h_{t-1}
            proj = _addmm(pre[t], h, W_h)  # [B, E1 + 4H]
            e = proj[:, :E1].relu()
            for wt, b in enc_rest:
                e = torch.addmm(b, e, wt).relu()
            raw = torch.addmm(head_b, e, head_w)  # [B, 2Z]: mu and raw sigma of q(z_t | x_t, h_{t-1}), eq. (9)
            z = raw[:, :Z]
            if steps is not None:  # reparameterised: z = mu + sigma * eps
                z = torch.addcmul(z, std_from_raw(raw[:, Z:], sigma_min), steps[t])
                zs.append(z)
            pz = z
            for wt, b in phi_z:
                pz = torch.addmm(b, pz, wt).relu()
            h, cell = _lstm_pointwise(_addmm(proj[:, E1:], pz, W_z), cell)  # eq. (7)
            raws.append(raw)
            phi_zs.append(pz)
        h_prev = torch.stack(hs, 1)  # [B, T, H]
        mu_q, sigma_q = self._gaussian(torch.stack(raws, 1))  # [B, T, Z]
        z = torch.stack(zs, 1) if steps is not None else mu_q  # [B, T, Z]
        mu_p, sigma_p = self.prior_params(h_prev)  # [B, T, Z], eq. (5)
        dec = self.decoder_params(torch.stack(phi_zs, 1), h_prev)  # eq. (6)
        out = VRNNOutput(
            log_px=self.output_log_prob(x, dec),
            kl=gaussian_kl(mu_q, sigma_q, mu_p, sigma_p),
            log_pz=gaussian_log_prob(z, mu_p, sigma_p),
            log_qz=gaussian_log_prob(z, mu_q, sigma_q),
            posterior_mean=mu_q, posterior_std=sigma_q, prior_mean=mu_p, prior_std=sigma_p, z=z,
        )
        return out, (h, cell)

    def _forward_rnn(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                     ) -> tuple[VRNNOutput, tuple[torch.Tensor, torch.Tensor]]:
        """RNN baselines: h_t = LSTM(phi_x(x_t), h_{t-1}); p(x_t | h_{t-1}). Exact log-likelihood.

        Nothing feeds back into the recurrence, so the whole block goes through the library's LSTM
        (oneDNN on CPU, cuDNN on CUDA) with the cell's own weights.
        """
        r = self.rnn
        h0, c0 = state
        hs, h_n, c_n = torch.lstm(self.phi_x(x), (h0[None], c0[None]),
                                  [r.weight_ih, r.weight_hh, r.bias_ih, r.bias_hh],
                                  True, 1, 0.0, self.training, False, True)  # hs [B, T, H]: h_1 .. h_T
        h_prev = torch.cat([h0[:, None], hs[:, :-1]], 1)  # [B, T, H]: h_0 .. h_{T-1}
        log_px = self.output_log_prob(x, self.decoder_params(None, h_prev))
        return VRNNOutput(log_px=log_px, kl=torch.zeros_like(log_px)), (h_n[0], c_n[0])

    @torch.no_grad()
    def sample(self, n_frames: int, batch_size: int = 1, generator: torch.Generator | None = None,
               output_noise: bool = True, noise: GenerationNoise | None = None) -> torch.Tensor:
        """Generate normalised frames [B, T, X] from the model (Chung et al. 2015, section 3.2).

        Each step draws z_t from the prior p(z_t | h_{t-1}) (never the encoder), x_t from
        p(x_t | z_t, h_{t-1}) (its mean if output_noise=False), then h_t = LSTM([phi_x(x_t), phi_z(z_t)], h_{t-1}).
        All random numbers are drawn before the loop (`generation_noise`, from `generator`), so a seed
        gives the same audio as the straightforward loop of benchmarks/reference.py; or pass `noise`.

        Every network runs at every step, so the loop is what the speed of generation is made of. The
        products of h_{t-1} (prior, decoder and gates) are fused into one, so are those of the LSTM's
        input [phi_x(x_t), phi_z(z_t)]; each Linear + ReLU is one call (`_linear_relu`); weights are
        stored [in, out], the large ones split over threads (`_split_cols`). benchmarks/README.md
        has the measurements.
        """
        c = self.config
        H, Z, X = c.h_dim, c.z_dim, c.x_dim
        dev, dtype = self.x_mean.device, self.rnn.weight_hh.dtype
        if noise is None:
            noise = generation_noise(c, n_frames, batch_size, generator, output_noise, dev, dtype)
        eps_z, gumbel, eps_x = (None if n is None else n.unbind(0) for n in noise)  # T x [B, .] each
        B = batch_size
        dec_first = self.decoder[0]
        dz = dec_first.weight.shape[1] - H  # phi_z width (0 for RNNs)
        D1 = dec_first.weight.shape[0]
        # h_{t-1} -> [prior layer 1 | decoder layer 1 (h part) | gates]; all biases of the gates here.
        hw = [dec_first.weight[:, dz:], self.rnn.weight_hh]
        hb = [dec_first.bias, self.rnn.bias_ih + self.rnn.bias_hh]
        P1 = 0
        if c.learned_prior:
            hw.insert(0, self.prior[0].weight)
            hb.insert(0, self.prior[0].bias)
            P1 = self.prior[0].weight.shape[0]
            prior_rest = _linears(self.prior[2:])
            prior_head = self.prior_head.weight.t().contiguous(), self.prior_head.bias
        h = torch.zeros(B, H, device=dev, dtype=dtype)
        parts = _split_parts(h)
        W_h = _split_cols(torch.cat(hw), parts)  # [H, P1 + D1 + 4H] or its column blocks
        b_h = _split_bias(torch.cat(hb), W_h, B)
        W_in = _split_cols(self.rnn.weight_ih, parts)  # [phi_x(x_t), phi_z(z_t)] -> gates: [Dx + Dz, 4H]
        if c.has_latent:
            phi_z = _linears(self.phi_z)
            W_zd = dec_first.weight[:, :dz].t().contiguous()  # phi_z(z_t) -> decoder layer 1: [Dz, D1]
        dec_rest = _linears(self.decoder[2:])
        dec_head = (_split_cols(self.decoder_head.weight, parts),  # [D, out], large for GMMs: out = K (1 + 2X)
                    self.decoder_head.bias.expand(B, -1))
        phi_x = _linears(self.phi_x)
        sigma_min = torch.tensor(c.sigma_min, device=dev, dtype=dtype)  # a tensor: cheaper to add than a float
        K = c.n_components
        cell = torch.zeros_like(h)
        frames = []
        for t in range(n_frames):
            hp = _addmm(b_h, h, W_h)  # [B, P1 + D1 + 4H]
            gates = hp[:, P1 + D1:]
            if c.has_latent:
                if c.learned_prior:  # p(z_t | h_{t-1}), eq. (5)
                    a = hp[:, :P1].relu()
                    for w, b in prior_rest:
                        a = _linear_relu(b, a, w)
                    raw = torch.addmm(prior_head[1], a, prior_head[0])  # [B, 2Z]
                    z = torch.addcmul(raw[:, :Z], std_from_raw(raw[:, Z:], sigma_min), eps_z[t])
                else:  # N(0, I): z = 0 + 1 * eps
                    z = eps_z[t]
                pz = z
                for w, b in phi_z:
                    pz = _linear_relu(b, pz, w)
                d = _linear_relu(hp[:, P1:P1 + D1], pz, W_zd)  # decoder layer 1, eq. (6)
            else:
                d = hp[:, P1:P1 + D1].relu()
            for w, b in dec_rest:  # p(x_t | z_t, h_{t-1}), eq. (6)
                d = _linear_relu(b, d, w)
            raw = _addmm(dec_head[1], d, dec_head[0])
            if c.gmm_output:  # the component by Gumbel-max: argmax_k (logits_k + g_k) ~ Categorical(softmax(logits))
                k = (raw[:, :K] + gumbel[t]).argmax(-1, keepdim=True)  # [B, 1]
                raw = raw[:, K:].view(B, K, 2 * X).gather(1, k[:, :, None].expand(-1, 1, 2 * X))[:, 0]  # [B, 2X]
            x_t = raw[:, :X]
            if eps_x is not None:
                x_t = torch.addcmul(x_t, std_from_raw(raw[:, X:], sigma_min), eps_x[t])
            frames.append(x_t)
            p = x_t
            for w, b in phi_x:
                p = _linear_relu(b, p, w)
            inp = p if not c.has_latent else torch.cat([p, pz], 1)  # the LSTM's input, as nn.LSTMCell's
            h, cell = _lstm_pointwise(_addmm(gates, inp, W_in), cell)  # eq. (7)
        return torch.stack(frames, 1)


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

    def __iter__(self):
        return iter((self.eps_z, self.gumbel, self.eps_x))


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


def _split_parts(x: torch.Tensor) -> int:
    """Column blocks for the loops' large products: the thread count for small-batch inference on CPU,
    else 1. MKL runs a product with one row ([1, K] x [K, N]) on one thread; as a batched product of P
    column blocks it runs on P threads, with the same arithmetic for every output element."""
    if x.device.type != "cpu" or torch.is_grad_enabled() or x.shape[0] > 8:
        return 1
    return torch.get_num_threads()


def _split_cols(w: torch.Tensor, parts: int) -> torch.Tensor:
    """A weight in nn.Linear's layout [N, K] (out, in) -> [K, N] contiguous, or its column blocks
    [P, K, N / P] (contiguous) when P > 1 divides N and w is large (>= SPLIT_MIN_BYTES). One copy
    either way. Used by `_addmm`."""
    N, K = w.shape
    if parts <= 1 or N % parts or K * N * w.element_size() < SPLIT_MIN_BYTES:
        return w.t().contiguous()
    return w.view(parts, N // parts, K).transpose(1, 2).contiguous()


def _split_bias(b: torch.Tensor, w: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A bias [N] laid out for `_addmm` with the weight w from `_split_cols`: [B, N], or [P, B, N / P]
    when w is split in P column blocks (so the loop need not rearrange it at every step)."""
    if w.dim() == 2:
        return b.expand(batch_size, -1)
    P, _, n = w.shape
    return b.view(P, 1, n).expand(P, batch_size, n)


def _addmm(c: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """c + x @ w for the loops: x [B, K]; w [K, N], or its column blocks [P, K, N / P]; c [B, N], or
    already [P, B, N / P] (`_split_bias`). Returns [B, N]."""
    if w.dim() == 2:
        return torch.addmm(c, x, w)
    P, K, n = w.shape
    B = x.shape[0]
    if c.dim() == 2:
        c = c.view(B, P, n).transpose(0, 1)
    out = torch.baddbmm(c, x.expand(P, B, K), w)  # [P, B, N / P]
    return out.view(B, P * n) if B == 1 else out.transpose(0, 1).reshape(B, P * n)


_ADDMM_RELU = getattr(torch, "_addmm_activation", None)  # addmm then ReLU in one call (torch >= 1.13)


def _linear_relu(b: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """relu(b + x @ w), one call in the loops: b [N] or [B, N], x [B, K], w [K, N]. Uses torch's
    fused `_addmm_activation` (private) where present, else addmm + relu_; the two agree exactly
    (tests/test_model.py)."""
    if _ADDMM_RELU is not None:
        return _ADDMM_RELU(b, x, w)
    return torch.addmm(b, x, w).relu_()


def _linears(seq: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight [in, out] contiguous, bias [out]) of each Linear in a Linear + ReLU stack."""
    return [(m.weight.t().contiguous(), m.bias) for m in seq if isinstance(m, nn.Linear)]


def _lstm_pointwise(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's elementwise update from its pre-activations [B, 4H] (order i, f, g, o, as nn.LSTMCell):
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g), h_t = sigmoid(o) * tanh(c_t). Returns (h_t, c_t)."""
    H = cell.shape[1]
    i, f, _, o = gates.sigmoid().chunk(4, 1)  # one call for the three sigmoid gates (g's share is unused)
    cell = f * cell + i * gates[:, 2 * H:3 * H].tanh()
    return o * cell.tanh(), cell

