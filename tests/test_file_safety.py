"""File safety of `corpus` and `train` (issue 15, reproductions 1 and 2): a refused command changes no
file (the trees are hashed before and after), an --out that overlaps --from or holds other files is
refused, rebuilding a corpus never duplicates files, wav/ names never collide, a fresh `train` into
a run refuses, --force moves the old run aside, two trainings cannot share a folder, and --resume
refuses another corpus. Every file is made here; corpora are tiny and runs take a few steps."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike

from vrnn.__main__ import main
from vrnn.config import TrainConfig, preset
from vrnn.data import CorpusError, build_corpus, wav_names
from vrnn.files import FolderLock
from vrnn.runfolder import LOCK_NAME, RunFolderError
from vrnn.train import train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SR = 16_000


def tree_hash(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (symlinks not followed): relative path -> SHA-1 of its bytes
    (or "dir"/"link"), so any change, addition or removal shows up."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            out[p.relative_to(root).as_posix()] = "link" if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath) / f
            out[p.relative_to(root).as_posix()] = "link" if p.is_symlink() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def recordings(folder: Path, n: int = 6, rate: int = 44_100, seconds: float = 1.0, seed: int = 0) -> Path:
    """`n` stereo 24-bit recordings at `rate`, as a user's originals would be."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        x = np.stack([speechlike(seconds, rate, seed=seed + i), speechlike(seconds, rate, seed=seed + 50 + i)], 1)
        sf.write(folder / f"take{i}.wav", x, rate, subtype="PCM_24")
    return folder


def corpus_cli(*args: str) -> int:
    return main(["corpus", *args, "--quiet"])


# -- corpus: --out must not overlap --from ---------------------------------------------------------

