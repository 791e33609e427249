"""Shared UI helpers of the Streamlit app: where checkpoints and clips come from, the sidebar, caching.

The pages call these and then one engine function and one figure. Nothing here does model math.

Where things are found (first match wins for the defaults):
    checkpoints  $VRNN_CHECKPOINTS (folders separated by ':'), else assets/checkpoints/; plus every
                 `--checkpoints DIR` given after `--` (`streamlit run app.py -- --checkpoints runs/`).
                 Folders are searched two levels deep, so a run folder shows best, last and its snapshots.
    clips        $VRNN_EXAMPLES, else assets/examples/; plus the sidebar's uploader and microphone recorder.
Caching: models with st.cache_resource (keyed by path, size and modification time, or by the upload's
SHA-256), per-clip analyses with st.cache_data (keyed by checkpoint key and the clip's SHA-256), so a page
switch or a toggled row never reruns the model.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
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
RECORDING_NAME = "microphone recording.wav"  # how a recording is named in captions and messages
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
        st.file_uploader("Or your own audio", key="upload", on_change=_chose_source, args=("upload",),
                         help=f"WAV, FLAC, OGG, MP3 …; any sample rate and channel count; up to "
                              f"{MAX_CLIP_SECONDS / 60:.0f} minutes. It replaces the example clip until removed.")
        st.audio_input("Or record from the microphone", key="recording", sample_rate=vrnn.SAMPLE_RATE,
                       on_change=_chose_source, args=("recording",),
                       help="Recorded in the browser at 16 kHz and checked like an upload. The newer of "
                            "the recording and the upload is analysed; remove both to return to the examples.")


def _chose_source(which: str) -> None:
    """on_change of the uploader and the recorder: the one changed last is the clip (while it holds audio)."""
    st.session_state["_source"] = which


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


def _user_audio():
    """The uploaded file or the microphone recording that should be analysed (the one changed last that
    still holds audio), as (UploadedFile, name), or None when neither holds audio."""
    held = {k: st.session_state.get(k) for k in ("upload", "recording")}
    order = ["recording", "upload"] if st.session_state.get("_source") == "recording" else ["upload", "recording"]
    for k in order:
        f = held[k]
        if f is not None:
            return f, (RECORDING_NAME if k == "recording" else f.name)
    return None


def current_clip() -> Clip:
    """The uploaded or recorded clip if there is one, else the chosen example. Errors are shown and stop the
    page; warnings (silence, clipping) are shown above the page's content."""
    user = _user_audio()
    warnings = st.empty()  # held on every run, warnings or not (see `progress_bar`)
    try:
        if user is not None:
            f, name = user
            digests = st.session_state.setdefault("_upload_digests", {})  # hash each upload once
            if f.file_id not in digests:
                digests[f.file_id] = hashlib.sha256(f.getvalue()).hexdigest()
            clip = clip_from_bytes(f.getvalue(), name, digests[f.file_id])
            if said := clip_warnings(clip):  # names the upload: the user's text, shown as typed
                warnings.warning("\n\n".join(plain(w) for w in said))
            return clip
        examples = find_examples()
        if not examples:
            st.info(f"There are no example clips in `{example_dir()}`. Upload an audio file or record one in the "
                    "sidebar.")
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


SILENCE_PEAK = 10 ** (-60 / 20)  # below -60 dBFS peak the clip is called silent
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped (full scale)
CLIP_FRACTION = 0.001  # warn when more than 0.1 % of the samples are clipped


@st.cache_data(max_entries=64, show_spinner=False)
def _clip_levels(digest: str, _waveform: np.ndarray) -> tuple[float, float]:
    x = np.abs(_waveform)
    return float(x.max()), float(np.mean(x >= CLIP_LEVEL))


def clip_warnings(clip: Clip) -> list[str]:
    """Sentences about a user's clip that is analysed but may mislead: silence (peak below -60 dBFS) and
    clipping (more than 0.1 % of the samples at full scale). Same for uploads and recordings."""
    peak, clipped = _clip_levels(clip.digest, clip.waveform)
    out = []
    if peak < SILENCE_PEAK:
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        out.append(f"'{clip.name}' is silent (peak {level}): the model sees almost nothing, so the rows are flat. "
                   "Check the microphone or the file.")
    if clipped > CLIP_FRACTION:
        out.append(f"'{clip.name}' is clipped: {100 * clipped:.1f} % of its samples are at full scale. The model "
                   "never heard distortion like this in training; record or export it less loud.")
    return out


