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
import math
import os
import tempfile
from dataclasses import fields as dataclass_fields
from pathlib import Path

import torch

from .audio import SAMPLE_RATE
from .config import FAMILIES, ModelConfig
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


# -- validation: everything is checked from the header before any tensor is read ------------------

MAX_UNITS = 16_384  # largest layer, LSTM or latent size accepted (the paper's largest is 4000)
MAX_LAYERS = 16  # per network (the paper uses 4)
MAX_COMPONENTS = 1_024  # GMM components (the paper uses 20)
MAX_HEADER_BYTES = 100_000_000  # as safetensors' own limit
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}  # the float dtypes a checkpoint may hold
_OTHER_DTYPES = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F8_E4M3", "F8_E5M2"}
TRAINING_NUMBERS = ("steps", "epochs", "wall_time_s", "valid_elbo_per_sequence", "best_valid_elbo_per_sequence")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_config(d, what: str = "the checkpoint") -> ModelConfig:
    """A checkpoint's config dict -> ModelConfig, every field typed and bounded.

    Raises CheckpointError naming `what` and the field: a family outside FAMILIES, x_dim (samples per
    frame) outside 1..SAMPLE_RATE (analysis frames a clip with the model's own x_dim), h_dim/z_dim outside 1..MAX_UNITS, a network with no layers, more than MAX_LAYERS or a
    size outside 1..MAX_UNITS, n_components outside 1..MAX_COMPONENTS, sigma_min not in (0, 1].
    """
    if not isinstance(d, dict):
        raise CheckpointError(f"{what}: config is {type(d).__name__}, not a mapping of model sizes.")
    known = {f.name for f in dataclass_fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"{what}: config has unknown fields {unknown}; was it made by a newer version?")

    def bad(field: str, value, rule: str) -> CheckpointError:
        return CheckpointError(f"{what}: config.{field} is {value!r}; it must be {rule}.")

    if "family" in d and d["family"] not in FAMILIES:
        raise bad("family", d["family"], f"one of {', '.join(FAMILIES)}")
    if "x_dim" in d and not (_is_int(d["x_dim"]) and 1 <= d["x_dim"] <= SAMPLE_RATE):
        raise bad("x_dim", d["x_dim"], f"a whole number of samples per frame from 1 to {SAMPLE_RATE} (1 s)")
    for field in ("h_dim", "z_dim"):
        if field in d and not (_is_int(d[field]) and 1 <= d[field] <= MAX_UNITS):
            raise bad(field, d[field], f"a whole number from 1 to {MAX_UNITS}")
    for field in ("phi_x", "phi_z", "encoder", "prior", "decoder"):
        if field not in d:
            continue
        v = d[field]
        if not (isinstance(v, list) and 1 <= len(v) <= MAX_LAYERS and all(_is_int(s) and 1 <= s <= MAX_UNITS for s in v)):
            raise bad(field, v, f"a list of 1 to {MAX_LAYERS} layer sizes, each a whole number from 1 to {MAX_UNITS}")
    if "n_components" in d and not (_is_int(d["n_components"]) and 1 <= d["n_components"] <= MAX_COMPONENTS):
        raise bad("n_components", d["n_components"], f"a whole number from 1 to {MAX_COMPONENTS}")
    if "sigma_min" in d:
        s = d["sigma_min"]
        if not (_is_number(s) and math.isfinite(s) and 0 < s <= 1):
            raise bad("sigma_min", s, "a number above 0 and at most 1 (the authors use 1e-4)")
    try:
        return ModelConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: config is not usable: {e}") from None


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state dict `VRNN(config)` has, name -> shape, in its order, computed without building it
    (tests check it against the model)."""
    c = config
    X, H, Z = c.x_dim, c.h_dim, c.z_dim
    shapes: dict[str, tuple[int, ...]] = {"x_mean": (), "x_std": ()}

    def mlp(name: str, d_in: int, sizes: tuple[int, ...]) -> None:
        for i, size in enumerate(sizes):
            shapes[f"{name}.{2 * i}.weight"], shapes[f"{name}.{2 * i}.bias"] = (size, d_in), (size,)
            d_in = size

    def linear(name: str, d_in: int, d_out: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (d_out, d_in), (d_out,)

    mlp("phi_x", X, c.phi_x)
    dx, dz = c.phi_x[-1], 0
    if c.has_latent:
        mlp("phi_z", Z, c.phi_z)
        dz = c.phi_z[-1]
        mlp("encoder", dx + H, c.encoder)
        linear("encoder_head", c.encoder[-1], 2 * Z)
        if c.learned_prior:
            mlp("prior", H, c.prior)
            linear("prior_head", c.prior[-1], 2 * Z)
    mlp("decoder", dz + H, c.decoder)
    linear("decoder_head", c.decoder[-1], c.n_components * (1 + 2 * X) if c.gmm_output else 2 * X)
    shapes.update({"rnn.weight_ih": (4 * H, dx + dz), "rnn.weight_hh": (4 * H, H),
                   "rnn.bias_ih": (4 * H,), "rnn.bias_hh": (4 * H,)})
    return shapes


def _read_header(data: bytes | None, path: Path | None, what: str) -> tuple[dict, int]:
    """The safetensors header (a JSON object after an 8-byte little-endian length) and the size of
    the data section that follows it, from at most MAX_HEADER_BYTES of the file."""
    if data is not None:
        size, head = len(data), bytes(data[:8])
    else:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
    if size < 8 or len(head) < 8:
        raise CheckpointError(f"{what} is empty or truncated; it is not a checkpoint.")
    n = int.from_bytes(head, "little")
    if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
        raise CheckpointError(f"{what} is not a readable .safetensors checkpoint (its header claims {n} bytes, the "
                              f"file has {size}); it may be truncated or another kind of file.")
    if data is not None:
        raw = bytes(data[8:8 + n])
    else:
        with open(path, "rb") as f:
            f.seek(8)
            raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{what} is not a readable .safetensors checkpoint (its header is not JSON); it "
                              "may be truncated or another kind of file.") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{what} is not a readable .safetensors checkpoint (its header is not a mapping).")
    return header, size - 8 - n


def _check_entries(header: dict, data_bytes: int, what: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each tensor entry's dtype (a float one), shape and byte range (inside the file, the size its
    shape and dtype imply, covering the data section exactly). Returns name -> (dtype, shape)."""
    entries, covered = {}, 0
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(e, dict) and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
                and all(_is_int(s) and s >= 0 for s in e["shape"]) and isinstance(e.get("data_offsets"), list)
                and len(e["data_offsets"]) == 2 and all(_is_int(o) for o in e["data_offsets"])):
            raise CheckpointError(f"{what}: tensor {name} has a malformed header entry.")
        dtype, shape, (begin, end) = e["dtype"], tuple(e["shape"]), e["data_offsets"]
        if dtype not in DTYPE_BYTES:
            kind = "an integer or boolean" if dtype in _OTHER_DTYPES else "an unknown"
            raise CheckpointError(f"{what}: tensor {name} has dtype {dtype}, {kind} type; a checkpoint's tensors "
                                  f"are floating point ({', '.join(DTYPE_BYTES)}).")
        if not 0 <= begin <= end <= data_bytes:
            raise CheckpointError(f"{what}: tensor {name} lies at bytes {begin}-{end}, beyond the file's "
                                  f"{data_bytes} bytes of data; the file is truncated or damaged.")
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise CheckpointError(f"{what}: tensor {name} declares shape {list(shape)} ({dtype}) but holds "
                                  f"{end - begin} bytes.")
        covered += end - begin
        entries[name] = (dtype, shape)
    if covered != data_bytes:
        raise CheckpointError(f"{what}: its tensors account for {covered} bytes, but the file holds {data_bytes} "
                              "bytes of data; the file is damaged.")
    return entries


