"""The training loop: a tiny run learns and writes its files, --resume continues exactly, worker
processes feed the same batches, validation is sharded without changing its value."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_rows_close

from vrnn import VRNN, load_checkpoint, preset
from vrnn.config import TrainConfig
from vrnn.data import Corpus, chunk_starts, split_chunks
from vrnn.evaluate import score_sequences
from vrnn.train import TrainingError, _validate, train


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def cfg(**kw) -> TrainConfig:
    base = {"steps": 30, "batch_size": 8, "lr": 3e-3, "seed": 0, "snapshot_every": 0}
    return TrainConfig(**{**base, **kw})


def test_tiny_run_learns_and_writes_best_last_metrics(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    logs = []
    summary = train(tiny_corpus, run, preset("tiny"), cfg(steps=40, snapshot_every=20), progress=False,
                    log=logs.append)
    assert summary["steps"] == 40 and summary["skipped_steps"] == 0 and summary["interrupted"] is None
    assert "global batch 8" in logs[0] and "lr 0.003" in logs[0]
    valid = [r["valid_elbo_per_sequence"] for r in rows(run) if "valid_elbo_per_sequence" in r]
    assert len(valid) >= 3 and valid[-1] > valid[0] + 100  # nats per 0.5 s sequence
    train_rows = [r for r in rows(run) if "train_elbo_per_sequence" in r]
    assert [r["step"] for r in train_rows] == [10, 20, 30, 40] and all(r["finite"] for r in train_rows)
    best, last = load_checkpoint(run / "best.safetensors"), load_checkpoint(run / "last.safetensors")
    assert best.info["training"]["valid_elbo_per_sequence"] == pytest.approx(max(valid))
    assert last.info["training"]["steps"] == 40
    assert last.info["training"]["train_config"]["batch_size"] == 8
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-000020.safetensors", "step-000040.safetensors"]
    assert not list(run.glob(".*.tmp"))


def test_resume_continues_exactly_from_mid_epoch(tiny_corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_corpus, straight, preset("tiny"), cfg(steps=30), progress=False, log=lambda s: None)
    first = train(tiny_corpus, split, preset("tiny"), cfg(steps=15), progress=False, log=lambda s: None)
    assert first["steps"] == 15
    logs = []
    second = train(tiny_corpus, split, preset("tiny"), cfg(steps=30), resume=True, progress=False, log=logs.append)
    assert logs[0].startswith("Resuming") and "step 15" in logs[0]
    assert second["steps"] == 30
    # the 15-step run validated at its end (step 15); otherwise the two logs are the same rows
    resumed = [r for r in rows(split) if r["step"] != 15]
    assert_rows_close(rows(straight), resumed, rel=1e-6, ignore=("wall_time_s", "best"))


def test_data_loading_in_worker_processes_trains_the_same(tiny_corpus, tmp_path):
    train(tiny_corpus, tmp_path / "w0", preset("tiny"), cfg(steps=20), progress=False, log=lambda s: None)
    train(tiny_corpus, tmp_path / "w2", preset("tiny"), cfg(steps=20, num_workers=2), progress=False,
          log=lambda s: None)
    assert_rows_close(rows(tmp_path / "w0"), rows(tmp_path / "w2"), rel=1e-6)


def test_validation_equals_score_sequences_and_shards_over_ranks(tiny_corpus, monkeypatch):
    import vrnn.train as T

    c = Corpus.open(tiny_corpus)
    torch.manual_seed(0)
    model = VRNN(preset("tiny"), *c.normalization).eval()  # untrained weights are enough here
    chunks = split_chunks(c, "train")
    starts = chunk_starts(c, "train")
    monkeypatch.setattr(T, "VALID_BATCH", 16)  # several batches for the ranks to share
    ref = score_sequences(model, chunks, samples=1, batch_size=16, seed=3).elbo_per_sequence
    one = _validate(model, c.audio("train"), starts, 8000, 3, rank=0, world=1, distributed=False)
    # emulate 3 ranks without a process group: each returns its share of the sum over all chunks
    shares = [_validate(model, c.audio("train"), starts, 8000, 3, rank=r, world=3, distributed=False)
              for r in range(3)]
    assert len(chunks) > 32
    assert one == pytest.approx(ref, rel=1e-6)
    assert sum(shares) == pytest.approx(ref, rel=1e-6)
    assert all(s != 0 for s in shares)


def test_global_batch_must_divide_over_processes(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(TrainingError, match="does not divide over 3 processes"):
        train(tiny_corpus, tmp_path / "r", preset("tiny"), cfg(batch_size=8), progress=False)


def test_init_from_starts_at_the_checkpoints_weights_and_records_it(tiny_corpus, tmp_path):
    first = tmp_path / "first"
    train(tiny_corpus, first, preset("tiny"), cfg(steps=20), progress=False, log=lambda s: None)
    source = load_checkpoint(first / "best.safetensors")
    # lr so small that one Adam step (at most lr per weight) leaves the weights as loaded to 1e-9
    logs = []
    second = tmp_path / "second"
    train(tiny_corpus, second, preset("tiny"), cfg(steps=1, lr=1e-12, init_from=str(first / "best.safetensors")),
          progress=False, log=logs.append)
    assert "Weights from" in logs[0] and "20 steps before this run" in logs[0]
    got = load_checkpoint(second / "last.safetensors")
    for name, value in source.state_dict().items():
        torch.testing.assert_close(got.state_dict()[name], value, atol=1e-9, rtol=0, msg=name)
    record = got.info["training"]
    assert record["steps"] == 1  # this run's own steps; the source's are in init_from
    assert record["init_from"]["steps"] == 20 and record["init_from"]["same_corpus"] is True
    assert record["init_from"]["total_steps"] == 20  # the first run had no source of its own
    assert record["init_from"]["valid_elbo_per_sequence"] == pytest.approx(
        source.info["training"]["valid_elbo_per_sequence"])
    # validated before the first update (step 0): the source's own validation ELBO (same weights, windows, noise)
    valid = [(r["step"], r["valid_elbo_per_sequence"]) for r in rows(second) if "valid_elbo_per_sequence" in r]
    assert valid[0][0] == 0
    assert valid[0][1] == pytest.approx(source.info["training"]["valid_elbo_per_sequence"], rel=1e-5)
    # a continuation of the continuation: its source's total counts both runs (20 + 1)
    third = tmp_path / "third"
    train(tiny_corpus, third, preset("tiny"), cfg(steps=1, lr=1e-12, init_from=str(second / "last.safetensors")),
          progress=False, log=lambda s: None)
    assert load_checkpoint(third / "last.safetensors").info["training"]["init_from"]["total_steps"] == 21


def test_init_from_keeps_the_starting_weights_as_best_when_training_only_hurts(tiny_corpus, tmp_path):
    first = tmp_path / "first"
    train(tiny_corpus, first, preset("tiny"), cfg(steps=20), progress=False, log=lambda s: None)
    second = tmp_path / "second"
    # lr 1.0: every update wrecks the model, so the best validation ELBO is the one before the first update
    train(tiny_corpus, second, preset("tiny"), cfg(steps=3, lr=1.0, init_from=str(first / "best.safetensors")),
          progress=False, log=lambda s: None)
    valid = [r["valid_elbo_per_sequence"] for r in rows(second) if "valid_elbo_per_sequence" in r]
    assert valid[-1] < valid[0]
    best = load_checkpoint(second / "best.safetensors")
    assert best.info["training"]["state"]["best_step"] == 0
    source = load_checkpoint(first / "best.safetensors")
    for name, value in source.state_dict().items():
        torch.testing.assert_close(best.state_dict()[name], value, atol=0, rtol=0, msg=name)


def test_init_from_refuses_another_model_and_a_bad_file(tiny_corpus, tmp_path):
    first = tmp_path / "first"
    train(tiny_corpus, first, preset("tiny"), cfg(steps=2), progress=False, log=lambda s: None)
    with pytest.raises(TrainingError, match=r"family 'vrnn-gauss' \(this run: 'rnn-gauss'\)"):
        train(tiny_corpus, tmp_path / "other", preset("tiny", "rnn-gauss"),
              cfg(steps=1, init_from=str(first / "last.safetensors")), progress=False, log=lambda s: None)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        train(tiny_corpus, tmp_path / "third", preset("tiny"), cfg(steps=1, init_from=str(junk)),
              progress=False, log=lambda s: None)