def analysis(ref: CheckpointRef, model: vrnn.VRNN, clip: Clip) -> vrnn.Analysis:
    """Figure 2's quantities for `clip` under `ref` as float32 arrays, with a progress bar while the model runs;
    computed once per (checkpoint, clip content) and shared, not copied, by every rerun and session (`memo`):
    treat it as read-only. The last 6 are kept (a 10-minute clip's analysis holds ~80 MB)."""
    slot = st.empty()  # the progress bar's place, held on every run (see `progress_bar`)

    def run() -> vrnn.Analysis:
        bar = progress_bar(f"Running {ref.label} over {clip.name}", slot)
        return vrnn.analyze(model, clip.waveform, vrnn.SAMPLE_RATE, progress=bar).astype(np.float32)

    return memo("analysis", (ref.key, clip.digest), 6, run)


@st.cache_data(max_entries=32, show_spinner="Sampling from the model …")
def _generated(ckpt_key: str, seconds: float, seed: int, n: int, _model: vrnn.VRNN) -> np.ndarray:
    return np.atleast_2d(vrnn.generate(_model, seconds=seconds, seed=seed, n_samples=n))  # [n, N]


def generated(ref: CheckpointRef, model: vrnn.VRNN, seconds: float, seed: int, n: int = 1) -> np.ndarray:
    """n samples of `seconds` from `model`, float32 [n, N] at 16 kHz (cached by checkpoint, length, seed)."""
    return _generated(ref.key, float(seconds), int(seed), int(n), model)


@st.cache_resource(max_entries=8, show_spinner=False)
def log_mel(clip_digest: str, _waveform: np.ndarray) -> np.ndarray:
    """The clip's log-mel spectrogram [64, T] dB, computed once per clip and shared (read-only)."""
    from vrnn.plots import log_mel as _log_mel

    return _log_mel(_waveform)


# -- the latent trajectory and what the model hears -------------------------------------------------------------

PROJECTION_SUFFIX = ".projection.json"  # beside a checkpoint: its fixed projection (scripts/projections.py)


