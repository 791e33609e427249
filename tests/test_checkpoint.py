"""Checkpoint round trip and rejection of bad files (never unpickled)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from vrnn import FAMILIES, VRNN, CheckpointError, load_checkpoint, preset, read_checkpoint, save_checkpoint


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip(tmp_path, family):
    torch.manual_seed(1)
    m = VRNN(preset("tiny", family), 0.003, 0.14)
    p = save_checkpoint(tmp_path / "m.safetensors", m, {"steps": 7, "data": "unit"})
    m2 = load_checkpoint(p)
    assert not m2.training and m2.config == m.config
    assert m2.info["training"]["steps"] == 7 and m2.info["normalization"]["std"] == pytest.approx(0.14)
    x = torch.randn(2, 5, 200)
    torch.testing.assert_close(m2(x, sample=False).elbo, m.eval()(x, sample=False).elbo)
    m3 = load_checkpoint(p.read_bytes())  # uploads arrive as bytes
    torch.testing.assert_close(m3(x, sample=False).elbo, m2(x, sample=False).elbo)
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary files left


def test_corrupt_and_foreign_files(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.safetensors").write_text("hello")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for name in ("trunc", "text", "empty"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / f"{name}.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not a VRNN Explorer checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(b"\x80\x04\x95 pickle-looking bytes")


def test_newer_format_and_mismatched_weights(tmp_path, tiny_checkpoint):
    info, tensors = read_checkpoint(tiny_checkpoint)
    meta = {"format": "vrnn-explorer", "format_version": "99", "config": json.dumps(info["config"]),
            "normalization": json.dumps(info["normalization"]), "training": "{}"}
    save_file(tensors, tmp_path / "new.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(tmp_path / "new.safetensors")
    meta["format_version"] = "1"
    tensors.pop("phi_x.0.weight")
    save_file(tensors, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_optimizer_state_round_trip(tmp_path):
    from vrnn.checkpoint import restore_optimizer

    m = VRNN(preset("tiny"))
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    (-m(torch.randn(2, 3, 200)).elbo.mean()).backward()
    opt.step()
    p = save_checkpoint(tmp_path / "last.safetensors", m, {}, opt)
    _, tensors = read_checkpoint(p)
    opt2 = torch.optim.Adam(m.parameters(), 1e-3)
    restore_optimizer(opt2, tensors)
    a, b = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"])
    assert float(a["step"]) == float(b["step"])
    load_checkpoint(p)  # the optimiser tensors do not confuse the model loader
