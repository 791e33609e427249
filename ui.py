"""Shared UI helpers of the Streamlit app: where checkpoints and clips come from, the sidebar, caching.

The pages call these and then one engine function and one figure. Nothing here does model math.

Where things are found (first match wins for the defaults):
    checkpoints  $VRNN_CHECKPOINTS (folders separated by ':'), else assets/checkpoints/; plus every
                 `--checkpoints DIR` given after `--` (`streamlit run app.py -- --checkpoints runs/`).
                 Folders are searched two levels deep, so a run folder shows best, last and its snapshots.
    clips        $VRNN_EXAMPLES, else assets/examples/; plus the sidebar's uploader.
Caching: models with st.cache_resource (keyed by path, size and modification time, or by the upload's
SHA-256), per-clip analyses with st.cache_data (keyed by checkpoint key and the clip's SHA-256), so a page
switch or a toggled row never reruns the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

import vrnn
from vrnn.audio import to_wav_bytes

# One intra-op thread per model pass by default. The app's passes are batch-1 time loops of small
# products: on an idle 2-core machine a second thread gains ~5-25 %, but when the cores are busy (other
# sessions of this server, other programs) OpenMP's barriers wait on descheduled threads and a 30 s clip
# took 78 s with 2 threads against 0.6 s with 1 (measured here). VRNN_THREADS=N overrides.
_THREADS = int(os.environ.get("VRNN_THREADS", "1"))
if _THREADS > 0:
    import torch

    torch.set_num_threads(_THREADS)

ROOT = Path(__file__).resolve().parent
DEFAULT_CHECKPOINTS = ROOT / "assets" / "checkpoints"
DEFAULT_EXAMPLES = ROOT / "assets" / "examples"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")
MAX_CLIP_SECONDS = 600.0  # longest clip analysed (10 min); the upload size limit is server.maxUploadSize
PREFERRED_CHECKPOINT = "vrnn-gauss"
TRAIN_COMMAND = ("python -m vrnn corpus --out data/allison\n"
                 "python -m vrnn train --data data/allison --preset cpu --out runs/vrnn-gauss\n"
                 "streamlit run app.py -- --checkpoints runs/vrnn-gauss")
ROWS_TEXT = """
**How to read it** (Chung et al. 2015, Figure 2). Each point is one 12.5 ms frame of 200 samples.
- **δ<sub>t</sub>** (top): how far the posterior mean of the latent variable moved since the previous frame,
  Σ<sub>j</sub>(μ<sub>z,t</sub><sup>j</sup> − μ<sub>z,t−1</sub><sup>j</sup>)². Peaks mark where the model
  changes its description of the sound.
- **KL<sub>t</sub>** (middle, nats): how much the frame told the model beyond what it predicted from the past,
  KL(q(z<sub>t</sub> | x<sub>≤t</sub>, z<sub><t</sub>) ‖ p(z<sub>t</sub> | x<sub><t</sub>, z<sub><t</sub>)).
  It rises at onsets and at transitions between sounds.
- **Waveform** (bottom): the analysed audio at 16 kHz, drawn as a min/max envelope when long.
"""


# -- where things are -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint the user can choose: a file, or an uploaded .safetensors held as bytes.

    key: cache key (path + size + mtime, or 'upload:' + SHA-256), so a retrained file is reloaded.
    """

    label: str
    key: str
    path: Path | None = None
    data: bytes | None = None
    name: str | None = None  # an upload's own file name, for messages (its bytes have no path)

    def metrics_path(self) -> Path | None:
        """The training log of this checkpoint's run: `<name>.metrics.jsonl` beside the file (bundled
        checkpoints sharing a folder), else the run folder's `metrics.jsonl` (one level up for snapshots/)."""
        if self.path is None:
            return None
        candidates = [self.path.with_suffix(".metrics.jsonl"), self.path.parent / "metrics.jsonl"]
        if self.path.parent.name == "snapshots":
            candidates.append(self.path.parent.parent / "metrics.jsonl")
        return next((p for p in candidates if p.is_file()), None)


@dataclass(frozen=True)
class Clip:
    """Audio ready for the model: waveform float32 [N] at 16 kHz, its name and the SHA-256 of the file."""

    name: str
    digest: str
    waveform: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.waveform) / vrnn.SAMPLE_RATE