@st.cache_data(max_entries=64, show_spinner=False)
def _sha256_file(path: str, key: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@st.cache_resource(max_entries=8, show_spinner="Fitting the checkpoint's projection on the example clips …")
def _checkpoint_projection(key: str, _ref: CheckpointRef, _model: vrnn.VRNN):
    from vrnn.data import sequence_chunks
    from vrnn.latent import Projection, fit_checkpoint_projection

    side = _ref.path.with_suffix(PROJECTION_SUFFIX) if _ref.path is not None else None
    if side is not None and side.is_file():
        try:
            p, meta = Projection.load(side)
            if meta.get("checkpoint_sha256") == _sha256_file(str(_ref.path), key):
                return p
        except (ValueError, KeyError, OSError):
            pass  # a damaged or stale file: fit on the examples below
    waves = [vrnn.load_audio(f)[0] for f in find_examples().values()]
    windows = sequence_chunks(waves)
    if len(windows) == 0:
        return None
    return fit_checkpoint_projection(_model, windows, f"the {len(windows)} 0.5 s windows of the example clips in "
                                     f"{example_dir()} (there is no up-to-date {PROJECTION_SUFFIX} beside the "
                                     "checkpoint)")


def checkpoint_projection(ref: CheckpointRef, model: vrnn.VRNN):
    """The checkpoint's fixed projection of the latent space (a vrnn.latent.Projection; its `source` says what it
    was fitted on): `<checkpoint>.projection.json` when its SHA-256 matches the file (fitted on the training
    windows by scripts/projections.py), else fitted here on the example clips' 0.5 s windows; None for an
    uploaded checkpoint without examples."""
    side = ref.path.with_suffix(PROJECTION_SUFFIX) if ref.path is not None else None
    stamp = side.stat().st_mtime_ns if side is not None and side.is_file() else 0
    return _checkpoint_projection(f"{ref.key}:{stamp}", ref, model)


@st.cache_resource(max_entries=16, show_spinner=False)
def _clip_projection(ckpt_key: str, clip_digest: str, _z: np.ndarray):
    from vrnn.latent import fit_pca

    return fit_pca(_z, 3, "the posterior means of this clip")


def clip_projection(ref: CheckpointRef, clip: Clip, a: vrnn.Analysis):
    """PCA of this clip's posterior means (3 axes), fitted once per (checkpoint, clip)."""
    return _clip_projection(ref.key, clip.digest, a.z_mean)


@st.cache_data(max_entries=64, show_spinner=False)
def _textgrid_phones(path: str, mtime_ns: int, duration: float) -> list[tuple[float, float, str]] | None:
    from vrnn.segments import SegmentsError, read_reference

    try:
        ref = read_reference(path, duration)
    except (SegmentsError, OSError):
        return None
    return [(s.start, s.end, s.label) for s in ref.phones] or None


def reference_segments(clip: Clip) -> list[tuple[float, float, str]] | None:
    """Reference phone segments of `clip` [(start_s, end_s, label), ...]: those of a TextGrid beside an example
    clip (same name, `.TextGrid`; read with vrnn.segments.read_reference), else None (uploads, recordings).
    The latent trajectory is coloured by these labels (vrnn.latent.frame_labels); boundary lines can go on
    Figure 2's rows with figure2(shapes={row: plots.vlines(...)}). An unreadable file counts as none."""
    grid = _bundled_grid(clip)
    if grid is None:
        return None
    return _textgrid_phones(str(grid), grid.stat().st_mtime_ns, clip.seconds)


def _bundled_grid(clip: Clip) -> Path | None:
    """The TextGrid beside an example clip (same name, `.TextGrid` or `.textgrid`), or None."""
    path = find_examples().get(clip.name)
    if path is None:
        return None
    return next((p for p in (path.with_suffix(".TextGrid"), path.with_suffix(".textgrid")) if p.is_file()), None)


def reconstruction(ref: CheckpointRef, model: vrnn.VRNN, clip: Clip) -> np.ndarray:
    """The decoder's mean along the posterior-mean path, float32 [T * 200] at 16 kHz (once per checkpoint, clip),
    with a progress bar while it runs."""
    from vrnn.latent import reconstruct

    return memo("reconstruction", (ref.key, clip.digest), 8,
                lambda: reconstruct(model, clip.waveform, progress=progress_bar("Reconstructing")))


def continuation(ref: CheckpointRef, model: vrnn.VRNN, clip: Clip, at: float, seconds: float, seed: int
                 ) -> np.ndarray:
    """The clip continued from `at` s for `seconds` s with `seed`, float32 at 16 kHz (cached by all five)."""
    from vrnn.latent import continue_clip

    return memo("continuation", (ref.key, clip.digest, float(at), float(seconds), int(seed)), 16,
                lambda: continue_clip(model, clip.waveform, at, seconds, seed, progress=progress_bar("Continuing")))


# A placeholder that asks for a rerun of the fragment it is in once the browser has painted the page around it:
# two animation frames after it is mounted (the first runs before that paint, the second after it), it sets a
# trigger value, which reruns its fragment like any widget inside one. Its JavaScript is ours, fixed text.
_AFTER_PAINT_JS = """
export default function ({ setTriggerValue, parentElement, data }) {
    const box = document.createElement('div');
    box.style.height = `${data.height}px`;
    parentElement.appendChild(box);
    let frame = requestAnimationFrame(() => { frame = requestAnimationFrame(() => setTriggerValue('painted', true)); });
    return () => { cancelAnimationFrame(frame); box.remove(); };
}
"""
_after_paint = None


def after_paint(key: str, height: int) -> None:
    """Hold `height` px of the page and rerun the calling fragment once the browser has painted what is above:
    work that is not on the screen yet (below the fold) can be drawn after what is, instead of before it."""
    global _after_paint
    if _after_paint is None:
        _after_paint = st.components.v2.component("vrnn_after_paint", js=_AFTER_PAINT_JS)
    _after_paint(key=key, data={"height": int(height)}, on_painted_change=lambda: None)


@st.cache_resource(show_spinner=False)
def _memo_store() -> tuple[dict, threading.Lock]:
    return {}, threading.Lock()


def memo(name: str, key: tuple, max_entries: int, compute):
    """compute() once per (name, key) in this process, the last `max_entries` kept per name, shared by every
    session (read-only). Unlike st.cache_* this may draw on the page while it computes (a progress bar),
    since nothing is replayed on a hit."""
    store, lock = _memo_store()
    with lock:
        table = store.setdefault(name, {})
        if key in table:
            table[key] = table.pop(key)  # most recently used last
            return table[key]
    value = compute()
    with lock:
        table[key] = value
        while len(table) > max_entries:
            table.pop(next(iter(table)))
    return value


def progress_bar(what: str, slot=None):
    """A progress(done, total) callback drawing an st.progress bar, removed when done (frames or samples), in
    `slot` (an st.empty()) or a new one here. Pass a slot made on every run, computing or not: an element made
    only on some runs moves every element after it to another place in the page, and Streamlit mounts a
    component whose place changed afresh (a ui.plotly_graph frame then loads plotly.js, 4.6 MB, again)."""
    bar = st.empty() if slot is None else slot

    def progress(done: int, total: int) -> None:
        if done >= total:
            bar.empty()
        else:
            bar.progress(done / max(total, 1), text=f"{what}: {100 * done / max(total, 1):.0f} %")

    return progress


@st.cache_data(max_entries=64, show_spinner=False)
def _metrics(path: str, mtime_ns: int) -> list[dict]:
    from vrnn.train import read_metrics

    return read_metrics(path)  # skips a line being written right now


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


@st.cache_data(max_entries=256, show_spinner=False)
def _has_latent(key: str, path: str | None) -> bool | None:
    """Whether a checkpoint file's model has latent variables, from its header alone (None if unreadable)."""
    if path is None:
        return None
    try:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            return vrnn.ModelConfig.from_dict(json.loads((f.metadata() or {})["config"])).has_latent
    except Exception:  # a broken file: load_model shows its message when it is chosen
        return None


def has_latent(ref: CheckpointRef) -> bool | None:
    """True for VRNN checkpoints, False for the RNN baselines, None when the header cannot be read."""
    return _has_latent(ref.key, str(ref.path) if ref.path else None)


def default_pair(ckpts: dict[str, CheckpointRef], first: str | None) -> list[str]:
    """Two checkpoints to compare by default: the sidebar's choice and the next one from another run, both
    with latent variables where there are two such (an RNN column has no delta_t and KL_t rows)."""
    labels = list(ckpts)
    latent = [k for k in labels if has_latent(ckpts[k])]
    pool = latent if len(latent) >= 2 else labels
    first = first if first in pool else pool[0]
    run = lambda label: label.split("/")[0]  # noqa: E731
    other = [k for k in pool if k != first and run(k) != run(first)] + [k for k in pool if k != first]
    return [first] + other[:1]


# -- small outputs ----------------------------------------------------------------------------------------------

def wav(waveform: np.ndarray) -> bytes:
    return to_wav_bytes(waveform, vrnn.SAMPLE_RATE)


def wav_part(digest: str, waveform: np.ndarray, i0: int = 0, i1: int | None = None) -> bytes:
    """WAV bytes of waveform[i0:i1], encoded once per (content digest, range) and shared, not copied (`memo`; a
    10-minute clip's WAV is 19 MB): moving the selection back and forth, or a rerun, never re-encodes."""
    i1 = len(waveform) if i1 is None else int(i1)
    return memo("wav_part", (digest, int(i0), i1), 32, lambda: wav(waveform[int(i0):i1]))


def wav_memo(key: tuple, waveform) -> bytes:
    """WAV bytes of `waveform` (an array, or a function returning one), encoded once per `key` (`memo`)."""
    return memo("wav", key, 16, lambda: wav(waveform() if callable(waveform) else waveform))


def frames_csv(a: vrnn.Analysis) -> bytes:
    """The per-frame table as CSV bytes (`Analysis.to_csv`, the same file as `vrnn analyze --csv`)."""
    return a.to_csv().encode()


def frames_csv_for(ref: CheckpointRef, clip: Clip, a: vrnn.Analysis):
    """`frames_csv` of the analysis of `clip` under `ref` as a function for st.download_button's deferred `data`:
    the table (a 10-minute clip has 48,000 rows) is built when the button is clicked, not with every new clip."""
    return lambda: frames_csv(a)


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


PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"scale": 2}}


