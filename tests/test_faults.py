"""Faults: a full disk, SIGKILL at any moment (even mid-write) then --resume, non-finite losses, and
Ctrl-C / SIGTERM. Each run is tiny; the killed and signalled runs are real subprocesses."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_rows_close
from safetensors import SafetensorError

from vrnn import VRNN, CheckpointError, load_checkpoint, preset, read_checkpoint, save_checkpoint
from vrnn.config import TrainConfig
from vrnn.train import TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 30, "batch_size": 8, "lr": 3e-3, "seed": 0, "snapshot_every": 0, **kw})


# -- full disk -----------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   SafetensorError("Error while serializing: I/O error: No space left on device "
                                                   "(os error 28)")],
                         ids=["OSError", "SafetensorError"])
def test_full_disk_raises_clear_error_and_keeps_previous_checkpoint(tmp_path, monkeypatch, error):
    import safetensors.torch

    path = tmp_path / "last.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, VRNN(preset("tiny")), {"steps": 1})
    before = path.read_bytes()

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 1000)  # half-written, then the disk fills up
        raise error

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(CheckpointError, match="disk is full.*previous checkpoint there .* is intact"):
        save_checkpoint(path, VRNN(preset("tiny")), {"steps": 2})
    assert path.read_bytes() == before and load_checkpoint(path).info["training"] == {"steps": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temporary left behind


def test_full_disk_during_training_stops_with_checkpoint_error(tiny_corpus, tmp_path, monkeypatch):
    import safetensors.torch

    real = safetensors.torch.save_file
    saves = []

    def fill_up_at_second_epoch(tensors, filename, metadata=None):
        saves.append(json.loads(metadata["training"])["steps"])
        if saves[-1] >= 22:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", fill_up_at_second_epoch)
    with pytest.raises(CheckpointError, match="disk is full"):
        train(tiny_corpus, tmp_path / "run", preset("tiny"), cfg(), progress=False, log=lambda s: None)
    info, _ = read_checkpoint(tmp_path / "run" / "last.safetensors")
    assert info["training"]["steps"] == 11  # the first epoch's checkpoint, intact
    assert not list((tmp_path / "run").glob(".*.tmp"))


# -- SIGKILL at any moment, then --resume ----------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import vrnn.checkpoint as C, vrnn.train as T
    from vrnn import preset
    from vrnn.config import TrainConfig

    data, out, how, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    count = [0]
    if how == "mid-write":  # die while the n-th last.safetensors is written: temp file done, not renamed
        real_replace = C.os.replace
        def replace(src, dst):
            if str(dst).endswith("last.safetensors"):
                count[0] += 1
                if count[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)
        C.os.replace = replace
    else:  # die in the middle of the (n+1)-th step of this process
        real_getitem = T.WindowBatches.__getitem__
        def getitem(self, i):
            count[0] += 1
            if count[0] == n + 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_getitem(self, i)
        T.WindowBatches.__getitem__ = getitem
    cfg = TrainConfig(steps=30, batch_size=8, lr=3e-3, seed=0, snapshot_every=0, checkpoint_every=7,
                      checkpoint_minutes=60)
    T.train(data, out, preset("tiny"), cfg, resume=True, progress=False)
""")


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_matches_uninterrupted_run(tiny_corpus, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = tmp_path / "killed"

    def child(how: str, n: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(tiny_corpus), str(run), how, str(n)],
                              env=ENV, capture_output=True, text=True, timeout=120)

    # 1) killed while writing its third last.safetensors (steps 7, 11 = epoch end, 14)
    p = child("mid-write", 3)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert read_checkpoint(run / "last.safetensors")[0]["training"]["steps"] == 11  # previous one intact
    assert len(list(run.glob(".last.safetensors.*.tmp"))) == 1
    # 2) resumed at 11, killed on its way into step 21: the last checkpoint is step 14, the metrics
    #    log already has a row for step 20
    p = child("mid-step", 9)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert "Resuming" in p.stdout and "at step 11" in p.stdout
    assert not list(run.glob(".*.tmp"))  # the stale temporary was cleaned up
    assert read_checkpoint(run / "last.safetensors")[0]["training"]["state"]["batch_in_epoch"] == 3
    assert rows(run)[-1]["step"] == 20
    # 3) resumed at 14 (mid-epoch) to the end
    logs = []
    summary = train(tiny_corpus, run, preset("tiny"), cfg(), resume=True, progress=False, log=logs.append)
    assert "at step 14 (epoch 1, batch 3)" in logs[0] and summary["steps"] == 30

    straight = tmp_path / "straight"
    ref = train(tiny_corpus, straight, preset("tiny"), cfg(), progress=False, log=lambda s: None)
    assert summary["best_valid_elbo_per_sequence"] == pytest.approx(ref["best_valid_elbo_per_sequence"], rel=1e-6)
    assert_rows_close(rows(run), rows(straight), rel=1e-6)
    a, b = load_checkpoint(run / "last.safetensors"), load_checkpoint(straight / "last.safetensors")
    for p_a, p_b in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p_a, p_b, rtol=1e-5, atol=1e-7)