def _cli_dirs() -> list[Path]:
    """Folders given as `--checkpoints DIR` after `--` on the streamlit command line."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--checkpoints", action="append", default=[])
    args, _ = p.parse_known_args(sys.argv[1:])
    return [Path(d) for d in args.checkpoints]


def checkpoint_dirs() -> list[Path]:
    env = os.environ.get("VRNN_CHECKPOINTS")
    base = [Path(d) for d in env.split(os.pathsep) if d] if env else [DEFAULT_CHECKPOINTS]
    return base + _cli_dirs()


def example_dir() -> Path:
    return Path(os.environ.get("VRNN_EXAMPLES") or DEFAULT_EXAMPLES)


def _label(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return str(rel.with_suffix("")) if rel.parts else path.stem


def find_checkpoints() -> dict[str, CheckpointRef]:
    """label -> CheckpointRef for every .safetensors file in the checkpoint folders (two levels deep).

    Sorted: the preferred bundled model first, then by folder and name. Hidden/temporary files are skipped.
    """
    found: dict[str, CheckpointRef] = {}
    for root in checkpoint_dirs():
        if root.is_file() and root.suffix == ".safetensors":
            files, base = [root], root.parent
        elif root.is_dir():
            files = sorted(p for pattern in ("*.safetensors", "*/*.safetensors", "*/*/*.safetensors")
                           for p in root.glob(pattern))
            base = root
        else:
            continue
        for f in files:
            if any(part.startswith(".") for part in f.relative_to(base).parts):
                continue
            label = _label(f, base)
            if label in found:
                label = f"{base.name}/{label}"
            st_ = f.stat()
            found[label] = CheckpointRef(label, f"{f.resolve()}:{st_.st_size}:{st_.st_mtime_ns}", path=f)
    order = sorted(found, key=lambda k: (not k.startswith(PREFERRED_CHECKPOINT), k.count("/"), k))
    return {k: found[k] for k in order}


def find_examples() -> dict[str, Path]:
    d = example_dir()
    if not d.is_dir():
        return {}
    return {p.name: p for p in sorted(d.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()}


def uploaded_checkpoint(upload) -> CheckpointRef:
    """A CheckpointRef for an uploaded file; CheckpointError unless its name ends in .safetensors. The
    upload's name is kept for messages; show it (and the label) through `plain`, it is the user's text."""
    if not upload.name.lower().endswith(".safetensors"):
        raise vrnn.CheckpointError(f"'{upload.name}' is not a .safetensors file; only checkpoints saved by "
                                   "VRNN Explorer (.safetensors) can be uploaded here.")
    data = upload.getvalue()
    return CheckpointRef(f"{Path(upload.name).stem} (uploaded)", "upload:" + hashlib.sha256(data).hexdigest(),
                         data=data, name=upload.name)


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&\"'=^])")


def plain(text: str) -> str:
    """`text` for Streamlit's Markdown (st.error, st.caption, ...) shown as typed: every ASCII punctuation
    character that Markdown, Streamlit's :color[...] and :emoji: directives, LaTeX ($) or HTML could read is
    backslash-escaped (CommonMark lets any of them be), line breaks become spaces. For names the user chose,
    e.g. an upload called `[x](http://evil).wav`, which must not become a link."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(str(text).splitlines()))


# -- the shared sidebar ----------------------------------------------------------------------------------------

def sidebar() -> None:
    """Checkpoint picker, clip picker and uploader; identical on every page so their state survives page
    switches. Pages read the choices with `selected_checkpoint()` and `current_clip()`."""
    with st.sidebar:
        st.markdown("### Model and clip")
        ckpts = find_checkpoints()
        if ckpts:
            st.selectbox("Checkpoint", list(ckpts), key="checkpoint",
                         help="Files in " + ", ".join(str(d) for d in checkpoint_dirs()))
        examples = find_examples()
        if examples:
            st.selectbox("Example clip", list(examples), key="clip",
                         help=f"Audio files in {example_dir()}")
        st.file_uploader("Or your own audio", key="upload",
                         help=f"WAV, FLAC, OGG, MP3 …; any sample rate and channel count; up to "
                              f"{MAX_CLIP_SECONDS / 60:.0f} minutes. It replaces the example clip until removed.")


def require_checkpoints() -> dict[str, CheckpointRef]:
    """All checkpoints; when there are none, say how to make one and stop the page."""
    ckpts = find_checkpoints()
    if not ckpts:
        st.info("No checkpoint found in " + ", ".join(f"`{d}`" for d in checkpoint_dirs())
                + ". Train one (about an hour on 2 CPU cores; `--preset tiny` takes seconds) and point the app "
                "at it:")
        st.code(TRAIN_COMMAND, language="bash")
        st.stop()
    return ckpts


