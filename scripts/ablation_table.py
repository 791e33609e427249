"""The recipe ablation's table (docs/ablation.md) from the arms' run folders (scripts/ablation_recipe.sh).

    python scripts/ablation_table.py OUT_ROOT

For each arm: the validation ELBO (nats per 0.5 s sequence and per 12.5 ms frame; the valid split, never
the test split) at each validation the trainer made (after every epoch and at the last step), the last
training rows' mean gradient norm, and the wall time of its training steps (validation not counted).
"""

from __future__ import annotations

import sys
from pathlib import Path


def rows(run: Path) -> list[dict]:
    from vrnn.train import read_metrics

    return read_metrics(run / "metrics.jsonl")


def recipe_flags(run: Path) -> str:
    """The run's recipe options that differ from TrainConfig's defaults, as train flags, and its precision."""
    from dataclasses import asdict

    from vrnn.checkpoint import read_checkpoint
    from vrnn.config import TrainConfig

    info, _ = read_checkpoint(run / "last.safetensors")
    t = info["training"]
    keys = ("lr", "sigma_bias", "loss_scale", "max_norm", "carry_state", "lr_schedule", "warmup_steps")
    base = asdict(TrainConfig())
    diff = [f"--{k.replace('_', '-')} {t['train_config'][k]}" for k in keys if t["train_config"].get(k) != base[k]]
    return (" ".join(diff) or "(today's recipe)") + f"; {t.get('precision', '?')}"


def main(root: str) -> str:
    out = ["| arm | flags | steps | valid ELBO / sequence (nats) | valid ELBO / frame | at earlier validations "
           "(step: nats/seq) | grad norm (last 30 steps, before clip) | train wall (s) | s / update |",
           "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for run in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        if not (run / "metrics.jsonl").is_file():
            continue
        rs = rows(run)
        valid = [r for r in rs if "valid_elbo_per_sequence" in r]
        train = [r for r in rs if "grad_norm" in r]
        if not valid:
            continue
        last = valid[-1]
        flags = recipe_flags(run)
        g = [r["grad_norm"] for r in train[-3:]]
        earlier = ", ".join(f"{r['step']}: {r['valid_elbo_per_sequence']:.0f}" for r in valid[:-1])
        wall = last["wall_time_s"]
        out.append(f"| {run.name} | {flags} | {last['step']} | {last['valid_elbo_per_sequence']:.1f} | "
                   f"{last['valid_elbo_per_frame']:.2f} | {earlier} | {sum(g) / max(1, len(g)):.3g} | {wall:.0f} | "
                   f"{wall / max(1, last['step']):.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(main(sys.argv[1]))
