"""Every model family of Table 1 trains for a few steps and round-trips through a checkpoint."""

import pytest
import torch
from conftest import speechlike

from vrnn import FAMILIES, TrainConfig, analyze, load_checkpoint, preset
from vrnn.train import train


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_and_loads(family, tiny_corpus, tmp_path):
    cfg = TrainConfig(steps=3, batch_size=4, snapshot_every=0, seed=1)
    summary = train(tiny_corpus, tmp_path, preset("tiny", family), cfg, progress=False, log=lambda *a: None)
    assert summary["steps"] == 3 and summary["skipped_steps"] == 0
    model = load_checkpoint(tmp_path / "last.safetensors")
    assert model.config.family == family
    assert model.info["training"]["steps"] == 3
    a = analyze(model, speechlike(0.5), 16000)
    assert a.has_latent == family.startswith("vrnn")
    assert torch.isfinite(torch.tensor(a.elbo))