def plotly(fig, key: str | None = None, on_select=None):
    """st.plotly_chart with the app's settings (full width, no logo, PNG export at 2x), for figures that change
    only with the page's inputs (Figure 2 and the trajectory, redrawn on every control, use `plotly_graph`). With
    `on_select` (a callback) a drag box-selects and the callback runs before the rerun; returns the selection."""
    if on_select is None:
        return st.plotly_chart(fig, key=key, theme=None, config=PLOTLY_CONFIG)
    return st.plotly_chart(fig, key=key, theme=None, config=PLOTLY_CONFIG, on_select=on_select,
                           selection_mode="box")


GRAPH_SOURCE = ROOT / "components" / "plotly_graph"  # index.html of the graph that stays mounted


@functools.cache
def _graph_source() -> tuple[bytes, Path]:
    """(components/plotly_graph/index.html, the folder it is served from: one per page and plotly version)."""
    import tempfile

    import plotly

    html = (GRAPH_SOURCE / "index.html").read_bytes()
    tag = hashlib.sha256(html + plotly.__version__.encode()).hexdigest()[:16]
    return html, Path(tempfile.gettempdir()) / f"vrnn-explorer-plotly-graph-{tag}"


def _graph_folder() -> str | None:
    """The folder Streamlit serves the graph component from: components/plotly_graph/index.html beside the plotly
    Python package's own plotly.min.js (the same plotly.js that st.plotly_chart would use for these figures), put
    together once per (index.html, plotly version) under the system's temporary folder, and again if something
    cleaned it away. Written to a fresh folder first and renamed into place, so a reader never sees it half
    written. None when it cannot be written (a read-only temporary folder): the caller falls back."""
    import shutil
    import tempfile

    import plotly

    html, folder = _graph_source()
    if (folder / "index.html").is_file():
        return str(folder)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", tmp / "plotly.min.js")
        (tmp / "index.html").write_bytes(html)
    except OSError:
        return None
    try:
        os.replace(tmp, folder)
    except OSError:  # another process put it there first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(folder) if (folder / "index.html").is_file() else None


