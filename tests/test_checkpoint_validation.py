"""Hostile and damaged checkpoints (issue 15, reproductions 3-5): each is made here from a tiny valid
checkpoint with the safetensors library, and each is refused by `read_checkpoint` / `load_checkpoint`
with a CheckpointError naming the file and the field, before any model is built."""

from __future__ import annotations

import json
import struct
import time

import pytest
import torch
from safetensors.torch import save, save_file

from vrnn import FAMILIES, VRNN, CheckpointError, load_checkpoint, preset, read_checkpoint
from vrnn.__main__ import main
from vrnn.checkpoint import expected_shapes


def parts(path):
    """(metadata as JSON-decoded dict, tensors) of a valid checkpoint, for making bad ones."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


def write(path, meta: dict, tensors: dict, **changes) -> object:
    """Save `tensors` with `meta`, where `changes` replaces metadata keys (values are JSON-encoded
    unless already strings)."""
    m = dict(meta)
    for k, v in changes.items():
        m[k] = v if isinstance(v, str) else json.dumps(v)
    save_file(tensors, path, metadata=m)
    return path


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", ["tiny", "cpu", "paper"])
def test_expected_shapes_are_the_models_state_dict(family, size):
    config = preset(size, family)
    if size == "paper":  # built on the meta device: no memory for 4000-unit layers
        sd = {k: tuple(v.shape) for k, v in _meta_state_dict(config).items()}
    else:
        sd = {k: tuple(v.shape) for k, v in VRNN(config).state_dict().items()}
    assert list(expected_shapes(config).items()) == list(sd.items())


def _meta_state_dict(config):
    import vrnn.model as M

    real = M.VRNN.reset_parameters
    M.VRNN.reset_parameters = lambda self: None  # orthogonal init cannot run on the meta device
    try:
        with torch.device("meta"):
            return M.VRNN(config).state_dict()
    finally:
        M.VRNN.reset_parameters = real


def test_small_file_with_a_huge_config_is_refused_at_once(tmp_path, tiny_checkpoint):
    meta, tensors = parts(tiny_checkpoint)
    config = json.loads(meta["config"])
    # the 1.3 KB file: a couple of small tensors and a config claiming an 8000-unit LSTM
    small = {"x_mean": tensors["x_mean"], "x_std": tensors["x_std"], "rnn.bias_hh": torch.zeros(16)}
    p = write(tmp_path / "huge.safetensors", meta, small, config={**config, "h_dim": 8000})
    assert p.stat().st_size < 2000
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"'huge.safetensors'.*h_dim 8000.*implies .* weights"):
        load_checkpoint(p)
    assert time.perf_counter() - t0 < 1.0
    # the tiny model's weights with the same config: refused on the first shape that differs
    p2 = write(tmp_path / "huge2.safetensors", meta, tensors, config={**config, "h_dim": 8000, "phi_x": [1]})
    with pytest.raises(CheckpointError, match=r"'huge2.safetensors'.*implies"):
        load_checkpoint(p2)
    p3 = write(tmp_path / "huge3.safetensors", meta, tensors, config={**config, "h_dim": 33})
    with pytest.raises(CheckpointError, match=r"'huge3.safetensors': tensor .* has shape .* config implies"):
        load_checkpoint(p3)
    # and through the CLI: exit 2 with the sentence
    t0 = time.perf_counter()
    assert main(["generate", str(p), "--out", str(tmp_path / "x.wav")]) == 2
    assert time.perf_counter() - t0 < 1.0 and not (tmp_path / "x.wav").exists()


BAD_CONFIG = [
    ("h_dim", "512", "config.h_dim is '512'"),
    ("h_dim", 0, "config.h_dim is 0"),
    ("h_dim", 10**9, "config.h_dim is 1000000000"),
    ("h_dim", True, "config.h_dim is True"),
    ("z_dim", 2.5, "config.z_dim is 2.5"),
    ("sigma_min", -1e-4, "config.sigma_min is -0.0001"),
    ("sigma_min", 0, "config.sigma_min is 0"),
    ("sigma_min", "nan", "config.sigma_min is 'nan'"),
    ("n_components", 0, "config.n_components is 0"),
    ("family", "transformer", "config.family is 'transformer'"),
    ("x_dim", 0, "config.x_dim is 0"),
    ("x_dim", 200.0, "config.x_dim is 200.0"),
    ("phi_x", [], r"config.phi_x is \[\]"),
    ("phi_x", [32, -1], r"config.phi_x is \[32, -1\]"),
    ("encoder", "32", "config.encoder is '32'"),
    ("dropout", 0.1, r"config has unknown fields \['dropout'\]"),
]


@pytest.mark.parametrize("field,value,message", BAD_CONFIG, ids=[f"{f}={v!r}" for f, v, _ in BAD_CONFIG])
def test_config_fields_are_typed_and_bounded(tmp_path, tiny_checkpoint, field, value, message):
    meta, tensors = parts(tiny_checkpoint)
    config = json.loads(meta["config"])
    p = write(tmp_path / "bad.safetensors", meta, tensors, config={**config, field: value})
    with pytest.raises(CheckpointError, match=f"'bad.safetensors': {message}"):
        read_checkpoint(p)


@pytest.mark.parametrize("value,message", [
    ({"std": 0.1}, "normalization.mean is None"),
    ([0.0, 0.1], "normalization is list"),
    (None, "normalization is NoneType"),
    ({"mean": 0.0, "std": 0.0}, "normalization.std is 0.0; it must be above 0"),
    ({"mean": 0.0, "std": -0.1}, "normalization.std is -0.1"),
    ({"mean": 0.0, "std": float("nan")}, "normalization.std is nan"),
    ({"mean": "0", "std": 0.1}, "normalization.mean is '0'"),
])
def test_normalization_is_finite_and_std_positive(tmp_path, tiny_checkpoint, value, message):
    meta, tensors = parts(tiny_checkpoint)
    p = write(tmp_path / "bad.safetensors", meta, tensors, normalization=value)
    with pytest.raises(CheckpointError, match=f"'bad.safetensors': {message}"):
        read_checkpoint(p)


def test_training_record_numbers_and_damaged_metadata(tmp_path, tiny_checkpoint):
    meta, tensors = parts(tiny_checkpoint)
    for value, message in (({"steps": "2000"}, "training.steps is '2000'"), ([1, 2], "training is list"),
                           ({"wall_time_s": float("nan")}, "training.wall_time_s is nan")):
        with pytest.raises(CheckpointError, match=f"'bad.safetensors': {message}"):
            read_checkpoint(write(tmp_path / "bad.safetensors", meta, tensors, training=value))
    ok = write(tmp_path / "ok.safetensors", meta, tensors, training={"steps": 0, "valid_elbo_per_sequence": float("-inf")})
    assert read_checkpoint(ok)[0]["training"]["steps"] == 0  # a run stopped before validating
    with pytest.raises(CheckpointError, match="'bad.safetensors' has damaged metadata: config is not JSON"):
        read_checkpoint(write(tmp_path / "bad.safetensors", meta, tensors, config="{h_dim: 8"))
    no_norm = {k: v for k, v in meta.items() if k != "normalization"}
    save_file(tensors, tmp_path / "bad.safetensors", metadata=no_norm)
    with pytest.raises(CheckpointError, match="'bad.safetensors' has damaged metadata: no normalization"):
        read_checkpoint(tmp_path / "bad.safetensors")


def test_non_finite_weights_and_x_std_tensor(tmp_path, tiny_checkpoint):
    meta, tensors = parts(tiny_checkpoint)
    w = tensors["decoder_head.weight"].clone()
    w[3, 5] = float("nan")
    with pytest.raises(CheckpointError, match="'bad.safetensors': tensor decoder_head.weight holds 1 NaN"):
        load_checkpoint(write(tmp_path / "bad.safetensors", meta, {**tensors, "decoder_head.weight": w}))
    with pytest.raises(CheckpointError, match="tensor rnn.bias_ih holds 128 NaN or infinite"):
        read_checkpoint(write(tmp_path / "bad.safetensors", meta,
                              {**tensors, "rnn.bias_ih": torch.full((128,), float("inf"))}))
    for v, message in ((0.0, "tensor x_std is 0.0; it must be above 0"), (float("nan"), "tensor x_std holds 1 NaN")):
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(write(tmp_path / "bad.safetensors", meta, {**tensors, "x_std": torch.tensor(v)}))


def test_dtypes_must_be_float(tmp_path, tiny_checkpoint):
    meta, tensors = parts(tiny_checkpoint)
    ints = {k: v.to(torch.int64) for k, v in tensors.items()}
    with pytest.raises(CheckpointError, match=r"'bad.safetensors': tensor \S+ has dtype I64, an integer or boolean"):
        read_checkpoint(write(tmp_path / "bad.safetensors", meta, ints))
    halves = {k: v.to(torch.float16) for k, v in tensors.items()}  # float16 is a float: accepted
    model = load_checkpoint(write(tmp_path / "half.safetensors", meta, halves))
    assert model.phi_x[0].weight.dtype == torch.float32


def test_optimizer_moments_must_match_their_parameters(tmp_path, tiny_checkpoint):
    meta, tensors = parts(tiny_checkpoint)
    with pytest.raises(CheckpointError, match=r"optimizer tensor optim.0.exp_avg has shape \[3\], its parameter \[32, 200\]"):
        read_checkpoint(write(tmp_path / "bad.safetensors", meta, {**tensors, "optim.0.exp_avg": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match="optimizer tensor optim.99.step belongs to no parameter"):
        read_checkpoint(write(tmp_path / "bad.safetensors", meta, {**tensors, "optim.99.step": torch.tensor(1.0)}))


def test_headers_that_lie_about_the_data(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    # a tensor's byte range beyond the end of the file
    name = "decoder_head.weight"
    header[name]["data_offsets"][1] += 10**9
    raw = json.dumps(header).encode()
    (tmp_path / "lie.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    with pytest.raises(CheckpointError, match=f"'lie.safetensors': tensor {name} lies at bytes .* beyond"):
        read_checkpoint(tmp_path / "lie.safetensors")
    # a header length of 2**60
    (tmp_path / "len.safetensors").write_bytes(struct.pack("<Q", 2**60) + data[8:])
    with pytest.raises(CheckpointError, match="'len.safetensors' is not a readable .safetensors checkpoint"):
        read_checkpoint(tmp_path / "len.safetensors")


def test_uploads_are_named_by_their_own_name(tiny_checkpoint):
    meta, tensors = parts(tiny_checkpoint)
    w = tensors["phi_x.0.weight"].clone()
    w[0, 0] = float("nan")
    blob = save({**tensors, "phi_x.0.weight": w}, metadata=meta)
    with pytest.raises(CheckpointError, match=r"^'my model.safetensors': tensor phi_x.0.weight holds 1 NaN"):
        load_checkpoint(blob, name="my model.safetensors")
    with pytest.raises(CheckpointError, match="^the uploaded checkpoint is empty or truncated"):
        load_checkpoint(b"\x80\x04")
    assert load_checkpoint(tiny_checkpoint.read_bytes(), name="x").config == preset("tiny")
