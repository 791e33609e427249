"""Does bf16 training learn as well as fp32? Three runs from scratch, the validation ELBO curves compared.

    python benchmarks/bf16_quality.py --data data/allison [--steps 1000] [--preset cpu] [--family vrnn-gauss]
        [--out runs/bf16-quality] [--device cpu] [--json out.json]

Runs `vrnn.train.train` three times with the same options but for: fp32 seed 0, fp32 seed 1, bf16 seed 0
(batch 64 x 40 frames; each run's validation ELBO after every epoch and at the end is in its
metrics.jsonl). The check (issue 12): at every validation step, bf16's ELBO per sequence lies within the
spread of the two fp32 seeds, widened by `--slack` nats (default 0: strictly within). Runs are --resume'd,
so the script can be stopped and started again. Start each run in its own process to use two cores
(--only fp32-s0 ...), then once more with no --only to print the comparison.

On a CPU without native bf16 (no avx512_bf16 / AMX; `vrnn.train.resolve_precision("auto")` says fp32)
the bf16 run is emulated and impractically slow: the script refuses it unless --force-bf16.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrnn import preset  # noqa: E402
from vrnn.config import TrainConfig  # noqa: E402
from vrnn.train import read_metrics, resolve_precision, train, valid_curve  # noqa: E402

RUNS = {"fp32-s0": ("fp32", 0), "fp32-s1": ("fp32", 1), "bf16-s0": ("bf16", 0)}




def compare(curves: dict[str, dict[int, float]], slack: float = 0.0) -> dict:
    """At each step validated by all three runs: the fp32 spread [lo, hi] and whether bf16 lies in it."""
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    rows = []
    for s in steps:
        a, b, h = curves["fp32-s0"][s], curves["fp32-s1"][s], curves["bf16-s0"][s]
        lo, hi = min(a, b) - slack, max(a, b) + slack
        rows.append({"step": s, "fp32_s0": a, "fp32_s1": b, "bf16_s0": h, "within": lo <= h <= hi,
                     "outside_by": max(lo - h, h - hi, 0.0)})
    # the slack that would put bf16 within the spread at every step (0 when it already is)
    return {"rows": rows, "all_within": bool(rows) and all(r["within"] for r in rows), "slack": slack,
            "max_outside_by": max((r["outside_by"] for r in rows), default=0.0)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=str(ROOT / "runs" / "bf16-quality"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--family", default="vrnn-gauss")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--only", nargs="*", choices=list(RUNS), help="train only these runs (e.g. one per process)")
    p.add_argument("--slack", type=float, default=0.0, help="nats per sequence added to each side of the spread")
    p.add_argument("--force-bf16", action="store_true", help="run bf16 on a CPU without native bf16")
    p.add_argument("--json", help="write the comparison here")
    args = p.parse_args(argv)
    out = Path(args.out)
    for name in args.only if args.only is not None else list(RUNS):
        precision, seed = RUNS[name]
        if precision == "bf16" and resolve_precision("auto", args.device or "cpu") != "bf16" and not args.force_bf16:
            sys.exit("This device has no native bf16 (auto picks fp32 here): the bf16 run would be emulated and "
                     "far slower than fp32. Run it on a CPU with avx512_bf16/AMX or a GPU, or pass --force-bf16.")
        cfg = TrainConfig(steps=args.steps, seed=seed, batch_size=args.batch_size, precision=precision, snapshot_every=0)
        train(args.data, out / name, preset(args.preset, args.family), cfg, resume=True, device=args.device,
              progress=False, log=lambda s, name=name: print(f"[{name}] {s}", flush=True))
    if not all((out / n / "metrics.jsonl").is_file() for n in RUNS):
        return {}
    result = compare({n: valid_curve(read_metrics(out / n / "metrics.jsonl")) for n in RUNS}, args.slack)
    for r in result["rows"]:
        verdict = "within" if r["within"] else f"OUTSIDE by {r['outside_by']:.1f}"
        print(f"step {r['step']:6d}: fp32 s0 {r['fp32_s0']:10.1f}  fp32 s1 {r['fp32_s1']:10.1f}  bf16 s0 "
              f"{r['bf16_s0']:10.1f}  {verdict}")
    print("bf16 within the fp32 spread at every validation:", result["all_within"],
          f"(at most {result['max_outside_by']:.1f} nats per sequence outside it)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
