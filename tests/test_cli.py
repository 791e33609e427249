"""One short run of every CLI command on tiny inputs: corpus, train, evaluate, analyze, generate."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from vrnn import load_checkpoint
from vrnn.__main__ import main


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "vrnn", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("corpus", "train", "evaluate", "analyze", "generate"):
        assert cmd in out


def test_cli_end_to_end(tmp_path, audio_tree, clip_dir, capsys):
    corpus = tmp_path / "corpus"
    assert main(["corpus", "--from", str(audio_tree), "--out", str(corpus), "--quiet"]) == 0
    assert (corpus / "manifest.jsonl").is_file() and (corpus / "train.int16").is_file()
    assert main(["corpus", "--from", str(audio_tree), "--out", str(corpus), "--quiet"]) == 0  # idempotent

    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--preset", "tiny", "--out", str(run), "--steps", "6",
                 "--batch-size", "8", "--quiet"]) == 0
    for name in ("best.safetensors", "last.safetensors", "metrics.jsonl"):
        assert (run / name).is_file(), name
    ckpt = run / "best.safetensors"
    assert load_checkpoint(ckpt).info["training"]["steps"] >= 1

    clip = clip_dir / "clip0.wav"
    csv_path, html_path = tmp_path / "frames.csv", tmp_path / "fig.html"
    capsys.readouterr()
    assert main(["analyze", str(ckpt), str(clip), "--csv", str(csv_path), "--html", str(html_path)]) == 0
    out = capsys.readouterr().out
    assert "ELBO" in out and "KL" in out
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == sf.info(clip).frames // 200
    assert list(rows[0]) == ["time_s", "delta_t", "kl_t_nats", "log_px_t_nats"]  # as the app's download
    assert float(rows[0]["delta_t"]) == 0.0
    assert "plotly" in html_path.read_text()[:200000].lower()

    wav = tmp_path / "gen.wav"
    assert main(["generate", str(ckpt), "--seconds", "0.5", "--seed", "1", "--out", str(wav)]) == 0
    info = sf.info(wav)
    assert info.samplerate == 16000 and info.frames == 8000
    mean_wav = tmp_path / "gen-mean.wav"
    assert main(["generate", str(ckpt), "--seconds", "0.5", "--seed", "1", "--output", "mean",
                 "--out", str(mean_wav)]) == 0
    sampled, mean = sf.read(wav)[0], sf.read(mean_wav)[0]
    assert len(mean) == 8000 and not np.array_equal(sampled, mean)  # the output noise is off

    js = tmp_path / "scores.json"
    assert main(["evaluate", str(ckpt), "--corpus", str(corpus), "--split", "test", "--samples", "3",
                 "--json", str(js), "--quiet"]) == 0
    row = json.loads(js.read_text())[0]
    for key in ("checkpoint", "family", "n_sequences", "elbo_per_sequence", "loglik_per_sequence",
                "elbo_per_frame", "loglik_per_frame"):
        assert key in row
    assert row["n_sequences"] > 0 and row["elbo_per_frame"] == row["elbo_per_sequence"] / 40
    assert main(["evaluate", str(ckpt), "--data", str(clip_dir), "--samples", "2", "--quiet"]) == 0


def test_a_wav_cut_short_is_read_with_a_warning_on_stderr(tiny_checkpoint, clip_dir, audio_tree, tmp_path, capsys):
    """analyze and corpus read a WAV whose header declares more than the file holds as far as it goes, and
    say so on stderr with both numbers."""
    import shutil

    src = shutil.copytree(audio_tree, tmp_path / "src")
    cut = src / "cut.wav"
    cut.write_bytes((clip_dir / "clip0.wav").read_bytes()[:44 + 2 * 20000])  # header: 2 s = 32000 samples
    want = "warning: 'cut.wav' is cut short: its header declares 32000 samples (2.00 s) but the file holds 20000 "
    assert main(["analyze", str(tiny_checkpoint), str(cut)]) == 0
    out, err = capsys.readouterr()
    assert want in err and "cut.wav: 1.25 s, 100 frames" in out
    assert main(["corpus", "--from", str(src), "--out", str(tmp_path / "corpus"), "--quiet"]) == 0
    assert want in capsys.readouterr().err
    manifest = [json.loads(line) for line in (tmp_path / "corpus" / "manifest.jsonl").read_text().splitlines()]
    assert [r["length"] for r in manifest if r["file"] == "cut.wav"] == [20000]  # the part that is there


def test_cli_errors_are_sentences(tmp_path, capsys):
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(SystemExit) as exit_:  # a usage error: the parser checks that the file exists
        main(["analyze", str(tmp_path / "none.safetensors"), str(tmp_path / "bad.wav")])
    assert exit_.value.code == 2 and "argument checkpoint: there is no file" in capsys.readouterr().err


def test_train_flags_come_from_train_config_and_refuse_bad_values(capsys):
    """Each TrainConfig field is a train flag with the field's default; out-of-range values are refused by
    argparse (exit 2, the field's message) before anything runs, and by TrainConfig itself."""
    import dataclasses

    import pytest

    from vrnn.__main__ import build_parser
    from vrnn.config import TrainConfig

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)} == dataclasses.asdict(TrainConfig())
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--lr", "1e-3", "--workers", "2"])
    assert (args.lr, args.num_workers) == (1e-3, 2)
    for flag, value, message in [("--batch-size", "0", "batch_size must be at least 1"),
                                 ("--steps", "0", "steps must be at least 1"),
                                 ("--lr=-3e-4", None, "lr must be above 0"), ("--lr", "inf", "lr must be a finite"),
                                 ("--clip-norm", "0", "clip_norm must be above 0"),
                                 ("--steps", "1.5", "not a valid int")]:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["train", "--data", "d", "--out", "o", flag] + ([value] if value else []))
        assert e.value.code == 2 and message in capsys.readouterr().err, (flag, value)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        TrainConfig(batch_size=0)