def selected_checkpoint() -> CheckpointRef:
    ckpts = require_checkpoints()
    return ckpts.get(st.session_state.get("checkpoint"), next(iter(ckpts.values())))


# -- cached loading ---------------------------------------------------------------------------------------------

@st.cache_resource(max_entries=8, show_spinner="Loading the model …")
def _load_model(key: str, _ref: CheckpointRef) -> vrnn.VRNN | vrnn.CheckpointError:
    """The model, or the CheckpointError that refused the file: failures are cached too (by the same key:
    path + size + mtime, or the upload's SHA-256), so a bad upload costs its check once, not on every rerun."""
    try:
        return vrnn.load_checkpoint(_ref.data if _ref.data is not None else _ref.path, name=_ref.name)
    except vrnn.CheckpointError as e:
        return e


def load_model(ref: CheckpointRef, stop: bool = True) -> vrnn.VRNN | None:
    """The model of `ref`, loaded once per process. A bad file shows its message, which names the file
    (an upload by its own name) as plain text (and stops the page unless stop=False, then returns None)."""
    model = _load_model(ref.key, ref)
    if isinstance(model, vrnn.CheckpointError):
        st.error(plain(f"Checkpoint {ref.label}: {model}"))
        if stop:
            st.stop()
        return None
    return model


@st.cache_data(max_entries=16, show_spinner=False)
def _load_clip(digest: str, _data: bytes) -> tuple[np.ndarray, list[str]]:
    notes = []  # sentences about a file read only in part (a WAV cut short), shown with the clip
    return vrnn.load_audio(_data, max_seconds=MAX_CLIP_SECONDS, on_warning=notes.append)[0], notes


@st.cache_data(max_entries=256, show_spinner=False)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def clip_from_bytes(data: bytes, name: str, digest: str | None = None) -> Clip:
    """Decode an audio file's bytes (cached by content hash). Raises vrnn.AudioError with a sentence
    that names the file."""
    digest = digest or hashlib.sha256(data).hexdigest()
    try:
        waveform, notes = _load_clip(digest, data)
    except vrnn.AudioError as e:
        msg = str(e).replace("the uploaded audio", f"'{name}'", 1)
        msg = re.sub(r"Error opening <[^>]*>: ", "", msg)  # libsndfile names the in-memory buffer; drop that
        raise vrnn.AudioError(msg) from None
    for note in notes:
        st.warning(note.replace("the uploaded audio", f"'{name}'", 1))
    return Clip(name, digest, waveform)


def current_clip() -> Clip:
    """The uploaded clip if there is one, else the chosen example. Errors are shown and stop the page."""
    upload = st.session_state.get("upload")
    try:
        if upload is not None:
            digests = st.session_state.setdefault("_upload_digests", {})  # hash each upload once
            if upload.file_id not in digests:
                digests[upload.file_id] = hashlib.sha256(upload.getvalue()).hexdigest()
            return clip_from_bytes(upload.getvalue(), upload.name, digests[upload.file_id])
        examples = find_examples()
        if not examples:
            st.info(f"There are no example clips in `{example_dir()}`. Upload an audio file in the sidebar.")
            st.stop()
        path = examples.get(st.session_state.get("clip"), next(iter(examples.values())))
        stat = path.stat()
        return clip_from_bytes(path.read_bytes(), path.name, _file_digest(str(path), stat.st_size, stat.st_mtime_ns))
    except vrnn.AudioError as e:
        st.error(plain(str(e)))  # names the upload: the user's text, shown as typed
        st.stop()
    except OSError as e:
        st.error(plain(f"The clip could not be read: {e}"))
        st.stop()


@st.cache_data(max_entries=16, show_spinner="Running the model over the clip …")
def _analysis(ckpt_key: str, clip_digest: str, _model: vrnn.VRNN, _waveform: np.ndarray) -> vrnn.Analysis:
    return vrnn.analyze(_model, _waveform, vrnn.SAMPLE_RATE)


def analysis(ref: CheckpointRef, model: vrnn.VRNN, clip: Clip) -> vrnn.Analysis:
    """Figure 2's quantities for `clip` under `ref`; computed once per (checkpoint, clip content)."""
    return _analysis(ref.key, clip.digest, model, clip.waveform)