# -- non-finite losses ---------------------------------------------------------------------------

def poison_batches(monkeypatch, bad_calls) -> None:
    """Make the training batches of the given calls (1-based, in order) NaN."""
    import vrnn.train as T

    real = T.WindowBatches.__getitem__
    count = [0]

    def getitem(self, i):
        count[0] += 1
        x = real(self, i)
        return torch.full_like(x, float("nan")) if bad_calls(count[0]) else x

    monkeypatch.setattr(T.WindowBatches, "__getitem__", getitem)


def test_nonfinite_loss_skips_the_step_and_is_counted(tiny_corpus, tmp_path, monkeypatch):
    poison_batches(monkeypatch, lambda k: k in (5, 6))
    summary = train(tiny_corpus, tmp_path / "run", preset("tiny"), cfg(steps=20), progress=False, log=lambda s: None)
    assert summary["skipped_steps"] == 2 and summary["steps"] == 20
    train_rows = {r["step"]: r for r in rows(tmp_path / "run") if "finite" in r}
    assert not train_rows[5]["finite"] and not train_rows[6]["finite"]
    assert (train_rows[5]["skipped_steps"], train_rows[6]["skipped_steps"], train_rows[20]["skipped_steps"]) == (1, 2, 2)
    assert train_rows[20]["finite"]
    _, tensors = read_checkpoint(tmp_path / "run" / "last.safetensors")
    assert float(tensors["optim.0.step"]) == 18  # Adam stepped on the 18 good batches only
    assert all(torch.isfinite(v).all() for v in tensors.values())


def test_long_nonfinite_streak_stops_naming_the_step(tiny_corpus, tmp_path, monkeypatch):
    poison_batches(monkeypatch, lambda k: k >= 4)
    with pytest.raises(TrainingError, match=r"Step 6: the loss or gradient was not finite for 3 steps.*learning rate"):
        train(tiny_corpus, tmp_path / "run", preset("tiny"), cfg(max_bad_steps=3), progress=False, log=lambda s: None)
    assert [(r["step"], r["finite"], r["skipped_steps"]) for r in rows(tmp_path / "run")] == [
        (4, False, 1), (5, False, 2), (6, False, 3)]


# -- Ctrl-C and SIGTERM --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sig,workers,to_group", [(signal.SIGINT, 2, True), (signal.SIGTERM, 0, False)],
                         ids=["ctrl-c-to-group-with-workers", "sigterm"])
def test_signal_saves_a_checkpoint_before_exiting(tiny_corpus, tmp_path, sig, workers, to_group):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vrnn", "train", "--data", str(tiny_corpus), "--preset", "tiny", "--out", str(run),
         "--steps", "1000000", "--batch-size", "8", "--workers", str(workers), "--threads", "1", "--quiet"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.1)
        if to_group:  # as Ctrl-C in a terminal: the whole process group, DataLoader workers included
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    assert f"Stopped by {sig.name}" in out and "Resume with --resume" in out
    assert json.loads(out.strip().splitlines()[-1])["interrupted"] == sig.name
    saved = load_checkpoint(run / "last.safetensors").info["training"]
    assert 10 <= saved["steps"] < 1_000_000 and saved["steps"] >= rows(run)[-1]["step"]
