"""Corpora and training windows.

A corpus folder holds:
    corpus.json        what it was built from (source, layout, licence), split sizes, normalisation statistics
    manifest.jsonl     one line per file: {"file", "wav", "split", "offset", "length"} ("file": the
                       source's relative path, "wav": its copy's path under wav/; offset/length in
                       samples into that split's array), plus what the layout knows: "speaker",
                       "text", and for TIMIT "phones" ([[start, end, phone], ...] in 16 kHz samples)
    {train,valid,test}.int16   each split's audio concatenated, raw 16-bit PCM at 16 kHz (memory-mapped)
    wav/...            each file as 16 kHz PCM WAV (for listening and for `--data` elsewhere): the
                       source's relative path with .wav for its extension; names two sources would
                       share are kept apart (`wav_names`)

The source is only ever read: the corpus is built in a staging folder beside the corpus folder and
renamed into place when complete, and the corpus folder may not be, contain or lie inside the
source (`build_corpus`).

`build_corpus` reads any folder tree of audio and recognises four layouts (`detect_layout`), each read
by its own module in `vrnn.corpora` (folder, timit, ljspeech, vctk; the default source: asterisk):

    folder    any tree of wav/flac/ogg/mp3/... files; split by file (SHA-1 of the relative path, 90/5/5)
    timit     TIMIT: {TRAIN,TEST}/DR1..DR8/SPEAKER/*.WAV (NIST SPHERE or RIFF), .PHN phone boundaries;
              its own TRAIN/TEST split, with 5% of the TRAIN speakers held out as valid
    ljspeech  LJSpeech: wavs/*.wav and metadata.csv (id|text|normalised text); split by file
    vctk      VCTK: wav48*/pNNN/*.wav|flac (and txt/pNNN/*.txt); split by speaker (90/5/5 of the
              speakers, so valid and test voices are never trained on); mic1 only when both mics exist

Memory stays bounded however large the corpus: each file is decoded and resampled in blocks of
`BLOCK_SECONDS` and appended to its split's array on disk.

The default corpus is Debian's asterisk-core-sounds-en-g722: 568 studio prompts of one professional
English speaker (Allison Smith), 16 kHz G.722, licence CC-BY-SA-3.0 (Copyright 2003-2010 Allison Smith; recordings funded by Digium, Inc.).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import AUDIO_EXTENSIONS, FRAME_SIZE, SAMPLE_RATE, WINDOW_SIZE, AudioError, load_audio, read_audio_blocks
from .corpora import (  # noqa: F401
    LAYOUTS,
    SPLIT_FRACTIONS,
    SPLITS,
    CorpusError,
    SourceFile,
    assign_splits,
    detect_layout,
    list_audio,
    resolve_splits,
    scan_source,
)
from .corpora.asterisk import ASTERISK_LICENCE, EXCLUDE_DIRS, decode_g722, find_asterisk_sounds
from .corpora.timit import sibling
from .files import FolderBusyError, FolderLock, overlap

BLOCK_SECONDS = 30.0  # s of source audio decoded at a time when building a corpus
CORPUS_VERSION = 1


def _to_int16(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 with the scale libsndfile reads 16-bit PCM with (1/32768), so 16-bit
    sources (TIMIT, LJSpeech, most wav) are stored sample for sample."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def read_any(path: Path) -> np.ndarray:
    """Any audio file -> int16 [N] mono at 16 kHz (G.722 via PyAV, the rest via `load_audio`)."""
    if path.suffix.lower() == ".g722":
        return decode_g722(path)
    x, _ = load_audio(path)
    return _to_int16(x)


def read_blocks(path: Path, block_seconds: float = BLOCK_SECONDS) -> tuple[int, Iterator[np.ndarray]]:
    """Decode one audio file in blocks, for files of any length in bounded memory.

    Returns (source sample rate in Hz, iterator of int16 [n] mono blocks at 16 kHz): the float32 blocks
    of `vrnn.audio.read_audio_blocks` (channels averaged, resampled with a streaming soxr resampler, HQ)
    as int16, values as `read_any`. Reading uses soundfile (libsndfile: wav, NIST SPHERE, flac, ogg, mp3, ...);
    G.722 is decoded whole with PyAV.

    Raises AudioError (when opened, or while iterating) for a file that is not readable audio or
    holds NaN/infinite samples. A WAV cut short (its header declares more samples than the file holds) is
    read as far as it goes, with an `AudioWarning` naming both numbers.
    """
    if path.suffix.lower() == ".g722":
        try:
            x = decode_g722(path)
        except Exception as e:  # av.error.*: not G.722
            raise AudioError(f"'{path.name}' could not be decoded as G.722 ({e}).") from None
        return SAMPLE_RATE, iter([x])
    rate, _, blocks = read_audio_blocks(path, block_seconds)
    return rate, (_to_int16(x) for x in blocks)


def _fingerprint(root: Path, files: list[Path]) -> str:
    h = hashlib.sha1()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}:{st.st_size}\n".encode())
    return h.hexdigest()


# What a corpus build writes into its folder (besides *.partial files while it runs).
CORPUS_ENTRIES = frozenset({"corpus.json", "manifest.jsonl", "wav", "_cache", *(f"{s}.int16" for s in SPLITS),
                            # transcripts and alignments, written by `python -m vrnn corpus` (vrnn/transcripts.py)
                            *(f"{s}.{k}.jsonl" for s in SPLITS for k in ("transcripts", "alignments"))})
_STAGING_MARK = ".vrnn-corpus-staging"  # inside a staging folder, so only ours are ever removed


def _check_source_and_out(root: Path, out: Path) -> None:
    """Refuse an --out that is, contains or sits inside the --from folder (symlinks resolved)."""
    how = overlap(root, out)
    if how is None:
        return
    where = {"same": "is the --from folder itself",
             "inside": "is inside the --from folder",
             "contains": "contains the --from folder"}[how]
    raise CorpusError(f"--out {out} {where} ({root}); the corpus's wav/ copies would be written among "
                      f"your recordings (and read back as sources next time). Choose an --out outside "
                      f"{root}, e.g. {root.resolve().parent / (root.resolve().name + '-corpus')}.")


def _read_corpus_meta(out: Path) -> dict | None:
    """corpus.json of a corpus folder of ours, or None when there is none or it is not ours."""
    try:
        meta = json.loads((out / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and "fingerprint" in meta and "version" in meta else None


def _existing_corpus(out: Path) -> dict | None:
    """What `out` holds: None when it does not exist or is an empty folder, corpus.json's contents
    when it is a corpus of ours; raises CorpusError for anything else (a file, a folder of other
    files), since building there could overwrite files that are not ours."""
    if not out.exists() and not out.is_symlink():
        return None
    if not out.is_dir():
        raise CorpusError(f"--out {out} exists and is not a folder; choose a new folder for the corpus.")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return None
    meta = _read_corpus_meta(out)
    if meta is None:
        raise CorpusError(f"--out {out} is not empty and is not a corpus folder (no corpus.json of ours; it holds "
                          f"{len(entries)} entries, e.g. {', '.join(entries[:3])}). Building there could overwrite "
                          "those files; choose a new or empty folder.")
    return meta


def _foreign_entries(out: Path) -> list[str]:
    """Entries of corpus folder `out` that a build did not write: files added by hand, which a forced
    rebuild would lose. wav/ files count as ours when the manifest lists them."""
    foreign = [p.name for p in out.iterdir() if p.name not in CORPUS_ENTRIES and not p.name.endswith(".partial")]
    wav = out / "wav"
    if wav.is_dir():
        try:
            rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line]
            listed = {r.get("wav") or Path(r["file"]).with_suffix(".wav").as_posix() for r in rows}
        except (OSError, ValueError, KeyError, TypeError):
            listed = set()
        for p in wav.rglob("*"):
            if p.is_file() and p.relative_to(wav).as_posix() not in listed:
                foreign.append(p.relative_to(out).as_posix())
    return sorted(foreign)


def wav_names(names: list[str]) -> dict[str, str]:
    """Each source file's copy under wav/, as a path relative to wav/: its relative path with the
    extension replaced by .wav, e.g. "a/b.flac" -> "a/b.wav".

    When two sources would get the same copy ("a.wav" and "a.flac"; also "a.wav" and "A.wav", which
    are one file on case-insensitive disks) nothing is overwritten: a source already named .wav keeps
    its name, the others keep their own extension before .wav ("a.flac" -> "a.flac.wav"), and a
    number is added if that is taken too ("a.flac-2.wav"). The manifest's "wav" field records
    every copy's name.
    """
    taken: set[str] = set()
    result: dict[str, str] = {}
    # first pass: sources already named *.wav keep their path
    for n in sorted(names):
        if Path(n).suffix == ".wav" and n.casefold() not in taken:
            result[n] = n
            taken.add(n.casefold())
    for n in sorted(names):
        if n in result:
            continue
        plain = Path(n).with_suffix(".wav").as_posix()
        candidates = [plain, n + ".wav"] + [f"{n}-{k}.wav" for k in range(2, len(names) + 3)]
        result[n] = next(c for c in candidates if c.casefold() not in taken)
        taken.add(result[n].casefold())
    return result


def _stage_folder(out: Path) -> Path:
    """A new, empty staging folder beside `out` (same file system, so the finished corpus is renamed
    into place); a stale one, left by a killed build (we hold the lock), is removed first."""
    staging = out.parent / f".{out.name}.building"
    if staging.exists():
        if not (staging / _STAGING_MARK).is_file():
            raise CorpusError(f"{staging} exists and was not made by a corpus build; move it away first.")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    (staging / _STAGING_MARK).write_text("a corpus build in progress; removed when it finishes\n")
    return staging


def _swap_into_place(staging: Path, out: Path, cache: Path | None) -> None:
    """Move the finished corpus from `staging` to `out`: a rename when `out` is missing or empty; a
    rename of the old corpus aside, a rename of the new one in and removal of the old one when
    `out` is a corpus being rebuilt (--force). The asterisk download cache moves to the new corpus."""
    (staging / _STAGING_MARK).unlink()
    if cache is not None and cache.is_dir() and cache.parent == out and not (staging / "_cache").exists():
        os.replace(cache, staging / "_cache")
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.replace(staging, out)  # replaces an empty folder too
    except OSError:  # e.g. `out` is an empty mount point: move the contents in one by one
        for p in staging.iterdir():
            shutil.move(str(p), str(out / p.name))
        staging.rmdir()


def build_corpus(out: str | os.PathLike, source: str | os.PathLike | None = None, progress: bool = True,
                 layout: str = "auto", force: bool = False) -> Path:
    """Build (or reuse) a corpus folder from the Debian speech package or from any folder of audio.

    Args:
        out: corpus folder to write: a new or empty folder, or a corpus folder of ours.
        source: folder tree of audio files (wav/flac/ogg/mp3/NIST SPHERE/g722, any rate and channels),
            in any of the layouts of the module docstring; None for the Allison Smith English prompts
            (asterisk-core-sounds-en-g722, CC-BY-SA-3.0), without the `silence/` folder.
        progress: show a tqdm progress bar (files, and minutes of audio so far).
        layout: one of LAYOUTS; "auto" recognises TIMIT, LJSpeech and VCTK trees (`detect_layout`).
        force: rebuild `out` even when it holds a corpus of other files (or of the same ones).

    Returns the corpus folder. Idempotent: if `out` already holds a corpus built from the same files
    (same relative paths and sizes) with the same layout, nothing is redone. A corpus of other files
    is refused unless `force`, since runs trained on it record its fingerprint and a large one takes
    hours to rebuild; with `force` the new corpus is built beside it and replaces it only once
    complete, and only when the folder holds nothing but what a build writes (files added by hand
    are listed and refused).

    File safety: the source is only read. `out` must not be, contain or lie inside `source`
    (symlinks resolved), and must be missing, empty or a corpus of ours. The corpus is written into
    a staging folder beside `out` (`.NAME.building`) and renamed into place when complete, under a
    lock (`.NAME.lock`) so two builds cannot share a folder; a killed build leaves `out` as it was.
    Sources whose wav/ copies would share a name are all kept (`wav_names`); corpus.json lists them
    under "renamed".

    Memory stays bounded (tens of MB over the interpreter, whatever the corpus and file sizes): files
    are decoded one at a time, in blocks (`read_blocks`), and appended to each split's int16 array on
    disk. Unreadable files are skipped and listed in corpus.json ("skipped").

    Raises CorpusError when the source holds no readable audio or cannot be obtained, the disk fills
    up (`out` is then left as it was), `out` overlaps `source` or is not ours, or another build
    holds `out` (the message names its pid).
    """
    from tqdm import tqdm

    given = Path(out)
    if source is not None:
        root = Path(source)
        if not root.is_dir():
            raise CorpusError(f"{root} is not a folder of audio files.")
        _check_source_and_out(root, given)
    out = given.resolve() if given.is_symlink() else given  # a link to a folder: build in that folder
    existing = _existing_corpus(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = None
    try:
        with FolderLock(out.parent / f".{out.name}.lock", f"A corpus build into {out}"):
            existing = _existing_corpus(out)  # again, now that no other build can be writing it
            cache = None
            if source is None:
                cache = out / "_cache"
                if existing is None or not cache.is_dir():
                    staging = _stage_folder(out)
                    cache = staging / "_cache"
                root = find_asterisk_sounds(cache)
                layout, items = scan_source(root, "folder", exclude_dirs=EXCLUDE_DIRS)
                description = {"name": "asterisk-core-sounds-en-g722 (en_US_f_Allison)", "licence": ASTERISK_LICENCE}
            else:
                layout, items = scan_source(root, layout)
                description = {"name": str(root.resolve()), "licence": "as given by the source"}
            if not items:
                raise CorpusError(f"No audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) found under {root}"
                                  + (f" in the {layout} layout." if layout != "folder" else "."))
            resolve_splits(items)
            fingerprint = _fingerprint(root, [f.path for f in items])
            if existing is not None:
                same = (existing.get("fingerprint") == fingerprint and existing.get("version") == CORPUS_VERSION
                        and existing.get("layout", "folder") == layout)
                if same and not force:
                    return given
                if not force:
                    was = existing.get("source", {}).get("name", "?") if isinstance(existing.get("source"), dict) else "?"
                    raise CorpusError(
                        f"--out {out} already holds a corpus of other files ({existing.get('n_files', '?')} files "
                        f"from {was}, layout {existing.get('layout', '?')}); this build is {len(items)} files from "
                        f"{description['name']}, layout {layout}. Choose a new --out, or add --force to replace it "
                        "(the new corpus is built beside it and replaces it only when complete; runs trained on "
                        "the old one will then refuse to --resume on it).")
                foreign = _foreign_entries(out)
                if foreign:
                    raise CorpusError(f"--force: {out} holds files a corpus build did not write "
                                      f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); replacing "
                                      "the corpus would delete them. Move them elsewhere first.")
            if staging is None:
                staging = _stage_folder(out)
            _build_into(staging, root, items, layout, fingerprint, description, progress, tqdm)
            _swap_into_place(staging, out, cache)
            staging = None
    except FolderBusyError as e:
        raise CorpusError(str(e)) from None
    finally:
        if staging is not None and (staging / _STAGING_MARK).is_file():
            shutil.rmtree(staging, ignore_errors=True)
    return given


def _build_into(out: Path, root: Path, items: list[SourceFile], layout: str, fingerprint: str, description: dict,
                progress: bool, tqdm) -> None:
    """Write a whole corpus into the (staging) folder `out`."""
    wavs = wav_names([f.name for f in items])
    try:
        rows, skipped, offsets, total, total_sq = _write_splits(out, items, wavs, progress, tqdm)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise CorpusError(f"The disk is full: could not finish the corpus in {out}. Free some space "
                              "and run the same command again.") from None
        raise
    if not rows:
        raise CorpusError(f"None of the {len(items)} files under {root} could be read, e.g. {skipped[0]}.")
    n_train = offsets["train"]
    if n_train == 0:
        raise CorpusError("The train split is empty.")
    mean = total / n_train
    std = float(np.sqrt(max(total_sq / n_train - mean * mean, 1e-12)))
    with open(out / "manifest.jsonl.partial", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    for s in SPLITS:
        os.replace(out / f"{s}.int16.partial", out / f"{s}.int16")
    os.replace(out / "manifest.jsonl.partial", out / "manifest.jsonl")
    renamed = [{"file": r["file"], "wav": r["wav"]} for r in rows
               if r["wav"] != Path(r["file"]).with_suffix(".wav").as_posix()]
    meta = {
        "version": CORPUS_VERSION, "source": description, "layout": layout, "fingerprint": fingerprint,
        "sample_rate": SAMPLE_RATE, "n_files": len(rows), "skipped": skipped, "renamed": renamed,
        "splits": {s: {"files": sum(r["split"] == s for r in rows), "samples": offsets[s],
                       "seconds": offsets[s] / SAMPLE_RATE} for s in SPLITS},
        "normalization": {"mean": mean, "std": std},
    }
    (out / "corpus.json.partial").write_text(json.dumps(meta, indent=2))
    os.replace(out / "corpus.json.partial", out / "corpus.json")  # written last: its presence marks a complete corpus


def _write_splits(out: Path, items: list[SourceFile], wavs: dict[str, str], progress: bool, tqdm):
    """Decode every file block by block into {split}.int16.partial and wav/; returns the manifest rows,
    the skipped files, the split sizes and float64 sums of x and x^2 over the train split."""
    import soundfile as sf

    tmp = {s: open(out / f"{s}.int16.partial", "wb") for s in SPLITS}
    offsets = dict.fromkeys(SPLITS, 0)
    total, total_sq = 0.0, 0.0  # running sums over the train split, for the global normalisation
    rows, skipped = [], []
    bar = tqdm(items, desc="corpus", unit="file", disable=not progress)
    try:
        for item in bar:
            split, dest = item.split, tmp[item.split]
            wav_path = out / "wav" / wavs[item.name]
            n, s1, s2, wav = 0, 0.0, 0.0, None
            try:
                rate, blocks = read_blocks(item.path)
                for x in blocks:  # int16 [n] at 16 kHz
                    dest.write(x.tobytes())
                    if wav is None:
                        wav_path.parent.mkdir(parents=True, exist_ok=True)
                        wav = sf.SoundFile(wav_path, "w", SAMPLE_RATE, 1, "PCM_16")
                    wav.write(x)
                    n += x.size
                    if split == "train":
                        xf = x.astype(np.float64) / 32768.0
                        s1 += float(xf.sum())
                        s2 += float(np.dot(xf, xf))
                if n < FRAME_SIZE:
                    raise AudioError(f"'{item.path.name}' has {n} samples at 16 kHz; at least one "
                                     f"{FRAME_SIZE}-sample frame is needed." if n else "no samples")
            except (AudioError, CorpusError) as e:
                dest.seek(offsets[split])  # roll this file back out of its split's array
                dest.truncate()
                if wav is not None:
                    wav.close()
                    wav = None
                    wav_path.unlink(missing_ok=True)
                skipped.append({"file": item.name, "reason": str(e)})
                continue
            finally:
                if wav is not None:
                    wav.close()
            row = {"file": item.name, "wav": wavs[item.name], "split": split, "offset": offsets[split],
                   "length": n, **item.info}
            phn = sibling(item.path, ".PHN")
            if phn is not None:
                scale = SAMPLE_RATE / rate
                row["phones"] = [[round(a * scale), round(b * scale), p] for a, b, p in read_phones(phn)]
            rows.append(row)
            offsets[split] += n
            total += s1
            total_sq += s2
            if progress:
                bar.set_postfix(audio=f"{sum(offsets.values()) / SAMPLE_RATE / 60:.1f} min", refresh=False)
    finally:
        bar.close()
        for f in tmp.values():
            f.close()
    return rows, skipped, offsets, total, total_sq


def read_phones(path: Path) -> list[list]:
    """TIMIT .PHN file -> [[start_sample, end_sample, phone], ...] (sample indices of the source file)."""
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
    def open(cls, root: str | os.PathLike) -> Corpus:
        """Raises CorpusError when `root` is not a (complete) corpus folder."""
        root = Path(root)
        if not (root / "corpus.json").is_file():
            raise CorpusError(f"{root} is not a corpus folder (no corpus.json; a build that did not finish "
                              "leaves none); build one with 'python -m vrnn corpus --out DIR'.")
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
    """float32 [S, window] waveform chunks (in [-1, 1]) of every file in `split` (all in memory;
    see `chunk_starts` + `read_windows` for the streamed equivalent)."""
    audio = corpus.audio(split)
    waves = [np.asarray(audio[r["offset"]: r["offset"] + r["length"]], dtype=np.float32) / 32768.0
             for r in corpus.files(split)]
    return sequence_chunks(waves, window)


def chunk_starts(corpus: Corpus, split: str, window: int = WINDOW_SIZE) -> np.ndarray:
    """int64 [S]: where each chunk of `split_chunks(corpus, split, window)` starts in the split's
    array (samples), in the same order, without reading any audio."""
    parts = [r["offset"] + window * np.arange(r["length"] // window, dtype=np.int64) for r in corpus.files(split)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def read_windows(audio: np.ndarray, starts: np.ndarray, window: int = WINDOW_SIZE) -> np.ndarray:
    """float32 [len(starts), window] in [-1, 1]: the windows of a split's int16 array at `starts`."""
    if len(starts) == 0:
        return np.zeros((0, window), np.float32)
    return np.stack([audio[o: o + window] for o in starts]).astype(np.float32) / 32768.0


