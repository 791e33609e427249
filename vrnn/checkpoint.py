"""One self-describing checkpoint file: safetensors weights plus JSON metadata. Never pickle.

Metadata keys (all strings, as safetensors requires; values are JSON):
    format          "vrnn-explorer"
    format_version  integer; files newer than FORMAT_VERSION are refused with a sentence
    config          ModelConfig as a dict
    normalization   {"mean", "std"} of the training waveforms (global, never per clip)
    training        {"data", "steps", "epochs", "wall_time_s", "valid_elbo_per_sequence", ...}
Tensors: the model's state dict; a run's `last.safetensors` also holds the optimiser moments under
"optim.*" so that `--resume` continues exactly (ignored by `load_checkpoint`).

Writes are atomic: a temporary file in the same folder, fsync, then rename, so the previous
checkpoint survives a crash at any moment.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import torch

from .config import ModelConfig
from .model import VRNN

FORMAT = "vrnn-explorer"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
OPTIM_PREFIX = "optim."


class CheckpointError(ValueError):
    """A file that is not a usable VRNN Explorer checkpoint, or one that cannot be written; the message
    says why."""


_FILE_MODE = 0o644  # rw-r--r--, as open() gives under the usual umask; mkstemp alone would give 0o600


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (`.NAME.*.tmp`) that a process killed during `save_checkpoint`
    left in `folder`; the checkpoints themselves are never touched. Returns what was removed."""
    removed = []
    for p in Path(folder).glob(".*.safetensors.*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def save_checkpoint(path: str | os.PathLike, model: VRNN, training: dict,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write `model` (and optionally the Adam moments) to `path` atomically.

    Raises CheckpointError when the disk is full or the folder is not writable; any previous file
    at `path` is left untouched.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        tensors.update(optimizer_tensors(optimizer))
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "normalization": json.dumps({"mean": float(model.x_mean), "std": float(model.x_std)}),
        "training": json.dumps(training),
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, _FILE_MODE)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:  # OSError from the file system; safetensors reports write errors as SafetensorError
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if getattr(e, "errno", None) == errno.ENOSPC or f"os error {errno.ENOSPC})" in str(e):
            raise CheckpointError(f"The disk is full: could not write {path}. The previous checkpoint "
                                  "there (if any) is intact; free some space and resume.") from None
        raise CheckpointError(f"Could not write checkpoint {path}: {e}. The previous one is intact.") from None
    except BaseException:  # KeyboardInterrupt and the like: clean up, then let it through
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; some file systems cannot fsync a folder, which is harmless
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam state as flat tensors: optim.{i}.{exp_avg,exp_avg_sq,step} for parameter i."""
    out = {}
    for i, state in optimizer.state_dict()["state"].items():
        for k, v in state.items():
            t = v if torch.is_tensor(v) else torch.tensor(float(v))
            out[f"{OPTIM_PREFIX}{i}.{k}"] = t.detach().to("cpu").contiguous()
    return out


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of `optimizer_tensors` (for `--resume`)."""
    sd = optimizer.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            i, name = key[len(OPTIM_PREFIX):].split(".", 1)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    optimizer.load_state_dict(sd)


def _open(source: str | os.PathLike | bytes) -> tuple[dict, dict[str, torch.Tensor], str]:
    from safetensors import safe_open

    if isinstance(source, (bytes, bytearray)):
        with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
            f.write(source)
            f.flush()
            return _open(f.name)[:2] + ("the uploaded checkpoint",)
    path = Path(source)
    what = f"'{path.name}'"
    if not path.is_file():
        raise CheckpointError(f"There is no checkpoint file at {path}.")
    if path.stat().st_size < 8:
        raise CheckpointError(f"{what} is empty or truncated; it is not a checkpoint.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, header parse errors, truncation
        raise CheckpointError(f"{what} is not a readable .safetensors checkpoint ({e}); it may be "
                              "truncated or another kind of file.") from None
    return metadata, tensors, what


def read_checkpoint(source: str | os.PathLike | bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """Validate a checkpoint and return (info, tensors) without building a model.

    info: {"format_version", "config" (dict), "normalization" (dict), "training" (dict)}.
    Raises CheckpointError for a missing, truncated, foreign or newer-format file.
    """
    metadata, tensors, what = _open(source)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{what} is a .safetensors file but not a VRNN Explorer checkpoint "
                              "(its metadata lacks format='vrnn-explorer').")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise CheckpointError(f"{what} has no valid format_version.") from None
    if version not in SUPPORTED_VERSIONS:
        newer = version > max(SUPPORTED_VERSIONS)
        raise CheckpointError(f"{what} has checkpoint format {version}, but this VRNN Explorer reads "
                              f"format {', '.join(map(str, SUPPORTED_VERSIONS))}"
                              + ("; please upgrade VRNN Explorer." if newer else "."))
    try:
        info = {"format_version": version, "config": json.loads(metadata["config"]),
                "normalization": json.loads(metadata["normalization"]),
                "training": json.loads(metadata.get("training", "{}"))}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what} has damaged metadata ({e}).") from None
    return info, tensors


def load_checkpoint(source: str | os.PathLike | bytes, device: str | torch.device = "cpu") -> VRNN:
    """Load a checkpoint into a `VRNN` in eval mode: the one loader for the CLI, the app and tests.

    Args:
        source: path to a `.safetensors` file written by `save_checkpoint`, or its bytes (an upload).
        device: where to put the model.

    Returns the model with `model.info` set to the checkpoint's metadata (config, normalisation,
    training record). Raises CheckpointError (a ValueError) with a sentence for any bad file.
    Source: whisper `load_model`, descript-audio-codec version checks; no pickle is ever read.
    """
    info, tensors = read_checkpoint(source)
    try:
        config = ModelConfig.from_dict(info["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"The checkpoint's model config is not usable: {e}") from None
    model = VRNN(config, info["normalization"]["mean"], info["normalization"]["std"])
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    bad_shape = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if missing or unexpected or bad_shape:
        raise CheckpointError(f"The checkpoint's weights do not match its config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, wrong shape {bad_shape[:3]}).")
    model.load_state_dict(weights)
    model.info = info
    return model.to(device).eval()
