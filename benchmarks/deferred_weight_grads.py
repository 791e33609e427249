"""An experiment for issue 12's bf16 target, not part of the engine: would the time loop's weight gradients be
cheaper as one product per weight after the loop than as 40 small per-step products (autograd's way)?

    python benchmarks/deferred_weight_grads.py

The loop of `vrnn.fused.FusedVRNN._forward_block` at the cpu preset's sizes (LSTM 512, latent 64, 256-unit
encoder and phi_z layers), batch 64 x 40 steps, bf16 products with fp32 LSTM cell state, forward and backward.
(A) the weights' gradients by autograd, per step; (B) each in-loop product a custom autograd Function that
returns only the input's gradient and stashes (input, output gradient), the weight gradient then one
[in, B*T] x [B*T, out] product per weight after backward. Prints the relative difference of the gradients
(bf16 rounding) and ms per forward+backward, alternating A and B.
Measured (issue 12, fourth session, quiet 2-core avx512_bf16 machine, 2 threads, two runs of 3 alternations):
A 252-268 and 304-308 ms, B 237-257 and 300-338 ms. That is within the noise: the per-step products' cost is
not in the weight gradients, so this was not integrated."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

B, T, H, Z, E, P = 64, 40, 512, 64, 256, 256  # batch, steps, LSTM, latent, encoder, phi_z widths (cpu preset)
BF16 = torch.bfloat16


class Deferred(torch.autograd.Function):
    """y = x @ w; the backward returns dL/dx only and stashes (x, dL/dy) in `slot` for the weight's gradient."""

    @staticmethod
    def forward(ctx, x, w, slot):  # noqa: D102
        ctx.save_for_backward(x, w)
        ctx.slot = slot
        return x @ w

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, w = ctx.saved_tensors
        ctx.slot.append((x, g))
        return g @ w.t(), None, None


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    shapes = [(H, E + 4 * H), (E, E), (E, 2 * Z), (Z, P), (P, P), (P, 4 * H)]  # W_h, encoder 2, head, phi_z, W_z
    weights = [(torch.randn(i, o) / i**0.5).requires_grad_() for i, o in shapes]
    pre = torch.randn(T, B, E + 4 * H).requires_grad_()  # the input projections, computed before the loop
    eps = torch.randn(T, B, Z)

    def loop(mm) -> torch.Tensor:
        h, c = torch.zeros(B, H, dtype=BF16), torch.zeros(B, H)
        outs = []
        for t in range(T):
            proj = pre[t].to(BF16) + mm(h, 0)
            e = mm(mm(proj[:, :E].relu(), 1).relu(), 2)
            z = e[:, :Z] + F.softplus(e[:, Z:].float()).to(BF16) * eps[t].to(BF16)
            pz = mm(mm(z, 3).relu(), 4).relu()
            i, f, g, o = (proj[:, E:] + mm(pz, 5)).float().chunk(4, 1)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h = (o.sigmoid() * c.tanh()).to(BF16)
            outs.append(e.float())
        return torch.stack(outs).square().mean() + h.float().square().mean()

    def autograd_step() -> None:
        wb = [w.to(BF16) for w in weights]
        loop(lambda x, k: x @ wb[k]).backward()

    def deferred_step() -> None:
        slots = [[] for _ in weights]
        wb = [w.detach().to(BF16) for w in weights]
        loop(lambda x, k: Deferred.apply(x, wb[k], slots[k])).backward()
        for w, slot in zip(weights, slots, strict=True):
            w.grad = (torch.cat([x for x, _ in slot]).t() @ torch.cat([g for _, g in slot])).float()

    grads = []
    for step in (autograd_step, deferred_step):
        for w in weights:
            w.grad = None
        step()
        grads.append([w.grad.clone() for w in weights])
    print("relative difference of the weight gradients (bf16 rounding):",
          [f"{((a - b).norm() / a.norm()).item():.1e}" for a, b in zip(*grads, strict=True)])
    for _ in range(3):
        for name, step in (("A autograd per step", autograd_step), ("B one product per weight", deferred_step)):
            step()
            t0 = time.perf_counter()
            for _ in range(5):
                for w in weights:
                    w.grad = None
                step()
            dt = (time.perf_counter() - t0) / 5
            print(f"{name:26s} {1000 * dt:6.1f} ms per forward+backward of the loop ({B * T / dt:5.0f} frames/s)")


if __name__ == "__main__":
    main()
