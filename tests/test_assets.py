"""The bundled assets agree with each other: each checkpoint's training log and latent projection belong to
that very file (issue 12 ships the logs; issue 14's fixed projection is ignored by the app when stale)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vrnn.checkpoint import read_checkpoint
from vrnn.train import read_metrics, valid_curve

CHECKPOINTS = sorted((Path(__file__).resolve().parents[1] / "assets" / "checkpoints").glob("*.safetensors"))


def test_all_five_families_are_bundled():
    families = {read_checkpoint(p)[0]["config"]["family"] for p in CHECKPOINTS}
    assert families == {"rnn-gauss", "rnn-gmm", "vrnn-i-gauss", "vrnn-gauss", "vrnn-gmm"}


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.stem)
def test_each_checkpoint_ships_its_own_training_log(path):
    info, _ = read_checkpoint(path)
    training = info["training"]
    log = path.with_suffix(".metrics.jsonl")
    assert log.is_file(), f"{log.name} missing: the compare page would show no training curves"
    valid = valid_curve(read_metrics(log))
    # the checkpoint is the log's best validation row, saved at that step
    assert training["state"]["best_step"] == training["steps"] in valid
    assert valid[training["steps"]] == pytest.approx(training["valid_elbo_per_sequence"], rel=1e-9)
    assert max(valid.values()) == pytest.approx(training["valid_elbo_per_sequence"], rel=1e-9)


@pytest.mark.parametrize("path", [p for p in CHECKPOINTS if read_checkpoint(p)[0]["config"]["family"].startswith("vrnn")],
                         ids=lambda p: p.stem)
def test_each_latent_model_ships_a_projection_fitted_on_this_file(path):
    meta = json.loads(path.with_suffix(".projection.json").read_text())
    assert meta["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