def figure_json(fig) -> tuple[str, str]:
    """(plotly JSON of `fig`, its revision: a digest of that JSON), computed once per figure object (the pages'
    figures come from `memo`, so a rerun that draws the same figure does not serialise it again). A figure must not
    be changed after it has been drawn: it would keep its first JSON."""
    cached = getattr(fig, "_vrnn_json", None)
    if cached is None:
        text = fig.to_json()
        cached = (text, hashlib.blake2b(text.encode(), digest_size=12).hexdigest())
        try:
            fig._vrnn_json = cached
        except (AttributeError, ValueError):  # not a plotly Figure that takes private attributes
            pass
    return cached


def plotly_graph(fig, key: str, on_select=None, rows: Sequence[str] | None = None,
                 row_toggles: Mapping[str, str] | None = None):
    """Draw `fig` in one plotly.js graph that stays mounted while its `key` stays on the page: a changed figure is
    applied with Plotly.react at the width known before drawing (st.plotly_chart remounts a changed chart and
    draws it twice); an unchanged one is left as drawn, and one off the screen is drawn when it scrolls in (the
    last figure sent; its place is held at the figure's height). With `on_select` (a callback) a drag
    box-selects and the callback runs before the rerun; the state, st.session_state[key], has st.plotly_chart's shape
    ({"selection": {"box": [{"x": [t0, t1]}]}}; an empty box list after a double click) for `selected_range`.
    `rows`: for a `figure2(row_layouts=True)` figure, the optional rows to show (`vrnn.plots.show_rows`); the
    figure and its revision do not depend on them, so a row toggle sends no new figure. `row_toggles` ({widget
    key: row}): the page's st.toggle widgets that show those rows; the graph follows them itself the moment one
    is flipped (before the rerun that sends the same `rows`).
    Returns that state (None before the first selection). Source: streamlit.components.v1 (custom component,
    components/plotly_graph/index.html), plotly.js from the plotly package."""
    from streamlit.components.v1 import declare_component

    folder = _graph_folder()
    if folder is None:  # the component's folder could not be written: the same figure through st.plotly_chart
        from vrnn.plots import show_rows

        return plotly(fig if rows is None else show_rows(fig, rows), key=key, on_select=on_select)
    text, revision = figure_json(fig)
    graph = declare_component("plotly_graph", path=folder)  # registers it with this session's runtime
    extra = {} if rows is None else {"rows": list(rows), "row_toggles": dict(row_toggles or {})}
    return graph(figure=text, revision=revision, config=PLOTLY_CONFIG, select=on_select is not None, key=key,
                 default=None, on_change=on_select, **extra)