def _check_normalization(norm, what: str) -> dict:
    if not isinstance(norm, dict):
        raise CheckpointError(f"{what}: normalization is {type(norm).__name__}, not {{\"mean\", \"std\"}}.")
    for key in ("mean", "std"):
        v = norm.get(key)
        if not (_is_number(v) and math.isfinite(v)):
            raise CheckpointError(f"{what}: normalization.{key} is {v!r}; it must be a finite number.")
    if norm["std"] <= 0:
        raise CheckpointError(f"{what}: normalization.std is {norm['std']!r}; it must be above 0 (it divides "
                              "every input sample).")
    return norm


def _check_training(training, what: str) -> dict:
    if not isinstance(training, dict):
        raise CheckpointError(f"{what}: training is {type(training).__name__}, not a mapping.")
    for key in TRAINING_NUMBERS:
        v = training.get(key)
        if v is not None and not (_is_number(v) and (math.isfinite(v) or key.endswith("elbo_per_sequence"))):
            raise CheckpointError(f"{what}: training.{key} is {v!r}; it must be a number.")
    return training


def _check_tensors_match(entries: dict, config: ModelConfig, what: str) -> None:
    """Declared names and shapes against what the config implies (model tensors) and against the
    parameters they belong to (optimizer moments), from the header alone."""
    expected = expected_shapes(config)
    n_expected = sum(math.prod(s) for s in expected.values())
    data_bytes = sum(math.prod(s) * DTYPE_BYTES[d] for d, s in entries.values())
    if n_expected * min(DTYPE_BYTES.values()) > data_bytes:
        raise CheckpointError(f"{what}: its config ({config.family}, h_dim {config.h_dim}, z_dim {config.z_dim}) "
                              f"implies {n_expected:,} weights, at least {n_expected * 2:,} bytes, but the file holds "
                              f"{data_bytes:,} bytes of tensors; the config does not describe these weights.")
    model = {k: v for k, v in entries.items() if not k.startswith(OPTIM_PREFIX)}
    missing = [k for k in expected if k not in model]
    unexpected = [k for k in model if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{what}: the weights do not match its config ({config.family}): "
                              + (f"missing {missing[:3]}" if missing else "")
                              + ("; " if missing and unexpected else "")
                              + (f"unexpected {unexpected[:3]}" if unexpected else "") + ".")
    for k, shape in expected.items():
        if model[k][1] != shape:
            raise CheckpointError(f"{what}: tensor {k} has shape {list(model[k][1])}, but its config implies "
                                  f"{list(shape)}; the weights do not match the config.")
    params = [s for k, s in expected.items() if k not in ("x_mean", "x_std")]
    for k, (_dtype, shape) in entries.items():
        if not k.startswith(OPTIM_PREFIX):
            continue
        i, _, name = k[len(OPTIM_PREFIX):].partition(".")
        if not (i.isdigit() and int(i) < len(params) and name in ("exp_avg", "exp_avg_sq", "step")):
            raise CheckpointError(f"{what}: optimizer tensor {k} belongs to no parameter of this model.")
        want = () if name == "step" else params[int(i)]
        if shape != want:
            raise CheckpointError(f"{what}: optimizer tensor {k} has shape {list(shape)}, its parameter {list(want)}.")