def ignore_signals_in_worker(_worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: workers ignore Ctrl-C and SIGTERM, so that the training process
    alone decides when to stop (it saves a checkpoint first) and shuts its workers down itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class WindowBatches(torch.utils.data.Dataset):
    """Batches of random 0.5 s training windows drawn from a split's memory-mapped audio.

    Item b of epoch e is this rank's share of global batch b: float32 [B_local, window] in [-1, 1].
    Window offsets depend only on (seed, epoch), so any process can rebuild any batch: resuming
    restarts at the next batch, and rank r of W takes rows r, r+W, ... of the global batch.
    An epoch has (split samples // window) // batch_size batches (at least one). Safe to use from
    DataLoader worker processes: the memory map is opened lazily in each process.

    consecutive: with k > 1, batches come in groups of k (batches g k .. g k + k - 1): row i of batch
        g k + j is the window that follows row i of batch g k + j - 1 in the audio (a random start per row
        and group, then k windows one after another), so a trainer can carry each row's LSTM state over
        the group (`TrainConfig.carry_state`). 1: every window independent.
    """

    def __init__(self, corpus_root: str | os.PathLike, split: str, batch_size: int, epoch: int, seed: int,
                 window: int = WINDOW_SIZE, rank: int = 0, world_size: int = 1, start_batch: int = 0,
                 consecutive: int = 1):
        self.path = Path(corpus_root) / f"{split}.int16"
        n = self.path.stat().st_size // 2
        if n < window:
            raise CorpusError(f"The {split} split has {n / SAMPLE_RATE:.2f} s of audio; at least one "
                              f"{window / SAMPLE_RATE:.1f} s window is needed.")
        self.window, self.batch_size = window, batch_size
        self.rank, self.world_size = rank, world_size
        self.n_batches = max(1, (n // window) // batch_size)
        rng = np.random.default_rng([seed, epoch])
        k = max(1, consecutive)
        if k == 1:
            self.offsets = rng.integers(0, n - window + 1, size=(self.n_batches, batch_size))
        else:  # [groups, B] starts, then k windows one after another: [n_batches, B]
            if n < k * window:
                raise CorpusError(f"The {split} split has {n / SAMPLE_RATE:.2f} s of audio; {k} consecutive "
                                  f"{window / SAMPLE_RATE:.1f} s windows are needed.")
            starts = rng.integers(0, n - k * window + 1, size=(-(-self.n_batches // k), batch_size))
            b = np.arange(self.n_batches)
            self.offsets = starts[b // k] + ((b % k) * window)[:, None]
        self.start_batch = min(start_batch, self.n_batches)
        self._audio = None

    def __len__(self) -> int:
        return self.n_batches - self.start_batch

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._audio is None:  # opened lazily, once per worker process
            self._audio = np.memmap(self.path, dtype=np.int16, mode="r")
        offs = self.offsets[self.start_batch + i][self.rank::self.world_size]
        return torch.from_numpy(read_windows(self._audio, offs, self.window))  # [B_local, window]
