"""The GMM families' training step with the fused mixture log-density (`vrnn.fused.gmm_log_prob_fast`) against
autograd's version of the same formula (`VRNN.output_log_prob`), alternated round by round, one thread.

    python benchmarks/gmm_density.py [--families vrnn-gmm rnn-gmm] [--precision bf16] [--rounds 5]

Prints the median seconds per training step (cpu preset, batch 64 x 40, `vrnn.train._train_step`, random
weights) of each and the median ratio. The first round warms up and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vrnn.fused as fused
from vrnn import preset
from vrnn.config import TrainConfig
from vrnn.model import VRNN
from vrnn.train import _train_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", default=["vrnn-gmm", "rnn-gmm"])
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    paths = {"autograd": lambda m, x, d: m.output_log_prob(x, d), "fused": fused._output_log_prob}
    original = fused._output_log_prob
    try:
        for family in args.families:
            torch.manual_seed(0)
            model = VRNN(preset("cpu", family))
            x, noise = torch.randn(64, 40, 200), torch.randn(64, 40, model.config.z_dim)
            opt = torch.optim.Adam(model.parameters(), lr=1e-6)
            cfg = TrainConfig(precision=args.precision, batch_size=64)
            net, times = fused.FusedVRNN(model), {k: [] for k in paths}
            for r in range(args.rounds):
                for name, f in paths.items():
                    fused._output_log_prob = f
                    t = time.perf_counter()
                    _train_step(net, model, opt, x, noise, cfg, False, args.precision)
                    if r:
                        times[name].append(time.perf_counter() - t)
            a, b = (statistics.median(times[k]) for k in paths)
            ratio = statistics.median(u / v for u, v in zip(times["autograd"], times["fused"], strict=True))
            print(f"{family} {args.precision}: autograd {a:.3f} s, fused {b:.3f} s per step, ratio {ratio:.2f}x")
    finally:
        fused._output_log_prob = original


if __name__ == "__main__":
    main()