def _check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    for k, t in tensors.items():
        if not torch.isfinite(t).all():
            n = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{what}: tensor {k} holds {n} NaN or infinite value(s); the model would "
                                  "compute NaN everywhere.")
    if "x_std" in tensors and not float(tensors["x_std"]) > 0:
        raise CheckpointError(f"{what}: tensor x_std is {float(tensors['x_std'])}; it must be above 0 (it divides "
                              "every input sample).")


def read_checkpoint(source: str | os.PathLike | bytes, name: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Validate a checkpoint and return (info, tensors) without building a model.

    Args:
        source: a path, or the file's bytes (an upload).
        name: what to call the file in messages (an upload's own name); default its file name.

    info: {"format_version", "config" (dict), "normalization" (dict), "training" (dict)}.
    Everything is checked from the file's header before any tensor is read, so a small file
    cannot make this allocate much: format and version; config fields typed and bounded
    (`validate_config`); normalisation finite with std > 0; training numbers numeric; every tensor
    floating point, inside the file and of the size its shape implies; the weights the config implies
    (count against the file's size, then names and shapes, `expected_shapes`), optimizer moments
    matching their parameters. Then the tensors are read and must be finite, x_std > 0.

    Raises CheckpointError naming the file and the field for a missing, truncated, foreign, newer-format,
    inconsistent or non-finite file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path = bytes(source), None
        what = f"'{name}'" if name else "the uploaded checkpoint"
    else:
        data, path = None, Path(source)
        what = f"'{name or path.name}'"
        if not path.is_file():
            raise CheckpointError(f"There is no checkpoint file at {path}.")
    header, data_bytes = _read_header(data, path, what)
    metadata = header.get("__metadata__") or {}
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{what} has damaged metadata (not a mapping of strings).")
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
    info = {"format_version": version}
    for key, default in (("config", None), ("normalization", None), ("training", "{}")):
        raw = metadata.get(key, default)
        if raw is None:
            raise CheckpointError(f"{what} has damaged metadata: no {key}.")
        try:
            info[key] = json.loads(raw)
        except ValueError as e:
            raise CheckpointError(f"{what} has damaged metadata: {key} is not JSON ({e}).") from None
    config = validate_config(info["config"], what)
    _check_normalization(info["normalization"], what)
    _check_training(info["training"], what)
    entries = _check_entries(header, data_bytes, what)
    _check_tensors_match(entries, config, what)
    try:  # the header has been checked: reading allocates no more than the file's size
        if data is not None:
            from safetensors.torch import load

            tensors = load(data)
        else:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError: damage the header checks did not see
        raise CheckpointError(f"{what} is not a readable .safetensors checkpoint ({e}); it may be "
                              "truncated or another kind of file.") from None
    _check_finite(tensors, what)
    return info, tensors


def load_checkpoint(source: str | os.PathLike | bytes, device: str | torch.device = "cpu",
                    name: str | None = None) -> VRNN:
    """Load a checkpoint into a `VRNN` in eval mode: the one loader for the CLI, the app and tests.

    Args:
        source: path to a `.safetensors` file written by `save_checkpoint`, or its bytes (an upload).
        device: where to put the model.
        name: what to call the file in messages (an upload's own name).

    Returns the model with `model.info` set to the checkpoint's metadata (config, normalisation,
    training record). Raises CheckpointError (a ValueError) with a sentence naming the file and the
    field for any bad file, before the model is built (`read_checkpoint`).
    Source: whisper `load_model`, descript-audio-codec version checks; no pickle is ever read.
    """
    info, tensors = read_checkpoint(source, name)
    config = validate_config(info["config"])
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