@st.cache_data(max_entries=32, show_spinner="Sampling from the model …")
def _generated(ckpt_key: str, seconds: float, seed: int, n: int, _model: vrnn.VRNN) -> np.ndarray:
    return np.atleast_2d(vrnn.generate(_model, seconds=seconds, seed=seed, n_samples=n))  # [n, N]


def generated(ref: CheckpointRef, model: vrnn.VRNN, seconds: float, seed: int, n: int = 1) -> np.ndarray:
    """n samples of `seconds` from `model`, float32 [n, N] at 16 kHz (cached by checkpoint, length, seed)."""
    return _generated(ref.key, float(seconds), int(seed), int(n), model)


@st.cache_data(max_entries=32, show_spinner=False)
def log_mel(clip_digest: str, _waveform: np.ndarray) -> np.ndarray:
    from vrnn.plots import log_mel as _log_mel

    return _log_mel(_waveform)


@st.cache_data(max_entries=64, show_spinner=False)
def _metrics(path: str, mtime_ns: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    return rows


def metrics(ref: CheckpointRef) -> list[dict] | None:
    """Rows of the metrics.jsonl that belongs to `ref`'s training run, or None when there is none."""
    p = ref.metrics_path()
    return _metrics(str(p), p.stat().st_mtime_ns) if p else None


def training_logs(refs: list[CheckpointRef]) -> dict[str, list[dict]]:
    """run name -> metrics rows for the runs behind `refs`, each run once (best, last and snapshots of one
    run share a log). The run name is the label's folder part, or the label itself."""
    logs: dict[str, list[dict]] = {}
    seen: set[Path] = set()
    for ref in refs:
        p = ref.metrics_path()
        if p is None or p in seen:
            continue
        seen.add(p)
        name = ref.label if p.name != "metrics.jsonl" else (ref.label.split("/")[0] if "/" in ref.label else ref.label)
        logs[name] = metrics(ref)
    return {k: v for k, v in logs.items() if v}


def default_pair(ckpts: dict[str, CheckpointRef], first: str | None) -> list[str]:
    """Two checkpoints to compare by default: the sidebar's choice and the next one from another run."""
    labels = list(ckpts)
    first = first if first in ckpts else labels[0]
    run = lambda label: label.split("/")[0]  # noqa: E731
    other = [k for k in labels if k != first and run(k) != run(first)] + [k for k in labels if k != first]
    return [first] + other[:1]


# -- small outputs ----------------------------------------------------------------------------------------------

def wav(waveform: np.ndarray) -> bytes:
    return to_wav_bytes(waveform, vrnn.SAMPLE_RATE)


def frames_csv(a: vrnn.Analysis) -> bytes:
    """The per-frame table as CSV bytes (`Analysis.to_csv`, the same file as `vrnn analyze --csv`)."""
    return a.to_csv().encode()


@st.cache_data(max_entries=16, show_spinner=False)
def _frames_csv(ckpt_key: str, clip_digest: str, _a: vrnn.Analysis) -> bytes:
    return frames_csv(_a)


def frames_csv_for(ref: CheckpointRef, clip: Clip, a: vrnn.Analysis) -> bytes:
    """`frames_csv` of the analysis of `clip` under `ref`, built once (a 10-minute clip has 48,000 rows)."""
    return _frames_csv(ref.key, clip.digest, a)


def model_summary(ref: CheckpointRef, model: vrnn.VRNN) -> dict:
    """One table row: config, training record and validation ELBO from the checkpoint's metadata."""
    c = model.config
    tr = (getattr(model, "info", None) or {}).get("training", {})
    v = tr.get("valid_elbo_per_sequence")
    wf = tr.get("train_config", {}).get("window_frames", 40)
    return {
        "checkpoint": ref.label,
        "family": c.family,
        "LSTM": c.h_dim,
        "latent": c.z_dim if c.has_latent else None,
        "steps": tr.get("steps"),
        "epochs": tr.get("epochs"),
        "train time (min)": round(tr["wall_time_s"] / 60, 1) if "wall_time_s" in tr else None,
        "valid ELBO (nats / 0.5 s)": round(v, 1) if v is not None else None,
        "valid ELBO (nats / frame)": round(v / wf, 2) if v is not None else None,
    }


def plotly(fig, key: str | None = None) -> None:
    """st.plotly_chart with the app's settings (full width, no logo, PNG export at 2x)."""
    st.plotly_chart(fig, key=key, theme=None, config={"displaylogo": False, "toImageButtonOptions": {"scale": 2}})
