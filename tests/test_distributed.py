"""Data-parallel training: `torchrun --nproc_per_node=2 -m vrnn train` on CPU (gloo) follows the same
path as one process with the same global batch and seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vrnn import load_checkpoint, preset
from vrnn.config import TrainConfig
from vrnn.train import train

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tiny_corpus, tmp_path):
    steps, batch = 25, 8  # 11 batches per epoch on the tiny corpus: two epoch ends and a final validation
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vrnn", "train",
         "--data", str(tiny_corpus), "--preset", "tiny", "--out", str(ddp), "--steps", str(steps),
         "--batch-size", str(batch), "--lr", "0.003", "--seed", "0", "--snapshot-every", "20",
         "--threads", "1", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    # rank 0 alone reports; the global batch, its share per process and the lr are in the report
    reports = [line for line in proc.stdout.splitlines() if "M parameters" in line]
    assert len(reports) == 1 and "global batch 8" in reports[0] and "4 per process x 2 process(es)" in reports[0]
    assert "lr 0.003" in reports[0]

    single = tmp_path / "single"
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=3e-3, seed=0, snapshot_every=20)
    train(tiny_corpus, single, preset("tiny"), cfg, progress=False, log=lambda s: None)

    a, b = rows(ddp), rows(single)
    # rank 0 alone writes: one row per step and kind, the same rows as the single process
    assert [(r["step"], "train_elbo_per_sequence" in r) for r in a] == [(r["step"], "train_elbo_per_sequence" in r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_elbo_per_sequence", "kl_per_frame", "grad_norm", "valid_elbo_per_sequence"):
            if key in rb:
                assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), (key, ra, rb)
    assert sum("valid_elbo_per_sequence" in r for r in a) == 3

    m_ddp, m_one = load_checkpoint(ddp / "last.safetensors"), load_checkpoint(single / "last.safetensors")
    assert m_ddp.info["training"]["world_size"] == 2 and m_ddp.info["training"]["steps"] == steps
    for (k, p), q in zip(m_ddp.state_dict().items(), m_one.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=k)
    load_checkpoint(ddp / "best.safetensors")
    assert [p.name for p in (ddp / "snapshots").iterdir()] == ["step-000020.safetensors"]
    assert not list(ddp.glob(".*.tmp"))
