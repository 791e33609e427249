"""The fast CPU path: `vrnn.model.VRNN`'s teacher-forced pass and generation, fused for speed.

    fast = FusedVRNN(model)                  # shares model's parameters (no copy): gradients reach them
    out = fast(x, sample=False)              # == model(x, sample=False), same VRNNOutput, ~2-3x faster
    frames = fast.sample(800, generator=g)   # == model.sample(800, generator=g), same noise, same audio

Same function as the readable model, reorganised for a CPU's caches and its per-call overheads
(the measurements: benchmarks/README.md; the equality, all families, float32 and float64, sampled and
mean paths, gradients and generation: tests/test_fused.py):

- Products that share an input are fused into one: h_{t-1} feeds the encoder's first layer and the
  LSTM's gates (and, when generating, the prior and the decoder too); the input projections of
  phi_x(x_t) into the encoder and the gates are computed for all steps before the loop.
- Loop weights are stored [in, out] (contiguous), the faster layout for small-batch products; at
  batch 1 the large ones can be split into column blocks, one per thread (`threads`), which MKL then
  runs in parallel (it runs a one-row product on one thread).
- Each Linear + ReLU is one call (`torch._addmm_activation`, private, with a public fallback), and the
  LSTM's elementwise update is written out (`_lstm_pointwise`) so it takes the fused pre-activations.
- Long inputs run in blocks of `block_frames` steps, the LSTM state carried over, so the batched
  prior/decoder activations stay bounded (a 10 minute clip is 48,000 steps).
- The RNN baselines, whose recurrence has no feedback from a sample, use the library's LSTM
  (oneDNN on CPU, cuDNN on CUDA) over a whole block.
- The GMM output's log-density (`gmm_log_prob_fast`) is one autograd node with its gradient written out:
  autograd's version keeps and walks about ten [B, T, K, X] intermediates (K = 20 components of X = 200
  samples), which made the GMM families' training steps about half elementwise work.

Which path runs is the caller's choice, never global state: `vrnn.analyze`, `vrnn.generate`,
`evaluate.score_sequences` and `train.train` take `fast=` (default True) and build a `FusedVRNN` with the
thread split that suits their batch (`inference_threads`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributions import LOG_2PI, at_least_fp32, gaussian_kl, gaussian_log_prob, std_from_raw
from .model import VRNN, VRNNOutput, check_state, gaussian_params, generation_noise

BLOCK_FRAMES = 256  # steps per block of a long input (3.2 s): bounds the batched activations' memory
SPLIT_MIN_BYTES = 2**20  # loop weights at least this large are split into column blocks (when threads > 1)
SPLIT_MAX_BATCH = 8  # column blocks pay only for small batches (see `inference_threads`)


def default_threads() -> int:
    """Threads for a small-batch no-grad pass on CPU: VRNN_THREADS from the environment if set (> 0), else 1.

    One, because these passes are time loops of small products: on a quiet 2-core machine a second
    thread gains 5-25 %, but while another process keeps a core busy OpenMP's barriers wait on a
    descheduled thread at every step (issue 12: generation of 10 s 0.70 s with 2 threads against 0.30 s
    with 1; analysis of 30 s 1.46 s against 0.44 s; benchmarks/engine.py's "under load" rows). One thread
    is never slower than one thread, busy or quiet; set VRNN_THREADS=2 on a machine kept for this alone."""
    try:
        n = int(os.environ.get("VRNN_THREADS", "0"))
    except ValueError:
        n = 0
    return n if n > 0 else 1


def inference_threads(batch_size: int, device: torch.device | str) -> int:
    """The threads that suit a no-grad pass of `batch_size` sequences on `device`: `default_threads()` on
    CPU for batches of at most SPLIT_MAX_BATCH, else 1 (the column split of `FusedVRNN`; larger batches
    and other devices run plain products). MKL runs a product with one row ([1, K] x [K, N]) on one
    thread; as a batched product of P column blocks it runs on P threads, with the same arithmetic for
    every output element. Training passes 1 (the batch is large and the blocks would cost the backward
    pass a copy). `intra_op_threads` sets torch's own thread count to match during the pass."""
    if torch.device(device).type != "cpu" or batch_size > SPLIT_MAX_BATCH:
        return 1
    return default_threads()


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    """Run the block with torch's intra-op thread count set to `n` (None: unchanged), then restore it.
    Process-wide while it runs (torch has one setting per process)."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class FusedVRNN(nn.Module):
    """`model`'s forward and sample, fused; built from the model's own parameters at every call.

    Args:
        model: the readable model; held as a submodule, so its parameters are this module's (and
            DistributedDataParallel can wrap this module for training).
        threads: column blocks for the time loop's large products (those of at least SPLIT_MIN_BYTES);
            1 = plain products. `inference_threads` picks it for a batch and device.
        block_frames: steps per block of a long teacher-forced input.
        split_min_bytes: the size from which a loop weight is split (tests use 0 to split tiny models).
    """

    def __init__(self, model: VRNN, threads: int = 1, block_frames: int = BLOCK_FRAMES,
                 split_min_bytes: int = SPLIT_MIN_BYTES):
        super().__init__()
        self.model = model
        self.config = model.config
        self.threads = threads
        self.block_frames = block_frames
        self.split_min_bytes = split_min_bytes

    def _split(self, w: torch.Tensor) -> torch.Tensor:
        return _split_cols(w, self.threads, self.split_min_bytes)

    # -- the teacher-forced pass --
    def forward(self, x: torch.Tensor, sample: bool = True, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                state: tuple[torch.Tensor, torch.Tensor] | None = None) -> VRNNOutput:
        """`VRNN.forward`, fused: x [B, T, X] normalised frames -> VRNNOutput; same arguments (`state`: the
        (h_0, c_0) to start from) and numbers."""
        c = self.config
        B, T, _ = x.shape
        sample = sample and c.has_latent
        if sample and noise is None:
            noise = torch.randn(B, T, c.z_dim, generator=generator, device=x.device, dtype=x.dtype)
        weights = self._recurrence_weights() if c.has_latent else None
        if state is None:
            state = (x.new_zeros(B, c.h_dim), x.new_zeros(B, c.h_dim))  # (h_0, c_0)
        outs = []
        for s in range(0, T, self.block_frames):
            block = x[:, s:s + self.block_frames]
            if c.has_latent:
                eps = noise[:, s:s + self.block_frames] if sample else None
                out, state = self._forward_block(block, eps, state, weights)
            else:
                out, state = self._forward_rnn(block, state)
            outs.append(out)
        if len(outs) == 1:
            outs[0].state = state
            return outs[0]
        cat = lambda name: torch.cat([getattr(o, name) for o in outs], 1)  # noqa: E731
        return VRNNOutput(**{f.name: None if getattr(out, f.name) is None else cat(f.name) for f in fields(out)
                             if f.name != "state"}, state=state)

    def _recurrence_weights(self) -> dict:
        """The weights of the time loop, fused where one input feeds several networks and stored
        [in, out] (contiguous); the large ones split into `threads` column blocks."""
        m = self.model
        dx = self.config.phi_x[-1]
        enc_first: nn.Linear = m.encoder[0]
        W_ih, W_hh = m.rnn.weight_ih, m.rnn.weight_hh
        cast = _autocast_cast(W_hh.device)
        return {k: cast(v) for k, v in {
            # phi_x(x_t) -> [encoder layer 1 (x part) | gates], with both LSTM biases: batched over steps
            "W_x": torch.cat([enc_first.weight[:, :dx], W_ih[:, :dx]]),  # [E1 + 4H, Dx]
            "b_x": torch.cat([enc_first.bias, m.rnn.bias_ih + m.rnn.bias_hh]),  # [E1 + 4H]
            # h_{t-1} -> [encoder layer 1 (h part) | gates]: one product per step
            "W_h": self._split(torch.cat([enc_first.weight[:, dx:], W_hh])),  # [H, E1 + 4H]
            "W_z": self._split(W_ih[:, dx:]),  # [Dz, 4H]
            "enc_rest": _linears(m.encoder[2:]),  # the encoder's layers after the first
            "head": (m.encoder_head.weight.t().contiguous(), m.encoder_head.bias),  # [E, 2Z]
            "phi_z": _linears(m.phi_z),
        }.items()}

    def _forward_block(self, x: torch.Tensor, eps: torch.Tensor | None, state: tuple[torch.Tensor, torch.Tensor],
                       w: dict) -> tuple[VRNNOutput, tuple[torch.Tensor, torch.Tensor]]:
        """VRNN pass over x [B, T, X] from state (h, c) [B, H]; eps [B, T, Z], or None for the mean path.

        Only the encoder, phi_z and the LSTM run inside the loop; phi_x and the input projections of
        the encoder's first layer and of the LSTM run before it for all steps, the prior and the
        decoder after it on the stacked states (the readable model's own methods).
        """
        m = self.model
        Z, sigma_min = self.config.z_dim, self.config.sigma_min
        E1 = m.encoder[0].weight.shape[0]
        px = m.phi_x(x)  # [B, T, Dx], all steps at once
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
        mu_q, sigma_q = gaussian_params(torch.stack(raws, 1), sigma_min)  # [B, T, Z]
        z = torch.stack(zs, 1) if steps is not None else mu_q  # [B, T, Z]
        mu_p, sigma_p = m.prior_params(h_prev)  # [B, T, Z], eq. (5)
        dec = m.decoder_params(torch.stack(phi_zs, 1), h_prev)  # eq. (6)
        out = VRNNOutput(
            log_px=_output_log_prob(m, x, dec),
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
        with the cell's own weights.
        """
        m = self.model
        r = m.rnn
        h0, c0 = state
        hs, h_n, c_n = torch.lstm(m.phi_x(x), (h0[None], c0[None]),
                                  [r.weight_ih, r.weight_hh, r.bias_ih, r.bias_hh],
                                  True, 1, 0.0, m.training, False, True)  # hs [B, T, H]: h_1 .. h_T
        h_prev = torch.cat([h0[:, None], hs[:, :-1]], 1)  # [B, T, H]: h_0 .. h_{T-1}
        log_px = _output_log_prob(m, x, m.decoder_params(None, h_prev))
        return VRNNOutput(log_px=log_px, kl=torch.zeros_like(log_px)), (h_n[0], c_n[0])

    # -- generation --
    @torch.no_grad()
    def sample(self, n_frames: int, batch_size: int = 1, generator: torch.Generator | None = None,
               output_noise: bool = True, noise=None,
               state: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """`VRNN.sample`, fused: normalised frames [B, T, X]; same arguments (`state`: (h_0, c_0) [B, H] each to
        start from, zeros by default), same noise, same audio.

        Every network runs at every step, so the loop is what the speed of generation is made of. The
        products of h_{t-1} (prior, decoder and gates) are fused into one, so are those of the LSTM's
        input [phi_x(x_t), phi_z(z_t)]; each Linear + ReLU is one call (`_linear_relu`).
        """
        m, c = self.model, self.config
        H, Z, X = c.h_dim, c.z_dim, c.x_dim
        dev, dtype = m.x_mean.device, m.rnn.weight_hh.dtype
        check_state(state, batch_size, H)
        if noise is None:
            noise = generation_noise(c, n_frames, batch_size, generator, output_noise, dev, dtype)
        eps_z, gumbel, eps_x = (None if n is None else n.unbind(0)  # T x [B, .] each
                                for n in (noise.eps_z, noise.gumbel, noise.eps_x))
        B = batch_size
        dec_first = m.decoder[0]
        dz = dec_first.weight.shape[1] - H  # phi_z width (0 for RNNs)
        D1 = dec_first.weight.shape[0]
        # h_{t-1} -> [prior layer 1 | decoder layer 1 (h part) | gates]; all biases of the gates here.
        hw = [dec_first.weight[:, dz:], m.rnn.weight_hh]
        hb = [dec_first.bias, m.rnn.bias_ih + m.rnn.bias_hh]
        P1 = 0
        if c.learned_prior:
            hw.insert(0, m.prior[0].weight)
            hb.insert(0, m.prior[0].bias)
            P1 = m.prior[0].weight.shape[0]
            prior_rest = _linears(m.prior[2:])
            prior_head = m.prior_head.weight.t().contiguous(), m.prior_head.bias
        h = torch.zeros(B, H, device=dev, dtype=dtype) if state is None else state[0]
        W_h = self._split(torch.cat(hw))  # [H, P1 + D1 + 4H] or its column blocks
        b_h = _split_bias(torch.cat(hb), W_h, B)
        W_in = self._split(m.rnn.weight_ih)  # [phi_x(x_t), phi_z(z_t)] -> gates: [Dx + Dz, 4H]
        if c.has_latent:
            phi_z = _linears(m.phi_z)
            W_zd = dec_first.weight[:, :dz].t().contiguous()  # phi_z(z_t) -> decoder layer 1: [Dz, D1]
        dec_rest = _linears(m.decoder[2:])
        dec_head = (self._split(m.decoder_head.weight),  # [D, out], large for GMMs: out = K (1 + 2X)
                    m.decoder_head.bias.expand(B, -1))
        phi_x = _linears(m.phi_x)
        sigma_min = torch.tensor(c.sigma_min, device=dev, dtype=dtype)  # a tensor: cheaper to add than a float
        K = c.n_components
        cell = torch.zeros_like(h) if state is None else state[1]
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


def _autocast_cast(device: torch.device):
    """Under torch.autocast (`--precision bf16`): a function casting a loop weight (or a list of (weight,
    bias) pairs) to the autocast dtype once per pass. autocast caches the casts of leaf parameters only,
    so without it the fused (non-leaf) weights would be cast again at every step of the loop. The
    identity outside autocast. Casting is differentiable: gradients reach the fp32 parameters."""
    if not torch.is_autocast_enabled(device.type):
        return lambda v: v
    dtype = torch.get_autocast_dtype(device.type)

    def cast(v):
        if isinstance(v, list):
            return [(w.to(dtype), b.to(dtype)) for w, b in v]
        if isinstance(v, tuple):
            return tuple(t.to(dtype) for t in v)
        return v.to(dtype)
    return cast


def _split_cols(w: torch.Tensor, parts: int, min_bytes: int = SPLIT_MIN_BYTES) -> torch.Tensor:
    """A weight in nn.Linear's layout [N, K] (out, in) -> [K, N] contiguous, or its column blocks
    [P, K, N / P] (contiguous) when P > 1 divides N and w is large (>= min_bytes). One copy
    either way. Used by `_addmm`."""
    N, K = w.shape
    if parts <= 1 or N % parts or K * N * w.element_size() < min_bytes:
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
    (tests/test_fused.py)."""
    if _ADDMM_RELU is not None:
        return _ADDMM_RELU(b, x, w)
    return torch.addmm(b, x, w).relu_()


def _linears(seq: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight [in, out] contiguous, bias [out]) of each Linear in a Linear + ReLU stack."""
    return [(m.weight.t().contiguous(), m.bias) for m in seq if isinstance(m, nn.Linear)]


def _lstm_pointwise(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's elementwise update from its pre-activations [B, 4H] (order i, f, g, o, as nn.LSTMCell):
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g), h_t = sigmoid(o) * tanh(c_t). Returns (h_t, c_t).
    Computed in the cell's dtype: bf16 pre-activations (autocast) are upcast, so the cell state, which
    sums over the whole sequence, stays float32."""
    H = cell.shape[1]
    gates = gates.to(cell.dtype)
    i, f, _, o = gates.sigmoid().chunk(4, 1)  # one call for the three sigmoid gates (g's share is unused)
    cell = f * cell + i * gates[:, 2 * H:3 * H].tanh()
    return o * cell.tanh(), cell


# -- the GMM output's log-density --

def _output_log_prob(model: VRNN, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """`model.output_log_prob(x, params)`, with the mixture's log-density as `gmm_log_prob_fast`."""
    if model.config.gmm_output:
        return gmm_log_prob_fast(x, *params)
    return model.output_log_prob(x, params)


def gmm_log_prob_fast(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """`vrnn.distributions.gmm_log_prob` (same arguments, same value) as a single autograd node.

        log p(x) = logsumexp_k [ log pi_k + c_k ],  c_k = -1/2 sum_d [ log 2 pi + 2 log sigma_kd + z_kd^2 ],
        z_kd = (x_d - mu_kd) / sigma_kd,  pi = softmax(logits)

    and with r_k = p(k | x) (the responsibilities) the gradient
        d/d logits_k = r_k - pi_k,  d/d mu_kd = r_k z_kd / sigma_kd,
        d/d sigma_kd = r_k (z_kd^2 - 1) / sigma_kd,  d/d x_d = -sum_k r_k z_kd / sigma_kd.
    The backward pass recomputes z from the inputs it keeps (x, mu, sigma) instead of storing the
    [..., K, D] intermediates. No second derivative.

    x: [..., D]; logits: [..., K]; mu, sigma: [..., K, D]. Returns [...] in nats, in at least float32.
    """
    x, logits, mu, sigma = at_least_fp32(x, logits, mu, sigma)
    return _GMMLogProb.apply(x, logits, mu, sigma)


class _GMMLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, logits, mu, sigma):  # noqa: D102 (gmm_log_prob_fast)
        z2 = (x.unsqueeze(-2) - mu).div_(sigma).square_()  # [..., K, D]
        comp = -0.5 * (x.shape[-1] * LOG_2PI + z2.sum(-1)) - torch.log(sigma).sum(-1)  # [..., K]
        log_pi = torch.log_softmax(logits, dim=-1)
        log_w = log_pi + comp
        out = torch.logsumexp(log_w, dim=-1)
        ctx.save_for_backward(x, mu, sigma, (log_w - out.unsqueeze(-1)).exp(), log_pi.exp())
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        x, mu, sigma, resp, pi = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        r = g * resp  # [..., K]: d out / d c_k, times the incoming gradient
        d_x = d_logits = d_mu = d_sigma = None
        if ctx.needs_input_grad[1]:
            d_logits = r - g * pi
        if any(ctx.needs_input_grad[i] for i in (0, 2, 3)):
            inv = sigma.reciprocal()
            z = (x.unsqueeze(-2) - mu).mul_(inv)  # [..., K, D]
            w = z * inv  # (x - mu) / sigma^2
            rk = r.unsqueeze(-1)
            if ctx.needs_input_grad[3]:
                d_sigma = z.mul_(w).sub_(inv).mul_(rk)
            d_mu = w.mul_(rk)
            if ctx.needs_input_grad[0]:
                d_x = -d_mu.sum(-2)
            if not ctx.needs_input_grad[2]:
                d_mu = None
        return d_x, d_logits, d_mu, d_sigma