@pytest.mark.parametrize("layout", ["out-contains-from", "same", "out-inside-from", "out-is-symlink-to-from"])
def test_corpus_refuses_out_overlapping_from_and_changes_nothing(tmp_path, layout, capsys):
    x = tmp_path / "X"
    recordings(x / "wav")
    src = x / "wav"
    out = {"out-contains-from": x, "same": src, "out-inside-from": src / "corpus",
           "out-is-symlink-to-from": tmp_path / "link"}[layout]
    if layout == "out-is-symlink-to-from":
        out.symlink_to(x)
    before = tree_hash(tmp_path)
    assert corpus_cli("--from", str(src), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "--from" in err and "Choose an --out outside" in err
    assert tree_hash(tmp_path) == before


# -- corpus: --out holding other files -------------------------------------------------------------

def test_corpus_refuses_a_non_corpus_folder_or_a_file_and_changes_nothing(tmp_path, capsys):
    src = recordings(tmp_path / "src")
    mine = tmp_path / "mine"
    (mine / "wav").mkdir(parents=True)
    sf.write(mine / "wav" / "take0.wav", speechlike(2.0, 44_100), 44_100, subtype="PCM_24")  # same name as a copy
    (mine / "notes.txt").write_text("my notes")
    (tmp_path / "afile").write_text("a file")
    before = tree_hash(tmp_path)
    for out, words in ((mine, "not a corpus folder"), (tmp_path / "afile", "not a folder")):
        for extra in ((), ("--force",)):
            assert corpus_cli("--from", str(src), "--out", str(out), *extra) == 2
            assert words in capsys.readouterr().err
    assert tree_hash(tmp_path) == before


def test_corpus_in_an_empty_folder_a_link_to_one_and_a_nested_new_folder(tmp_path):
    src = recordings(tmp_path / "src")
    empty, target = tmp_path / "empty", tmp_path / "target"
    empty.mkdir()
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    build_corpus(empty, src, progress=False)
    assert build_corpus(tmp_path / "link", src, progress=False) == tmp_path / "link"
    assert (tmp_path / "link").is_symlink()  # the corpus went into the folder it points at
    build_corpus(tmp_path / "a" / "b" / "c", src, progress=False)
    for root in (empty, target, tmp_path / "a" / "b" / "c"):
        assert json.loads((root / "corpus.json").read_text())["n_files"] == 6
    # nothing but the corpora themselves: no lock, staging or replaced folder left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty", "link", "src", "target"]
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["c"]


# -- corpus: rebuilding ------------------------------------------------------------------------------

def test_rebuilding_a_corpus_never_duplicates_and_force_replaces_cleanly(tmp_path, capsys):
    d = recordings(tmp_path / "D", n=4)
    c = tmp_path / "C"
    counts = []
    for _ in range(3):  # the 4 -> 8 -> 12: now reused as is
        assert corpus_cli("--from", str(d), "--out", str(c)) == 0
        counts.append((json.loads((c / "corpus.json").read_text())["n_files"], len(list((c / "wav").rglob("*.wav")))))
    assert counts == [(4, 4)] * 3
    # a corpus of other files: refused without --force, untouched
    other = recordings(tmp_path / "E", n=5, seed=100)
    (other / "sub").mkdir()
    sf.write(other / "sub" / "extra.flac", speechlike(1.0, seed=7), SR)
    before = tree_hash(tmp_path)
    assert corpus_cli("--from", str(other), "--out", str(c)) == 2
    err = capsys.readouterr().err
    assert "already holds a corpus of other files" in err and "--force" in err
    assert tree_hash(tmp_path) == before
    # --force: the new corpus alone (no stale wav/ copies of D's files), nothing left beside it
    assert corpus_cli("--from", str(other), "--out", str(c), "--force") == 0
    meta = json.loads((c / "corpus.json").read_text())
    assert meta["n_files"] == 6 and meta["source"]["name"] == str(other.resolve())
    wavs = sorted(p.relative_to(c / "wav").as_posix() for p in (c / "wav").rglob("*.wav"))
    assert wavs == sorted([f"take{i}.wav" for i in range(5)] + ["sub/extra.wav"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C", "D", "E"]
    assert tree_hash(d) == {k[2:]: v for k, v in before.items() if k.startswith("D/")}


def test_force_refuses_a_corpus_with_files_added_by_hand(tmp_path):
    src = recordings(tmp_path / "src", n=4)
    c = build_corpus(tmp_path / "c", src, progress=False)
    (c / "my-notes.txt").write_text("keep me")
    sf.write(c / "wav" / "my-recording.wav", speechlike(1.0), SR)
    before = tree_hash(tmp_path)
    with pytest.raises(CorpusError, match=r"did not write \(my-notes.txt, wav/my-recording.wav\)"):
        build_corpus(c, src, progress=False, force=True)
    assert tree_hash(tmp_path) == before


def test_a_failed_forced_rebuild_leaves_the_old_corpus_intact(tmp_path, monkeypatch):
    import errno

    import vrnn.data as data

    src = recordings(tmp_path / "src", n=4)
    c = build_corpus(tmp_path / "c", src, progress=False)
    before = tree_hash(tmp_path)
    real, calls = data.read_blocks, []

    def disk_fills_up(path, *a, **k):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(data, "read_blocks", disk_fills_up)
    with pytest.raises(CorpusError, match="disk is full"):
        build_corpus(c, src, progress=False, force=True)
    assert tree_hash(tmp_path) == before  # old corpus as it was, the staging folder removed


def test_a_killed_builds_staging_folder_is_cleaned_and_a_running_build_is_refused(tmp_path):
    src = recordings(tmp_path / "src", n=4)
    stale = tmp_path / ".c.building"
    (stale / "wav").mkdir(parents=True)
    (stale / ".vrnn-corpus-staging").write_text("")
    (stale / "train.int16.partial").write_bytes(b"\0" * 100)
    with FolderLock(tmp_path / ".c.lock", "test"):
        with pytest.raises(CorpusError, match=rf"already in progress: process {os.getpid()} .*\.c\.lock"):
            build_corpus(tmp_path / "c", src, progress=False)
    assert not (tmp_path / "c").exists()
    build_corpus(tmp_path / "c", src, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "src"]


# -- corpus: output-name collisions ----------------------------------------------------------------

def test_wav_names_keep_every_source_apart():
    names = ["a.wav", "a.flac", "a.FLAC", "A.wav", "s/b.ogg", "s/b.mp3", "s/b.ogg.wav", "c.WAV", "d.flac"]
    got = wav_names(names)
    assert len({v.casefold() for v in got.values()}) == len(names)  # distinct even on case-insensitive disks
    assert got["s/b.ogg.wav"] == "s/b.ogg.wav" and got["d.flac"] == "d.wav" and got["c.WAV"] == "c.wav"
    # a.wav and A.wav are one file on a case-insensitive disk: the first in code-point order keeps its name
    assert got["A.wav"] == "A.wav" and got["a.wav"] == "a.wav.wav"
    assert got["a.FLAC"] == "a.FLAC.wav" and got["a.flac"] == "a.flac-2.wav" and got["s/b.mp3"] == "s/b.wav"
    assert got["s/b.ogg"] not in ("s/b.wav", "s/b.ogg.wav")
    assert wav_names(list(reversed(names))) == got  # the order of the listing does not matter


def test_colliding_sources_are_all_kept_with_their_own_wav_copy(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "a.wav", speechlike(1.0, seed=1), SR, subtype="PCM_16")
    sf.write(src / "a.flac", speechlike(1.5, seed=2), SR)
    sf.write(src / "sub" / "b.ogg", speechlike(2.0, seed=3), SR, format="OGG", subtype="VORBIS")
    sf.write(src / "sub" / "b.wav", speechlike(0.5, seed=4), SR, subtype="PCM_16")
    for i in range(3):
        sf.write(src / f"other{i}.wav", speechlike(1.0, seed=10 + i), SR, subtype="PCM_16")
    c = tmp_path / "c"
    assert corpus_cli("--from", str(src), "--out", str(c)) == 0
    assert "keep their own extension" in capsys.readouterr().out
    rows = [json.loads(line) for line in (c / "manifest.jsonl").read_text().splitlines()]
    by_file = {r["file"]: r for r in rows}
    assert len(rows) == 7 and len({r["wav"] for r in rows}) == 7
    assert by_file["a.wav"]["wav"] == "a.wav" and by_file["a.flac"]["wav"] == "a.flac.wav"
    assert by_file["sub/b.wav"]["wav"] == "sub/b.wav" and by_file["sub/b.ogg"]["wav"] == "sub/b.ogg.wav"
    for r in rows:  # each copy holds its own source's audio
        assert sf.info(c / "wav" / r["wav"]).frames == r["length"]
    assert abs(by_file["a.flac"]["length"] - 1.5 * SR) <= 2 and abs(by_file["a.wav"]["length"] - SR) <= 2
    meta = json.loads((c / "corpus.json").read_text())
    assert sorted(x["file"] for x in meta["renamed"]) == ["a.flac", "sub/b.ogg"]


# -- train: existing run, --force, other files ------------------------------------------------------

def tcfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 3, "batch_size": 8, "lr": 3e-3, "seed": 0, "snapshot_every": 2, **kw})


def quiet(*_a) -> None:
    pass


def test_fresh_train_into_a_run_refuses_and_force_moves_it_aside(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_corpus, run, preset("tiny"), tcfg(), progress=False, log=quiet)
    old = tree_hash(run)
    assert {"last.safetensors", "best.safetensors", "metrics.jsonl", "snapshots/step-000002.safetensors"} <= set(old)
    args = ["train", "--data", str(tiny_corpus), "--preset", "tiny", "--out", str(run), "--steps", "2",
            "--batch-size", "8", "--snapshot-every", "0", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "step 3" in err and "--resume" in err and "--force" in err
    assert tree_hash(run) == old
    assert main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert "moved the previous run's files into" in out
    aside = [p for p in run.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1
    assert tree_hash(aside[0]) == old  # every old file, byte for byte
    new_rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in new_rows) == 2 and not (run / "snapshots").exists()
    # and the run so started is one again: a fresh train refuses, --resume goes on
    assert main(args) == 2
    assert main([*args[:-5], "--steps", "4", "--batch-size", "8", "--resume", "--quiet"]) == 0


def test_train_refuses_a_folder_of_other_files_unless_forced(tiny_corpus, tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("\\documentclass{article}")
    (out / "best.safetensors.bak").write_text("mine")
    before = tree_hash(out)
    with pytest.raises(RunFolderError, match="not empty and holds no training run"):
        train(tiny_corpus, out, preset("tiny"), tcfg(), progress=False, log=quiet)
    with pytest.raises(RunFolderError, match="not empty and holds no training run"):
        train(tiny_corpus, out, preset("tiny"), tcfg(), resume=True, progress=False, log=quiet)
    assert tree_hash(out) == before
    train(tiny_corpus, out, preset("tiny"), tcfg(), progress=False, log=quiet, force=True)
    after = tree_hash(out)
    assert {k: after[k] for k in before} == before and "last.safetensors" in after


# -- train: one training per folder ------------------------------------------------------------------

def test_second_training_on_a_locked_folder_exits_naming_folder_and_pid(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    with FolderLock(run / LOCK_NAME, "A training run in the test"):
        proc = subprocess.run(
            [sys.executable, "-m", "vrnn", "train", "--data", str(tiny_corpus), "--preset", "tiny", "--out", str(run),
             "--steps", "2", "--batch-size", "8", "--quiet"],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert str(run) in proc.stderr and f"process {os.getpid()}" in proc.stderr
        assert "already in progress" in proc.stderr
        # in this process too (another lock on the same file)
        with pytest.raises(RunFolderError, match=f"process {os.getpid()}"):
            train(tiny_corpus, run, preset("tiny"), tcfg(), progress=False, log=quiet)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written by either
    assert not run.joinpath(LOCK_NAME).exists()
    train(tiny_corpus, run, preset("tiny"), tcfg(), progress=False, log=quiet)  # free again
    assert not run.joinpath(LOCK_NAME).exists()


def test_a_lock_left_by_a_killed_process_does_not_block(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = ("import fcntl, json, os, signal, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
              "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, json.dumps({'pid': os.getpid()}).encode()); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", holder, str(run / LOCK_NAME)], timeout=60)
    assert proc.returncode == -signal.SIGKILL and (run / LOCK_NAME).is_file()
    summary = train(tiny_corpus, run, preset("tiny"), tcfg(), progress=False, log=quiet)
    assert summary["steps"] == 3 and not (run / LOCK_NAME).exists()


# -- train: --resume on another corpus -----------------------------------------------------------------

def test_resume_on_another_corpus_refuses_unless_forced(tiny_corpus, audio_tree, tmp_path):
    sub = tmp_path / "subset"
    for p in sorted(audio_tree.rglob("*.wav"))[:18]:
        (sub / p.parent.name).mkdir(parents=True, exist_ok=True)
        (sub / p.parent.name / p.name).write_bytes(p.read_bytes())
    other = build_corpus(tmp_path / "other", sub, progress=False)
    run = tmp_path / "run"
    train(tiny_corpus, run, preset("tiny"), tcfg(), progress=False, log=quiet)
    before = tree_hash(run)
    with pytest.raises(RunFolderError, match=r"--resume: the run in .* was trained on another corpus.*--force"):
        train(other, run, preset("tiny"), tcfg(steps=5), resume=True, progress=False, log=quiet)
    assert tree_hash(run) == before
    logs = []
    summary = train(other, run, preset("tiny"), tcfg(steps=5), resume=True, force=True, progress=False, log=logs.append)
    assert summary["steps"] == 5 and "Resuming" in logs[0]
    assert not [p for p in run.iterdir() if p.name.startswith("replaced-")]  # --resume --force moves nothing
    # the same corpus rebuilt elsewhere has the same fingerprint: resuming on it is fine
    copy = build_corpus(tmp_path / "copy", audio_tree, progress=False)
    train(copy, tmp_path / "run2", preset("tiny"), tcfg(), progress=False, log=quiet)
    assert train(tiny_corpus, tmp_path / "run2", preset("tiny"), tcfg(steps=4), resume=True, progress=False,
                 log=quiet)["steps"] == 4


def test_resume_after_a_kill_before_the_first_checkpoint_does_not_duplicate_metrics(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 10, "epoch": 0, "train_elbo_per_sequence": -1.0}) + "\n")
    train(tiny_corpus, run, preset("tiny"), tcfg(), resume=True, progress=False, log=quiet)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 10 not in steps and max(steps) == 3