def plotly_graph_hold(key: str, height: int, token: str) -> None:
    """Hold the place of the `ui.plotly_graph` with this `key` at `height` px and rerun the calling fragment once the
    browser has painted what is above (`after_paint`), there to draw the figure: below-the-fold work (a new clip's
    latent trajectory) waits for what is on the screen. Unlike `after_paint`, the graph's frame stays mounted (so
    plotly.js is not loaded again); what it showed is cleared. `token` names what is awaited (a new one reruns)."""
    if _graph_folder() is None:  # no component folder: the graph is an st.plotly_chart, nothing to keep mounted
        after_paint(f"{key}_after_{token}", height)
        return
    from streamlit.components.v1 import declare_component

    graph = declare_component("plotly_graph", path=_graph_folder())
    graph(figure=None, revision=f"hold:{token}", hold=int(height), after_paint=token, key=key, default=None,
          on_change=lambda: None)


def selected_range(state, duration: float) -> tuple[float, float] | None:
    """The time range (s) of the last box drawn on a figure with time on x (the selection state of
    st.plotly_chart), clamped to [0, duration] and snapped outward to whole 12.5 ms frames; None when the
    selection is empty (a double click clears it)."""
    try:
        boxes = state["selection"]["box"]
    except (KeyError, TypeError):
        return None
    if not boxes:
        return None
    x = [float(v) for v in boxes[-1]["x"]]
    f = vrnn.audio.FRAME_SECONDS
    lo = min(max(0.0, np.floor(min(x) / f) * f), duration)
    hi = min(max(0.0, np.ceil(max(x) / f) * f), duration)
    if hi - lo < f:
        lo, hi = max(0.0, min(lo, duration - f)), min(duration, max(lo, 0.0) + f)
    return round(lo, 4), round(hi, 4)


# -- reference boundaries and boundary scores (issue 13) ----------------------------------------------------------

REFERENCE_TYPES = ["TextGrid", "PHN", "WRD", "csv", "tsv", "txt"]
PICKING_MODES = ("tuned", "top-N", "manual")
REF_STATE = "_reference"  # session: (clip digest, key, Reference) of the last reference used, for Compare


@dataclass(frozen=True)
class ClipReference:
    """A reference segmentation of the current clip and where it came from. key: cache key (what it depends on)."""

    ref: object  # vrnn.segments.Reference
    key: tuple
    source: str


def bundled_reference(clip: Clip) -> ClipReference | None:
    """The TextGrid beside an example clip (the same file the trajectory colours by), as a ClipReference."""
    from vrnn.segments import Reference, Segment

    segs = reference_segments(clip)
    if not segs:
        return None
    grid = _bundled_grid(clip)
    return ClipReference(Reference([Segment(*s) for s in segs], clip.seconds, source=grid.name),
                         ("bundled", str(grid.resolve()), grid.stat().st_mtime_ns, clip.digest),
                         f"{grid.name} (bundled)")


def _read_uploaded_reference(data: bytes, name: str, duration: float):
    from vrnn.segments import SegmentsError, read_reference

    try:
        return read_reference(data, duration=duration, name=name)
    except SegmentsError as e:
        return e


