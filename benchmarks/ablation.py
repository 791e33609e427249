"""Before/after: the engine as it was at a git revision against the working tree, same weights.

    python benchmarks/ablation.py [--rev 880cdf8] [--preset cpu] [--threads 1 2] [--repeats 5]

Extracts `vrnn/` at --rev (default: the commit that introduced the engine, before issue 5) into a
temporary folder, imports it as `vrnn_before`, loads the current model's state dict into it, and times
the three loops of benchmarks/engine.py on both, alternating runs: the teacher-forced posterior-mean
pass over 30 s at batch 1 (model forward only), generation of 10 s, and one training step (64 x 40,
forward + backward + Adam). Each side runs its fast path: `vrnn.fused.FusedVRNN` where the revision has
it (with the thread split `inference_threads` picks for batch 1, as `analyze` does), else the model's own
forward and sample (the engine was fused into `vrnn.model` before issue 11). Each thread count in
--threads is measured separately. Medians in seconds.
The log of predictions and results is in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from vrnn import VRNN, preset

ROOT = Path(__file__).resolve().parents[1]

ENGINE_COMMIT = "880cdf8"  # "Engine: config, audio front end, ..." - the code before issue 5


def import_revision(rev: str, tmp: Path):
    """`vrnn` at git revision `rev`, imported as the package `vrnn_before`."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "vrnn"], capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(tmp, filter="data")
    spec = importlib.util.spec_from_file_location("vrnn_before", tmp / "vrnn" / "__init__.py",
                                                  submodule_search_locations=[str(tmp / "vrnn")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["vrnn_before"] = module
    spec.loader.exec_module(module)
    return module


def fast_path(pkg, model, batch_size: int, training: bool = False):
    """`model`'s fast path in package `pkg` (the working tree's `vrnn` or `vrnn_before`): its FusedVRNN with
    the thread split its callers use, or the model itself where the revision has no vrnn/fused.py."""
    fused = getattr(pkg, "fused", None)
    if fused is None:
        return model
    threads = 1 if training else fused.inference_threads(batch_size, "cpu")
    return fused.FusedVRNN(model, threads=threads)


def median_pair(fns: dict, repeats: int) -> dict:
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--rev", default=ENGINE_COMMIT, help="git revision of the 'before' engine")
    ap.add_argument("--preset", default="cpu", help="vrnn.preset name")
    ap.add_argument("--family", default="vrnn-gauss", help="model family")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    ap.add_argument("--analysis-frames", type=int, default=2400, help="frames of the batch-1 pass (2400 = 30 s)")
    ap.add_argument("--generation-frames", type=int, default=800, help="frames generated (800 = 10 s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before_pkg = import_revision(args.rev, Path(tmp))
        torch.manual_seed(0)
        now = VRNN(preset(args.preset, args.family), 0.0, 0.1).eval()
        before = before_pkg.VRNN(before_pkg.preset(args.preset, args.family), 0.0, 0.1).eval()
        before.load_state_dict(now.state_dict())
        models = {"before": before, "now": now}
        packages = {"before": before_pkg, "now": sys.modules["vrnn"]}
        gen = torch.Generator().manual_seed(0)
        x1 = torch.randn(1, args.analysis_frames, now.config.x_dim, generator=gen) * 0.5
        xb = torch.randn(64, 40, now.config.x_dim, generator=gen) * 0.5
        noise = torch.randn(64, 40, now.config.z_dim, generator=gen)
        opts = {k: torch.optim.Adam(m.parameters(), lr=1e-6) for k, m in models.items()}

        def analysis(k):
            with torch.inference_mode():
                return fast_path(packages[k], models[k], 1)(x1, sample=False)

        def generation(k):
            with torch.inference_mode():
                return fast_path(packages[k], models[k], 1).sample(args.generation_frames,
                                                                    generator=torch.Generator().manual_seed(0))

        def train_step(k):
            m = models[k].train()
            loss = -fast_path(packages[k], m, 64, training=True)(xb, noise=noise).elbo.mean()
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
            m.eval()

        a, b = analysis("before"), analysis("now")
        print(f"check: max |KL before - now| / max |KL| = {float((a.kl - b.kl).abs().max() / b.kl.abs().max()):.1e}")
        print(f"{'threads':>7} {'measurement':28} {'before s':>9} {'now s':>9} {'speed-up':>9}")
        for n in args.threads:
            torch.set_num_threads(n)
            rows = {
                f"analysis {args.analysis_frames} frames b=1": median_pair(
                    {k: (lambda k=k: analysis(k)) for k in models}, args.repeats),
                f"generation {args.generation_frames} frames": median_pair(
                    {k: (lambda k=k: generation(k)) for k in models}, args.repeats),
                "training step 64 x 40": median_pair({k: (lambda k=k: train_step(k)) for k in models}, args.repeats),
            }
            for name, r in rows.items():
                print(f"{n:>7} {name:28} {r['before']:9.3f} {r['now']:9.3f} {r['before'] / r['now']:8.2f}x")


if __name__ == "__main__":
    main()
