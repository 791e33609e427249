"""Corpora and training windows.

A corpus folder holds:
    corpus.json        what it was built from, licence, split sizes, normalisation statistics
    manifest.jsonl     one line per file: {"file", "split", "offset", "length"} (offset/length in
                       samples into that split's array; TIMIT files also carry "phones")
    {train,valid,test}.int16   each split's audio concatenated, raw 16-bit PCM at 16 kHz (memory-mapped)
    wav/...            each file as 16 kHz PCM WAV (for listening and for `--data` elsewhere)

The default corpus is Debian's asterisk-core-sounds-en-g722: 568 studio prompts of one professional
English speaker (Allison Smith), 16 kHz G.722, licence CC-BY-SA-3.0 (Copyright Digium, Inc.).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import SAMPLE_RATE, WINDOW_SIZE, AudioError, load_audio

SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".sph", ".nist", ".g722"}
ASTERISK_PACKAGE = "asterisk-core-sounds-en-g722"
ASTERISK_DIR = "usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_LICENCE = "CC-BY-SA-3.0, Copyright Digium, Inc.; voice: Allison Smith (Debian package asterisk-core-sounds-en-g722)"
CORPUS_VERSION = 1


class CorpusError(RuntimeError):
    """The corpus cannot be built or read; the message says why and what to do."""


def decode_g722(path: str | os.PathLike) -> np.ndarray:
    """Decode a raw G.722 file (16 kHz) with PyAV (FFmpeg). Returns int16 [N]."""
    import av

    with av.open(str(path), format="g722") as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        if stream.sample_rate != SAMPLE_RATE:
            raise CorpusError(f"{path}: G.722 decoded at {stream.sample_rate} Hz, expected {SAMPLE_RATE}.")
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


def read_any(path: Path) -> np.ndarray:
    """Any audio file -> int16 [N] mono at 16 kHz (G.722 via PyAV, the rest via `load_audio`)."""
    if path.suffix.lower() == ".g722":
        return decode_g722(path)
    x, _ = load_audio(path)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def find_asterisk_sounds(cache: Path) -> Path:
    """Locate the Allison Smith English prompts: an installed copy, or `apt-get download` + `dpkg -x`
    of the Debian package into `cache` (no installation, no root needed for dpkg -x).

    Raises CorpusError when neither works (no apt, no network to the Debian mirror).
    """
    installed = Path("/") / ASTERISK_DIR
    if installed.is_dir() and any(installed.glob("*.g722")):
        return installed
    extracted = cache / "deb" / ASTERISK_DIR
    if extracted.is_dir() and any(extracted.glob("*.g722")):
        return extracted
    (cache / "deb").mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", ASTERISK_PACKAGE], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob("*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(cache / "deb")], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError, StopIteration) as e:
        detail = getattr(e, "stderr", b"") or b""
        raise CorpusError(
            f"Could not obtain Debian package {ASTERISK_PACKAGE} ({e} {detail.decode(errors='replace').strip()}). "
            "Run 'apt-get update' first, install it with 'apt-get install asterisk-core-sounds-en-g722', "
            "or pass --from DIR with your own audio."
        ) from None
    return extracted


def list_audio(root: Path, exclude_dirs: tuple[str, ...] = ()) -> list[Path]:
    """All audio files under `root` (recursive), sorted by relative path."""
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
             and not any(part in exclude_dirs for part in p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def assign_splits(names: list[str]) -> dict[str, str]:
    """Deterministic split by file: order files by SHA-1 of their relative path, then the first 90%
    are train, the next 5% valid, the rest test (at least one valid and one test file when there
    are three or more files)."""
    order = sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
    n = len(order)
    n_valid = max(1, round(SPLIT_FRACTIONS[1] * n)) if n >= 3 else 0
    n_test = max(1, round(SPLIT_FRACTIONS[2] * n)) if n >= 3 else 0
    n_train = n - n_valid - n_test
    split = {}
    for i, name in enumerate(order):
        split[name] = "train" if i < n_train else ("valid" if i < n_train + n_valid else "test")
    return split


def _fingerprint(root: Path, files: list[Path]) -> str:
    h = hashlib.sha1()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}:{st.st_size}\n".encode())
    return h.hexdigest()


def build_corpus(out: str | os.PathLike, source: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Build (or reuse) a corpus folder from the Debian speech package or from any folder of audio.

    Args:
        out: corpus folder to write.
        source: folder tree of audio files (wav/flac/ogg/mp3/sph/g722, any rate and channels);
            None for the Allison Smith English prompts (asterisk-core-sounds-en-g722, CC-BY-SA-3.0),
            without the `silence/` folder.
        progress: show a tqdm progress bar.

    Returns the corpus folder. Idempotent: if `out` already holds a corpus built from the same files
    (same relative paths and sizes), nothing is redone. Memory stays bounded: files are decoded one
    at a time and appended to each split's int16 array.

    Raises CorpusError when the source holds no readable audio or cannot be obtained.
    """
    from tqdm import tqdm

    out = Path(out)
    if source is None:
        root = find_asterisk_sounds(out / "_cache")
        files = list_audio(root, exclude_dirs=("silence",))
        description = {"name": "asterisk-core-sounds-en-g722 (en_US_f_Allison)", "licence": ASTERISK_LICENCE}
    else:
        root = Path(source)
        if not root.is_dir():
            raise CorpusError(f"{root} is not a folder of audio files.")
        files = list_audio(root)
        description = {"name": str(root.resolve()), "licence": "as given by the source"}
    if not files:
        raise CorpusError(f"No audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) found under {root}.")
    fingerprint = _fingerprint(root, files)
    meta_path = out / "corpus.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint and meta.get("version") == CORPUS_VERSION:
            return out
    out.mkdir(parents=True, exist_ok=True)
    names = [p.relative_to(root).as_posix() for p in files]
    splits = assign_splits(names)
    tmp = {s: open(out / f"{s}.int16.partial", "wb") for s in SPLITS}
    offsets = dict.fromkeys(SPLITS, 0)
    # running sums in float64 over the train split for the global normalisation statistics
    total, total_sq = 0.0, 0.0
    rows, skipped = [], []
    try:
        for path, name in tqdm(list(zip(files, names)), desc="corpus", unit="file", disable=not progress):
            try:
                x = read_any(path)
            except (AudioError, CorpusError, OSError) as e:
                skipped.append({"file": name, "reason": str(e)})
                continue
            if x.size == 0:
                skipped.append({"file": name, "reason": "no samples"})
                continue
            split = splits[name]
            tmp[split].write(x.tobytes())
            row = {"file": name, "split": split, "offset": offsets[split], "length": int(x.size)}
            phn = path.with_suffix(".PHN") if path.with_suffix(".PHN").exists() else path.with_suffix(".phn")
            if phn.exists():
                row["phones"] = read_phones(phn)
            rows.append(row)
            offsets[split] += int(x.size)
            if split == "train":
                xf = x.astype(np.float64) / 32768.0
                total += xf.sum()
                total_sq += (xf * xf).sum()
            wav_path = out / "wav" / Path(name).with_suffix(".wav")
            wav_path.parent.mkdir(parents=True, exist_ok=True)
            import soundfile as sf

            sf.write(wav_path, x, SAMPLE_RATE, subtype="PCM_16")
    finally:
        for f in tmp.values():
            f.close()
    if not rows:
        raise CorpusError(f"None of the {len(files)} files under {root} could be read.")
    for s in SPLITS:
        os.replace(out / f"{s}.int16.partial", out / f"{s}.int16")
    n_train = offsets["train"]
    if n_train == 0:
        raise CorpusError("The train split is empty.")
    mean = total / n_train
    std = float(np.sqrt(max(total_sq / n_train - mean * mean, 1e-12)))
    with open(out / "manifest.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    meta = {
        "version": CORPUS_VERSION, "source": description, "fingerprint": fingerprint,
        "sample_rate": SAMPLE_RATE, "n_files": len(rows), "skipped": skipped,
        "splits": {s: {"files": sum(r["split"] == s for r in rows), "samples": offsets[s],
                       "seconds": offsets[s] / SAMPLE_RATE} for s in SPLITS},
        "normalization": {"mean": mean, "std": std},
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    return out


def read_phones(path: Path) -> list[list]:
    """TIMIT .PHN file -> [[start_sample, end_sample, phone], ...] (16 kHz sample indices)."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append([int(parts[0]), int(parts[1]), parts[2]])
    return rows


@dataclass
class Corpus:
    """A built corpus folder (see the module docstring); split audio is memory-mapped."""

    root: Path
    meta: dict
    manifest: list[dict]

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Corpus":
        """Raises CorpusError when `root` is not a corpus folder."""
        root = Path(root)
        if not (root / "corpus.json").is_file():
            raise CorpusError(f"{root} is not a corpus folder (no corpus.json); build one with "
                              "'python -m vrnn corpus --out DIR'.")
        meta = json.loads((root / "corpus.json").read_text())
        manifest = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line]
        return cls(root, meta, manifest)

    def audio(self, split: str) -> np.ndarray:
        """The split's concatenated audio, int16 [N] memory-mapped (read-only)."""
        path = self.root / f"{split}.int16"
        if path.stat().st_size == 0:
            return np.zeros(0, np.int16)
        return np.memmap(path, dtype=np.int16, mode="r")

    def files(self, split: str) -> list[dict]:
        return [r for r in self.manifest if r["split"] == split]

    @property
    def normalization(self) -> tuple[float, float]:
        n = self.meta["normalization"]
        return float(n["mean"]), float(n["std"])


def sequence_chunks(waveforms: list[np.ndarray], window: int = WINDOW_SIZE) -> np.ndarray:
    """Non-overlapping 0.5 s chunks of every waveform (the paper's evaluation unit).

    waveforms: float32 [N_i] each. Returns float32 [S, window]; a file's tail shorter than a window
    is dropped, so files shorter than 0.5 s contribute nothing.
    """
    chunks = [w[: (len(w) // window) * window].reshape(-1, window) for w in waveforms if len(w) >= window]
    if not chunks:
        return np.zeros((0, window), np.float32)
    return np.concatenate(chunks).astype(np.float32)


def split_chunks(corpus: Corpus, split: str, window: int = WINDOW_SIZE) -> np.ndarray:
    """float32 [S, window] waveform chunks (in [-1, 1]) of every file in `split`."""
    audio = corpus.audio(split)
    waves = [np.asarray(audio[r["offset"]: r["offset"] + r["length"]], dtype=np.float32) / 32768.0
             for r in corpus.files(split)]
    return sequence_chunks(waves, window)


class WindowBatches(torch.utils.data.Dataset):
    """Batches of random 0.5 s training windows drawn from a split's memory-mapped audio.

    Item b of epoch e is this rank's share of global batch b: float32 [B_local, window] in [-1, 1].
    Window offsets depend only on (seed, epoch), so any process can rebuild any batch: resuming
    restarts at the next batch, and rank r of W takes rows r, r+W, ... of the global batch.
    """

    def __init__(self, corpus_root: str | os.PathLike, split: str, batch_size: int, epoch: int, seed: int,
                 window: int = WINDOW_SIZE, rank: int = 0, world_size: int = 1, start_batch: int = 0):
        self.path = Path(corpus_root) / f"{split}.int16"
        n = self.path.stat().st_size // 2
        if n < window:
            raise CorpusError(f"The {split} split has {n / SAMPLE_RATE:.2f} s of audio; at least one "
                              f"{window / SAMPLE_RATE:.1f} s window is needed.")
        self.window, self.batch_size = window, batch_size
        self.rank, self.world_size = rank, world_size
        self.n_batches = max(1, (n // window) // batch_size)
        rng = np.random.default_rng([seed, epoch])
        self.offsets = rng.integers(0, n - window + 1, size=(self.n_batches, batch_size))
        self.start_batch = start_batch
        self._audio = None

    def __len__(self) -> int:
        return self.n_batches - self.start_batch

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._audio is None:  # opened lazily, once per worker process
            self._audio = np.memmap(self.path, dtype=np.int16, mode="r")
        offs = self.offsets[self.start_batch + i][self.rank::self.world_size]
        x = np.stack([self._audio[o: o + self.window] for o in offs]).astype(np.float32) / 32768.0
        return torch.from_numpy(x)  # [B_local, window]


def copy_examples(corpus: Corpus, dest: Path, names: list[str]) -> None:
    """Copy chosen test-split wav files into `dest` (for assets/examples)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(corpus.root / "wav" / Path(name).with_suffix(".wav"), dest / Path(name).with_suffix(".wav").name)