def uploaded_reference(upload, clip: Clip) -> ClipReference | None:
    """An uploaded TextGrid/PHN/WRD/CSV/TSV read against `clip` (once per content, name and clip), or None with a
    warning naming the problem (the user's text, shown as typed)."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    r = memo("uploaded_reference", (digest, upload.name, clip.digest), 16,
             lambda: _read_uploaded_reference(data, upload.name, clip.seconds))
    if isinstance(r, ValueError):
        st.warning(plain(f"Reference not used: {r}"))
        return None
    return ClipReference(r, ("upload", digest, upload.name, clip.digest), f"{upload.name} (uploaded)")


def _align(waveform: np.ndarray, text: str):
    from vrnn.align import AlignError, align

    try:
        return align(waveform, vrnn.SAMPLE_RATE, text)
    except AlignError as e:
        return e


def aligned_reference(clip: Clip, text: str) -> ClipReference | None:
    """A PocketSphinx forced alignment of `text` to `clip` (once per clip content and text), or None with a
    warning (words missing from the dictionary, no alignment found)."""
    text = " ".join(text.split())
    with st.spinner("Aligning the transcript with PocketSphinx …"):
        r = memo("aligned_reference", (clip.digest, text), 16, lambda: _align(clip.waveform, text))
    if isinstance(r, ValueError):
        st.warning(plain(f"Transcript not aligned: {r}"))
        return None
    return ClipReference(r, ("align", clip.digest, text), "the typed transcript, aligned with PocketSphinx")


def reference_inputs(clip: Clip) -> ClipReference | None:
    """The reference widgets (uploader, transcript box) and the reference they give for `clip`: an upload first,
    then a typed transcript, then the bundled TextGrid of an example clip; None when there is none. Remembered
    per clip in the session for the Compare page."""
    c1, c2 = st.columns(2)
    up = c1.file_uploader("Reference segmentation", type=REFERENCE_TYPES, key="reference_upload",
                          help="Phone boundaries of this clip: a Praat TextGrid (tier 'phones'), TIMIT .PHN/.WRD "
                          "(sample offsets at 16 kHz), or CSV/TSV rows of start, end, label in seconds.")
    text = c2.text_area("Or type the transcript to align", key="reference_text", height=68,
                        help="Aligned to the clip with PocketSphinx's en-us model; numbers are spelled out. "
                        "Leave empty to use the uploaded or bundled reference.")
    r = uploaded_reference(up, clip) if up is not None else None
    if r is None and text.strip():
        r = aligned_reference(clip, text)
    if r is None and up is None:
        r = bundled_reference(clip)
    st.session_state[REF_STATE] = (clip.digest, r) if r is not None else None
    return r


def known_reference(clip: Clip) -> ClipReference | None:
    """The reference last used for `clip` on the Figure 2 page this session, else the bundled one."""
    held = st.session_state.get(REF_STATE)
    if held and held[0] == clip.digest:
        return held[1]
    return bundled_reference(clip)


TOLERANCE_MS = 20  # the tolerance widget's default (ms): the field's usual window


def scoring_columns():
    """The row of scoring controls: (tolerance column, [peak picking columns]) for `tolerance_input` and
    `picking_inputs`, which may be drawn by different fragments."""
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
    return c1, [c2, c3, c4]


def tolerance_input(where) -> float:
    """The tolerance widget in `where` (a column) -> tolerance in s. It changes the scores, not the detected peaks."""
    return where.number_input("Tolerance (ms)", 5, 100, TOLERANCE_MS, 5, key="seg_tolerance",
                              help="A detected boundary within this distance of a reference boundary is a hit "
                              "(one-to-one matching; 20 ms is the field's usual window).") / 1000


def tolerance() -> float:
    """The tolerance chosen (s), also before its widget is drawn in this run."""
    return st.session_state.get("seg_tolerance", TOLERANCE_MS) / 1000


def picking_inputs(cols) -> tuple:
    """Peak picking widgets in three columns -> picking = (mode, min_distance, prominence) as plain values (a
    cache key; `picking_args` turns it into score_analysis arguments)."""
    c2, c3, c4 = cols
    mode = c2.selectbox("Peak picking", PICKING_MODES, key="seg_picking",
                        help="tuned: each signal's setting tuned on the validation split; top-N: the N most "
                        "prominent peaks, N = the reference's boundary count; manual: the distance and "
                        "prominence beside.")
    manual = mode == "manual"
    dist = c3.number_input("Min distance (ms)", 12.5, 500.0, 50.0, 12.5, key="seg_distance", disabled=not manual)
    prom = c4.number_input("Prominence (× range)", 0.0, 1.0, 0.05, 0.01, key="seg_prominence", disabled=not manual)
    return (mode, float(dist) / 1000 if manual else None, float(prom) if manual else None)


def picking_args(picking: tuple) -> dict:
    """score_analysis keyword arguments of a `picking_inputs` choice."""
    from vrnn.boundaries import PeakPicking

    mode, dist, prom = picking
    if mode == "top-N":
        return {"top_n": True}
    if mode == "manual":
        return {"picking": PeakPicking(min_distance=dist, prominence=prom)}
    return {}


@st.cache_data(max_entries=64, show_spinner=False)
def _scores(ckpt_key: str, label: str, clip_digest: str, ref_key: tuple, tolerance: float, picking: tuple,
            _a: vrnn.Analysis, _ref) -> tuple[list[dict], dict[str, np.ndarray]]:
    from vrnn.segplots import score_analysis, score_records

    rows, peaks = score_analysis(_a, _ref, tolerance, label=label, **picking_args(picking))
    return score_records(rows), peaks


def scores(ref: CheckpointRef, clip: Clip, a: vrnn.Analysis, reference: ClipReference, tolerance: float,
           picking: tuple) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The score table records (vrnn.segplots.score_records) of this model's signals and the baselines, and the
    detected boundary times (s) per model signal; cached by checkpoint, clip, reference, tolerance, picking."""
    return _scores(ref.key, ref.label, clip.digest, reference.key, float(tolerance), picking, a, reference.ref)


