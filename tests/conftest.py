"""Shared fixtures: synthetic speech-like clips, a tiny corpus, a tiny trained-shape checkpoint.

Nothing here depends on the bundled checkpoints, so the suite runs on a fresh clone.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

# Keep tests light on a 2-core machine.
torch.set_num_threads(int(os.environ.get("VRNN_TEST_THREADS", "1")))


def speechlike(seconds: float, sr: int = 16_000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced-like signal: harmonics of a gliding f0, syllable-rate amplitude modulation, pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    noise = 0.02 * rng.standard_normal(t.size)
    return (0.3 * x * env / 2 + noise).astype(np.float32)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    """Folder with two 2 s speech-like 16 kHz wav clips."""
    d = tmp_path_factory.mktemp("clips")
    for i in range(2):
        sf.write(d / f"clip{i}.wav", speechlike(2.0, f0=120 + 40 * i, seed=i), 16_000, subtype="PCM_16")
    return d


@pytest.fixture(scope="session")
def audio_tree(tmp_path_factory):
    """A plain folder tree of 24 speech-like clips (1-3 s) for building a small corpus."""
    d = tmp_path_factory.mktemp("audio_tree")
    for i in range(24):
        sub = d / f"spk{i % 3}"
        sub.mkdir(exist_ok=True)
        sf.write(sub / f"utt{i:02d}.wav", speechlike(1.0 + (i % 3), f0=100 + 5 * i, seed=i), 16_000, subtype="PCM_16")
    return d


@pytest.fixture(scope="session")
def tiny_corpus(audio_tree, tmp_path_factory):
    """A built corpus folder from `audio_tree`."""
    from vrnn.data import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus") / "c", audio_tree, progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny vrnn-gauss checkpoint with random weights (shape-valid, not trained)."""
    from vrnn import VRNN, preset, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-vrnn-gauss.safetensors"
    save_checkpoint(path, VRNN(preset("tiny"), 0.0, 0.1), {"steps": 0, "epochs": 0, "data": "none"})
    return path


@pytest.fixture(scope="session")
def app_dirs(tmp_path_factory, clip_dir):
    """Checkpoint and example folders for the app tests (the app reads VRNN_CHECKPOINTS / VRNN_EXAMPLES).

    checkpoints/vrnn-gauss.safetensors    tiny vrnn-gauss, random weights
    checkpoints/run-b/best.safetensors    another tiny vrnn-gauss, with run-b/metrics.jsonl
    checkpoints/rnn-gauss.safetensors     tiny rnn-gauss (no latent variable)
    examples: `clip_dir` (two 2 s speech-like clips)
    """
    import json

    from vrnn import VRNN, preset, save_checkpoint

    d = tmp_path_factory.mktemp("app_checkpoints")
    specs = [("vrnn-gauss.safetensors", "vrnn-gauss", 1), ("run-b/best.safetensors", "vrnn-gauss", 2),
             ("rnn-gauss.safetensors", "rnn-gauss", 3)]
    for name, family, seed in specs:
        torch.manual_seed(seed)
        training = {"steps": 10 * seed, "epochs": seed, "wall_time_s": 1.5, "valid_elbo_per_sequence": -9000.0 - seed,
                    "data": {"corpus": "synthetic"}}
        save_checkpoint(d / name, VRNN(preset("tiny", family), 0.0, 0.1), training)
    rows = [{"step": s, "epoch": 0, "train_elbo_per_frame": -300.0 + s, "kl_per_frame": 0.01 * s, "finite": True}
            for s in (10, 20, 30)] + [{"step": 30, "epoch": 1, "valid_elbo_per_frame": -280.0}]
    (d / "run-b" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"checkpoints": d, "examples": clip_dir}


def assert_rows_close(a: list[dict], b: list[dict], rel: float = 1e-6, ignore: tuple[str, ...] = ("wall_time_s",)) -> None:
    """Two lists of metrics rows agree field by field: the same rows with the same keys (less `ignore`), floats
    within `rel`, everything else (step, epoch, flags, counts) exactly. pytest.approx does not compare nested
    structures (pytest >= 9 refuses a list of dicts), so each field is compared on its own."""
    assert len(a) == len(b), f"{len(a)} rows vs {len(b)}"
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        ka, kb = ra.keys() - set(ignore), rb.keys() - set(ignore)
        assert ka == kb, f"row {i}: keys differ: {sorted(ka ^ kb)}"
        for k in sorted(ka):
            va, vb = ra[k], rb[k]
            if isinstance(va, float) or isinstance(vb, float):
                assert va == pytest.approx(vb, rel=rel, nan_ok=True), f"row {i} (step {ra.get('step')}), {k}: {va} vs {vb}"
            else:
                assert type(va) is type(vb) and va == vb, f"row {i} (step {ra.get('step')}), {k}: {va!r} vs {vb!r}"
