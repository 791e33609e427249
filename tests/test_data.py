"""Corpus builders and readers (plain folder, TIMIT, LJSpeech, VCTK) on small trees built here, bounded
streaming decode, and training windows in DataLoader worker processes."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from vrnn.data import (
    Corpus,
    CorpusError,
    WindowBatches,
    build_corpus,
    chunk_starts,
    read_any,
    read_blocks,
    read_windows,
    split_chunks,
)

SR = 16_000


def manifest(root) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def check_layout_invariants(root) -> list[dict]:
    """Offsets tile each split's array exactly; the arrays hold what the manifest says."""
    rows = manifest(root)
    meta = json.loads((root / "corpus.json").read_text())
    for split in ("train", "valid", "test"):
        mine = [r for r in rows if r["split"] == split]
        offset = 0
        for r in mine:
            assert r["offset"] == offset
            offset += r["length"]
        assert (root / f"{split}.int16").stat().st_size == 2 * offset == 2 * meta["splits"][split]["samples"]
    return rows


def int16_signal(seconds: float, seed: int) -> np.ndarray:
    return np.round(speechlike(seconds, seed=seed) * 32767).astype(np.int16)


# -- plain folder --------------------------------------------------------------------------------

def test_plain_folder_any_format_rate_and_channels(tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    sf.write(src / "one.wav", np.stack([speechlike(1.5, 44_100), speechlike(1.5, 44_100, seed=1)], 1), 44_100)
    sf.write(src / "a" / "two.flac", speechlike(1.0, 22_050, seed=2), 22_050)
    sf.write(src / "a" / "b" / "three.ogg", speechlike(2.0, 48_000, seed=3), 48_000, format="OGG", subtype="VORBIS")
    for i in range(5):
        sf.write(src / f"plain{i}.wav", speechlike(1.0, seed=10 + i), SR, subtype="PCM_16")
    (src / "notes.txt").write_text("not audio")
    root = build_corpus(tmp_path / "c", src, progress=False)
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["layout"] == "folder" and meta["n_files"] == 8 and meta["skipped"] == []
    rows = check_layout_invariants(root)
    by_name = {r["file"]: r for r in rows}
    assert abs(by_name["one.wav"]["length"] - 1.5 * SR) <= 2  # resampled 44.1 kHz -> 16 kHz
    assert abs(by_name["a/two.flac"]["length"] - 1.0 * SR) <= 2
    assert abs(by_name["a/b/three.ogg"]["length"] - 2.0 * SR) <= 2
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    assert (root / "wav" / "a" / "b" / "three.wav").is_file()
    # the streamed build stores what the one-shot loader reads
    c = Corpus.open(root)
    r = by_name["one.wav"]
    stored = c.audio(r["split"])[r["offset"]: r["offset"] + r["length"]]
    np.testing.assert_array_equal(stored, read_any(src / "one.wav"))
    # idempotent: a second build reuses the corpus
    stamp = (root / "train.int16").stat().st_mtime_ns
    build_corpus(tmp_path / "c", src, progress=False)
    assert (root / "train.int16").stat().st_mtime_ns == stamp


def test_read_blocks_streams_long_files_like_one_shot_load(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([speechlike(5.0, 44_100), speechlike(5.0, 44_100, seed=4)], 1), 44_100)
    rate, blocks = read_blocks(path, block_seconds=0.7)
    parts = list(blocks)
    assert rate == 44_100 and len(parts) >= 7
    np.testing.assert_array_equal(np.concatenate(parts), read_any(path))


def test_unreadable_and_too_short_files_are_skipped_and_rolled_back(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        sf.write(src / f"ok{i}.wav", speechlike(1.0, seed=i), SR, subtype="PCM_16")
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    sf.write(src / "tiny.wav", np.zeros(50, np.float32), SR)  # shorter than one 200-sample frame
    root = build_corpus(tmp_path / "c", src, progress=False)
    meta = json.loads((root / "corpus.json").read_text())
    assert sorted(s["file"] for s in meta["skipped"]) == ["broken.wav", "tiny.wav"]
    assert "broken.wav" in meta["skipped"][0]["reason"] or "broken.wav" in meta["skipped"][1]["reason"]
    rows = check_layout_invariants(root)
    assert len(rows) == 6 and not (root / "wav" / "tiny.wav").exists()


def test_full_disk_during_build_raises_and_leaves_no_corpus(tmp_path, monkeypatch):
    import vrnn.data as data

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        sf.write(src / f"f{i}.wav", speechlike(1.0, seed=i), SR, subtype="PCM_16")
    real = data.read_blocks
    calls = []

    def failing(path, *a, **k):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(data, "read_blocks", failing)
    with pytest.raises(CorpusError, match="disk is full"):
        build_corpus(tmp_path / "c", src, progress=False)
    assert not (tmp_path / "c" / "corpus.json").exists()
    with pytest.raises(CorpusError, match="not a corpus folder"):
        Corpus.open(tmp_path / "c")


# -- TIMIT ---------------------------------------------------------------------------------------

def write_sphere(path, samples: np.ndarray, rate: int = SR) -> None:
    """A NIST SPHERE file as TIMIT ships it: a 1024-byte ASCII header, then little-endian int16."""
    fields = [
        "NIST_1A", "   1024", "database_id -s5 TIMIT", "database_version -s3 1.0",
        f"utterance_id -s8 {path.stem.lower()}", "channel_count -i 1", f"sample_count -i {len(samples)}",
        f"sample_rate -i {rate}", "sample_min -i -32768", "sample_max -i 32767", "sample_n_bytes -i 2",
        "sample_byte_format -s2 01", "sample_sig_bits -i 16", "sample_coding -s3 pcm", "end_head",
    ]
    header = ("\n".join(fields) + "\n").encode("ascii")
    path.write_bytes(header.ljust(1024, b" ") + samples.astype("<i2").tobytes())


def timit_phones(n: int) -> list[list]:
    cuts = [0, 2000, n // 2, n - 1500, n]
    return [[a, b, p] for a, b, p in zip(cuts[:-1], cuts[1:], ["h#", "sh", "iy", "h#"], strict=True)]


def test_timit_layout_sphere_phones_and_own_split(tmp_path):
    src = tmp_path / "TIMIT"
    speakers = {"TRAIN/DR1/FCJF0": 0, "TRAIN/DR1/MDAB0": 1, "TRAIN/DR2/MKLW0": 2, "TRAIN/DR3/FAEM0": 3,
                "TEST/DR1/FAKS0": 4, "TEST/DR4/MDAB1": 5}
    written = {}
    for spk, k in speakers.items():
        d = src / spk
        d.mkdir(parents=True)
        for j, utt in enumerate(["SA1", "SX127"]):
            x = int16_signal(1.0 + 0.25 * j, seed=10 * k + j)
            write_sphere(d / f"{utt}.WAV", x)
            phones = timit_phones(len(x))
            (d / f"{utt}.PHN").write_text("".join(f"{a} {b} {p}\n" for a, b, p in phones))
            (d / f"{utt}.TXT").write_text(f"0 {len(x)} She had your dark suit.\n")
            written[f"{spk}/{utt}.WAV"] = (x, phones)
    # a RIFF copy beside the SPHERE original (as some TIMIT distributions have) is not counted twice
    sf.write(src / "TRAIN/DR1/FCJF0/SA1.WAV.wav", written["TRAIN/DR1/FCJF0/SA1.WAV"][0], SR, subtype="PCM_16")
    info = sf.info(str(src / "TRAIN/DR1/FCJF0/SA1.WAV"))  # libsndfile reads the hand-made header
    assert (info.format, info.samplerate, info.channels, info.frames) == ("NIST", SR, 1, SR)

    root = build_corpus(tmp_path / "c", src, progress=False)
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["layout"] == "timit" and meta["n_files"] == 12 and meta["skipped"] == []
    rows = check_layout_invariants(root)
    c = Corpus.open(root)
    split_of_speaker = {}
    for r in rows:
        x, phones = written[r["file"]]
        assert r["phones"] == phones and r["text"] == "She had your dark suit."
        np.testing.assert_array_equal(c.audio(r["split"])[r["offset"]: r["offset"] + r["length"]], x)
        split_of_speaker.setdefault(r["speaker"], set()).add(r["split"])
        assert (r["split"] == "test") == r["file"].startswith("TEST/")
    assert all(len(s) == 1 for s in split_of_speaker.values())  # whole speakers per split
    assert sum(s == {"valid"} for s in split_of_speaker.values()) == 1  # 5% of 4 TRAIN speakers, at least one


# -- LJSpeech ------------------------------------------------------------------------------------

def test_ljspeech_layout_texts_and_file_split(tmp_path):
    src = tmp_path / "download"
    lj = src / "LJSpeech-1.1"
    (lj / "wavs").mkdir(parents=True)
    lines = []
    for i in range(1, 9):
        uid = f"LJ001-{i:04d}"
        sf.write(lj / "wavs" / f"{uid}.wav", speechlike(1.0, 22_050, seed=i), 22_050, subtype="PCM_16")
        lines.append(f"{uid}|Printing, in the only sense {i}|Printing, in the only sense {i}")
    lines[2] = "LJ001-0003|Dr. Smith, 1st|Doctor Smith, first"
    (lj / "metadata.csv").write_text("\n".join(lines) + "\n")
    (lj / "README").write_text("LJ Speech")
    root = build_corpus(tmp_path / "c", src, progress=False)
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["layout"] == "ljspeech" and meta["n_files"] == 8
    rows = check_layout_invariants(root)
    by_name = {r["file"]: r for r in rows}
    r3 = by_name["LJSpeech-1.1/wavs/LJ001-0003.wav"]
    assert r3["text"] == "Doctor Smith, first" and r3["speaker"] == "LJ"
    assert abs(r3["length"] - SR) <= 2
    assert {r["split"] for r in rows} == {"train", "valid", "test"}


# -- VCTK ----------------------------------------------------------------------------------------

def test_vctk_layout_mic1_texts_and_speaker_split(tmp_path):
    src = tmp_path / "VCTK-Corpus-0.92"
    for k in range(8):
        spk = f"p{225 + k}"
        (src / "wav48_silence_trimmed" / spk).mkdir(parents=True)
        (src / "txt" / spk).mkdir(parents=True)
        for j in (1, 2):
            for mic in (1, 2):
                sf.write(src / "wav48_silence_trimmed" / spk / f"{spk}_{j:03d}_mic{mic}.flac",
                         speechlike(0.6, 48_000, seed=100 * k + 10 * j + mic), 48_000)
            (src / "txt" / spk / f"{spk}_{j:03d}.txt").write_text(f"Please call Stella {j}.\n")
    root = build_corpus(tmp_path / "c", src, progress=False)
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["layout"] == "vctk" and meta["n_files"] == 16  # mic2 dropped where mic1 exists
    rows = check_layout_invariants(root)
    assert all(r["file"].endswith("_mic1.flac") for r in rows)
    assert {r["text"] for r in rows} == {"Please call Stella 1.", "Please call Stella 2."}
    splits = {}
    for r in rows:
        splits.setdefault(r["speaker"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())  # valid/test voices are never trained on
    assert {next(iter(s)) for s in splits.values()} == {"train", "valid", "test"}


# -- windows, chunks, workers --------------------------------------------------------------------

def test_chunk_starts_index_the_same_chunks_as_split_chunks(tiny_corpus):
    c = Corpus.open(tiny_corpus)
    for split in ("train", "valid"):
        starts = chunk_starts(c, split)
        np.testing.assert_array_equal(read_windows(c.audio(split), starts), split_chunks(c, split))


def test_window_batches_shard_resume_and_load_in_worker_processes(tiny_corpus):
    full = WindowBatches(tiny_corpus, "train", 8, epoch=3, seed=1)
    assert len(full) >= 4
    inline = [b for b in torch.utils.data.DataLoader(full, batch_size=None, num_workers=0)]
    workers = [b for b in torch.utils.data.DataLoader(full, batch_size=None, num_workers=2)]
    assert len(inline) == len(workers) == len(full)
    for a, b in zip(inline, workers, strict=True):
        assert a.shape == (8, 8000) and a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # rank r of W takes rows r, r+W, ... of the same global batch
    r0 = WindowBatches(tiny_corpus, "train", 8, epoch=3, seed=1, rank=0, world_size=2)[1]
    r1 = WindowBatches(tiny_corpus, "train", 8, epoch=3, seed=1, rank=1, world_size=2)[1]
    torch.testing.assert_close(torch.stack([r0, r1], 1).reshape(8, -1), inline[1], rtol=0, atol=0)
    # resuming at batch 2 gives the rest of the epoch; another epoch gives other windows
    rest = WindowBatches(tiny_corpus, "train", 8, epoch=3, seed=1, start_batch=2)
    assert len(rest) == len(full) - 2
    torch.testing.assert_close(rest[0], inline[2], rtol=0, atol=0)
    assert not torch.equal(WindowBatches(tiny_corpus, "train", 8, epoch=4, seed=1)[0], inline[0])