def detected_peaks(ref: CheckpointRef, clip: Clip, a: vrnn.Analysis, reference: ClipReference,
                   picking: tuple) -> dict[str, np.ndarray]:
    """The detected boundary times (s) per model signal (`scores`; they do not depend on the tolerance), kept
    in-process per (checkpoint, clip, reference, picking) by `memo`: every rerun of the figure reads them, and
    st.cache_data would unpickle a copy each time."""
    return memo("peaks", (ref.key, clip.digest, reference.key, picking), 32,
                lambda: scores(ref, clip, a, reference, tolerance(), picking)[1])


def score_table(ref: CheckpointRef, clip: Clip, a: vrnn.Analysis, reference: ClipReference, tol: float,
                picking: tuple):
    """The score records of `scores` as a pyarrow Table [signals x columns], built once per (checkpoint, clip,
    reference, tolerance, picking) by `memo`: st.dataframe sends a pyarrow Table as is, where a list of records
    went through pandas and a pyarrow conversion on every rerun of the figure (~65 ms here; py-spy, issue 14)."""
    import pyarrow as pa

    return memo("score_table", (ref.key, clip.digest, reference.key, float(tol), picking), 64,
                lambda: pa.Table.from_pylist(scores(ref, clip, a, reference, tol, picking)[0]))


@st.cache_data(max_entries=16, show_spinner=False)
def _compare_scores(keys: tuple, clip_digest: str, ref_key: tuple, tolerance: float, _analyses: dict, _ref
                    ) -> list[dict]:
    from vrnn.segplots import compare_records

    return compare_records(_analyses, _ref, tolerance)


def compare_scores(refs: dict[str, CheckpointRef], analyses: dict[str, vrnn.Analysis], clip: Clip,
                   reference: ClipReference, tolerance: float) -> list[dict]:
    """One score record per checkpoint with latent variables, then the baselines (vrnn.segplots.compare_records);
    cached by checkpoints, clip, reference and tolerance."""
    keys = tuple((label, refs[label].key) for label in analyses)
    return _compare_scores(keys, clip.digest, reference.key, float(tolerance), analyses, reference.ref)
