"""Validation ELBO curves of several training runs as one markdown table (issue 12: "show the curves").

    python scripts/valid_curves.py RUN_OR_METRICS [...] [--every 84]

Each argument is a run folder (its metrics.jsonl) or a metrics.jsonl file; a column per run, named by
its folder (or by the file name before `.metrics.jsonl` for bundled logs). Rows: the steps at which the
runs were validated (after each epoch, at step 0 of an --init-from run and at the end), thinned to one
row per `--every` updates plus the first and last. Values: validation ELBO in nats per 0.5 s sequence
(one posterior sample per sequence, the valid split; `vrnn.train`). Prints the table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vrnn.train import read_metrics, valid_curve  # noqa: E402


def valid_rows(path: Path) -> dict[int, float]:
    """{step: validation ELBO per sequence} from a metrics.jsonl (later rows win, as after a resume)."""
    return valid_curve(read_metrics(path))


def run_name(path: Path) -> str:
    if path.is_dir():
        return path.name
    return path.name.removesuffix(".metrics.jsonl") if path.name.endswith(".metrics.jsonl") else path.parent.name


def table(curves: dict[str, dict[int, float]], every: int) -> str:
    """Markdown table: one row per kept step, one column per run ('' where a run has no value)."""
    steps = sorted({s for c in curves.values() for s in c})
    kept, last = [], None
    for s in steps:
        if last is None or s - last >= every or s == steps[-1]:
            kept.append(s)
            last = s
    lines = ["| update | " + " | ".join(curves) + " |", "|---:|" + "---:|" * len(curves)]
    for s in kept:
        cells = [f"{c[s]:.0f}" if s in c else "" for c in curves.values()]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    best = [f"{max(c.values()):.0f} @ {max(c, key=c.get)}" if c else "" for c in curves.values()]
    lines.append("| best | " + " | ".join(best) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders or metrics.jsonl files")
    p.add_argument("--every", type=int, default=84, help="keep a row at most every this many updates")
    a = p.parse_args()
    curves = {}
    for r in a.runs:
        f = r / "metrics.jsonl" if r.is_dir() else r
        if not f.is_file():
            p.error(f"{f}: no such metrics file")
        curves[run_name(r)] = valid_rows(f)
    print(table(curves, a.every))


if __name__ == "__main__":
    main()
