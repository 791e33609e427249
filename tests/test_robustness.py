"""Issue 15, the rest: every numeric flag of evaluate/analyze/generate is a usage error before any work
(vrnn/cli_types.py), evaluate --data names a missing or empty folder, and analysis streams long clips in
blocks with the LSTM state carried (analyze_blocks), so its numbers are one pass over the whole clip."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

import vrnn.analysis as analysis_module
import vrnn.cli_types as T
from vrnn import VRNN, AudioError, analyze, load_audio, load_checkpoint, preset
from vrnn.__main__ import main
from vrnn.analysis import analyze_blocks, generate
from vrnn.audio import read_audio_blocks
from vrnn.config import FAMILIES


def usage_error(argv, capsys) -> str:
    """Run the CLI, expect argparse's usage error (exit 2), return stderr."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command gets as far as reading a checkpoint."""
    import vrnn.checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was read: the flag was not checked first")

    monkeypatch.setattr(vrnn.checkpoint, "load_checkpoint", refuse)
    monkeypatch.setattr(vrnn.checkpoint, "read_checkpoint", refuse)


# -- the argparse types --------------------------------------------------------------------------------------------

def test_range_types_accept_and_refuse():
    assert T.positive_int("3") == 3 and T.nonnegative_int("0") == 0 and T.seed(str(2**63 - 1)) == 2**63 - 1
    for parse, bad in [(T.positive_int, "0"), (T.positive_int, "-1"), (T.positive_int, "1.5"), (T.positive_int, ""),
                       (T.nonnegative_int, "-1"), (T.seed, "-1"), (T.seed, str(2**63)),
                       (T.positive_float, "0"), (T.positive_float, "nan"), (T.positive_float, "inf"),
                       (T.positive_float, "-inf"), (T.positive_float, "x")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    sec = T.seconds(600)
    assert sec("0.01") == 0.01 and sec("600") == 600.0
    for bad in ("0", "-1", "600.5", "1e30", "inf", "nan", "1e309"):
        with pytest.raises(argparse.ArgumentTypeError, match="finite|> 0 and <= 600"):
            sec(bad)
    r = T.float_range(0, 1, high_open=True)
    assert r("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match=">= 0 and < 1"):
        r("1")


def test_output_file_type(tmp_path):
    wav = T.output_file(".wav", ".flac")
    assert wav(str(tmp_path / "a.WAV")) == tmp_path / "a.WAV"
    cases = {str(tmp_path): "is a folder", str(tmp_path) + "/": "is a folder", str(tmp_path / "a"): "no extension",
             str(tmp_path / "a.mp3"): "extension '.mp3'", str(tmp_path / "nope" / "a.wav"): "does not exist",
             "": "empty"}
    for text, message in cases.items():
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            wav(text)
    (tmp_path / "file").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="not a folder"):
        T.output_file()(str(tmp_path / "file" / "a.csv"))
    with pytest.raises(argparse.ArgumentTypeError, match="no folder"):
        T.existing_folder(str(tmp_path / "missing"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        T.existing_folder(str(tmp_path / "file"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        T.existing_file(str(tmp_path))


def test_device_type():
    assert T.device("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="not a device"):
        T.device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA.*use --device cpu"):
            T.device("cuda")
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA device"):
            T.device(f"cuda:{torch.cuda.device_count()}")


# -- the commands: usage errors before any work (issue 15, reproductions 4, 5, 7) ------------------------------------

def test_evaluate_flags_are_checked_first(tiny_checkpoint, capsys, no_work):
    ck = str(tiny_checkpoint)
    assert "--batch-size: must be >= 1, got -1" in usage_error(["evaluate", ck, "--batch-size", "-1"], capsys)
    assert "--samples: must be >= 1, got 0" in usage_error(["evaluate", ck, "--samples", "0"], capsys)
    assert "--seed: must be >= 0" in usage_error(["evaluate", ck, "--seed", "-3"], capsys)
    assert "--json: " in usage_error(["evaluate", ck, "--json", "."], capsys)


def test_evaluate_data_missing_empty_or_too_short(tiny_checkpoint, tmp_path, capsys):
    ck = str(tiny_checkpoint)
    assert "there is no folder" in usage_error(["evaluate", ck, "--data", str(tmp_path / "missing")], capsys)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no audio here")
    assert main(["evaluate", ck, "--data", str(empty), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no audio files in this folder" in err and "shorter than one sequence" not in err
    short = tmp_path / "short"
    short.mkdir()
    sf.write(short / "a.wav", speechlike(0.3), 16_000)
    assert main(["evaluate", ck, "--data", str(short), "--quiet"]) == 2
    assert "all shorter than one 0.5 s sequence (the longest is 0.30 s)" in capsys.readouterr().err


@pytest.mark.parametrize("seconds", ["inf", "1e30", "nan", "-1", "0", "601"])
def test_generate_seconds(seconds, tiny_checkpoint, tmp_path, capsys, no_work):
    err = usage_error(["generate", str(tiny_checkpoint), "--seconds", seconds, "--out", str(tmp_path / "a.wav")],
                      capsys)
    assert "argument --seconds:" in err and "Traceback" not in err
    assert not (tmp_path / "a.wav").exists()


def test_generate_out_is_checked_before_generating(tiny_checkpoint, tmp_path, capsys, no_work):
    ck = str(tiny_checkpoint)
    assert "is a folder" in usage_error(["generate", ck, "--out", str(tmp_path)], capsys)
    assert "no extension" in usage_error(["generate", ck, "--out", str(tmp_path / "sample")], capsys)
    assert "does not exist" in usage_error(["generate", ck, "--out", str(tmp_path / "no" / "a.wav")], capsys)
    assert list(tmp_path.iterdir()) == []


def test_generate_writes_flac_and_the_library_refuses_bad_lengths(tiny_checkpoint, tmp_path, capsys):
    assert main(["generate", str(tiny_checkpoint), "--seconds", "0.25", "--out", str(tmp_path / "a.flac")]) == 0
    assert sf.info(str(tmp_path / "a.flac")).frames == 4000
    m = load_checkpoint(tiny_checkpoint)
    for bad in (float("inf"), float("nan"), -1.0, 0, "3"):
        with pytest.raises(ValueError, match="positive finite"):
            generate(m, seconds=bad)
    with pytest.raises(ValueError, match="n_samples"):
        generate(m, seconds=0.1, n_samples=0)


def test_train_device_without_cuda_is_a_usage_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = usage_error(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cuda"], capsys)
    assert "--device: 'cuda': this PyTorch was built without CUDA" in err or "no CUDA GPU" in err
    assert not (tmp_path / "run").exists()


def test_analyze_paths_are_checked_first(tiny_checkpoint, tmp_path, capsys, no_work):
    clip = tmp_path / "c.wav"
    sf.write(clip, speechlike(0.5), 16_000)
    ck = str(tiny_checkpoint)
    assert "there is no file" in usage_error(["analyze", ck, str(tmp_path / "none.wav")], capsys)
    assert "is a folder" in usage_error(["analyze", ck, str(clip), "--csv", str(tmp_path)], capsys)
    assert "extension" in usage_error(["analyze", ck, str(clip), "--html", str(tmp_path / "fig.png")], capsys)


# -- streaming analysis (issue 15, reproduction 6) -----------------------------------------------------------------

def _random_model(family: str) -> VRNN:
    torch.manual_seed(1)
    m = VRNN(preset("tiny", family), 0.0, 0.1).eval()
    with torch.no_grad():  # larger weights than the init, so the state matters from frame to frame
        for p in m.parameters():
            p.mul_(4.0)
    return m


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_carry_the_state_and_equal_one_pass(family):
    """Blocks of 7 frames fed by pieces of odd sizes give the readable model's one pass over the whole clip:
    the LSTM state and delta_t's previous mean cross every block boundary."""
    m = _random_model(family)
    wave = speechlike(0.6) * 5  # 48 frames
    x = m.normalize(torch.from_numpy(vrnn_frames(wave)))[None]
    with torch.inference_mode():
        ref = m(x, sample=False)
    pieces = [wave[i:i + 333] for i in range(0, len(wave), 333)]
    calls = []
    parts = list(analyze_blocks(m, pieces, block_frames=7, total_frames=48, fast=False,
                                progress=lambda d, t: calls.append((d, t))))
    assert [p.n_frames for p in parts] == [7] * 6 + [6]
    assert calls == [(7 * i, 48) for i in range(1, 7)] + [(48, 48)]
    log_px = np.concatenate([p.log_px for p in parts])
    np.testing.assert_allclose(log_px, ref.log_px[0].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.concatenate([p.times for p in parts]), (np.arange(48) + 0.5) * 0.0125)
    assert sum(p.elbo for p in parts) == pytest.approx(float(ref.elbo[0]), rel=1e-5)
    if m.config.has_latent:
        mu = ref.posterior_mean[0].numpy()
        delta = np.concatenate([p.delta for p in parts])
        np.testing.assert_allclose(delta[1:], ((mu[1:] - mu[:-1]) ** 2).sum(1), rtol=1e-4, atol=1e-5)
        assert delta[0] == 0 and delta[7] > 0  # the first frame of the second block is against the first's last
        np.testing.assert_allclose(np.concatenate([p.kl for p in parts]), ref.kl[0].numpy(), rtol=1e-4, atol=1e-4)
    # the fast path over blocks gives the same, and analyze() is the blocks put together
    fast = list(analyze_blocks(m, pieces, block_frames=7))
    np.testing.assert_allclose(np.concatenate([p.log_px for p in fast]), log_px, rtol=1e-5, atol=1e-4)


def vrnn_frames(wave):
    from vrnn.audio import frame

    return np.ascontiguousarray(frame(wave.astype(np.float32)))


def test_analyze_is_the_blocks_and_reports_progress(tiny_checkpoint, monkeypatch):
    m = load_checkpoint(tiny_checkpoint)
    wave = speechlike(1.0)  # 80 frames
    one = analyze(m, wave)  # default blocks of 1024 frames: one block
    monkeypatch.setattr(analysis_module, "ANALYSIS_BLOCK_FRAMES", 9)
    calls = []
    many = analyze(m, wave, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (9, 80) and calls[-1] == (80, 80) and len(calls) == 9
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:], strict=False))
    assert many.z_mean.dtype == np.float32 and many.kl.dtype == np.float32  # the model's dtype
    for name in ("log_px", "kl", "delta", "z_mean", "z_std", "prior_mean", "prior_std", "kl_per_dim"):
        np.testing.assert_allclose(getattr(many, name), getattr(one, name), rtol=1e-5, atol=1e-5, err_msg=name)
    assert many.elbo == pytest.approx(one.elbo, rel=1e-5)
    np.testing.assert_array_equal(many.waveform, one.waveform)


def test_analyze_blocks_reads_its_pieces_lazily(tiny_checkpoint):
    """Streaming: when the first block comes out, only the pieces it needed have been read."""
    m = load_checkpoint(tiny_checkpoint)
    read = []

    def pieces():
        for i in range(100):  # 100 x 0.5 s: never all in memory
            read.append(i)
            yield speechlike(0.5, seed=i)

    it = analyze_blocks(m, pieces(), block_frames=100)  # 1.25 s per block
    first = next(it)
    assert first.n_frames == 100 and len(read) == 3
    rest = list(it)
    assert len(read) == 100 and sum(p.n_frames for p in rest) == 4000 - 100


def test_analyze_blocks_errors(tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)
    with pytest.raises(AudioError, match="at least one frame"):
        list(analyze_blocks(m, [np.zeros(150, np.float32), np.zeros(49, np.float32)]))
    bad = speechlike(0.5)
    bad[100] = np.nan
    it = analyze_blocks(m, [speechlike(0.5), bad], block_frames=10)
    assert next(it).n_frames == 10  # blocks before the bad piece come out
    with pytest.raises(AudioError, match="NaN"):
        list(it)


def test_read_audio_blocks_matches_load_audio(tmp_path):
    wave = speechlike(2.3)
    sf.write(tmp_path / "a.wav", wave, 16_000, subtype="PCM_16")
    rate, n, blocks = read_audio_blocks(tmp_path / "a.wav", block_seconds=0.7)
    got = np.concatenate(list(blocks))
    assert rate == 16_000 and n == len(got) == len(wave)
    np.testing.assert_array_equal(got, load_audio(tmp_path / "a.wav")[0])
    stereo = np.stack([speechlike(2.0, 44_100), speechlike(2.0, 44_100, seed=1)], 1)
    sf.write(tmp_path / "b.flac", stereo, 44_100, subtype="PCM_24")
    rate, n, blocks = read_audio_blocks(tmp_path / "b.flac", block_seconds=0.3)
    got = np.concatenate(list(blocks))
    ref = load_audio(tmp_path / "b.flac")[0]
    assert rate == 44_100 and n == 32_000 and abs(len(got) - len(ref)) <= 1
    k = min(len(got), len(ref))
    np.testing.assert_allclose(got[:k], ref[:k], atol=2e-3)  # streaming vs one-shot soxr: edge effects only
    (tmp_path / "c.wav").write_bytes(b"RIFF not audio")
    with pytest.raises(AudioError, match="'c.wav' could not be read as audio"):
        read_audio_blocks(tmp_path / "c.wav")
    with pytest.raises(AudioError, match="no audio file"):
        read_audio_blocks(tmp_path / "missing.wav")


def test_cli_analyze_streams_the_same_numbers_as_analyze(tiny_checkpoint, tmp_path, capsys):
    """`vrnn analyze` reads the file in blocks and writes the CSV block by block: the same table as
    `analyze(...).to_csv()` in memory, over a clip longer than one block (1024 frames = 12.8 s)."""
    wave = speechlike(27.0)
    sf.write(tmp_path / "long.wav", wave, 16_000, subtype="FLOAT")
    out = tmp_path / "t.csv"
    assert main(["analyze", str(tiny_checkpoint), str(tmp_path / "long.wav"), "--csv", str(out),
                 "--html", str(tmp_path / "f.html"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    a = analyze(load_checkpoint(tiny_checkpoint), wave)
    assert out.read_text() == a.to_csv()
    assert f"ELBO along the posterior-mean path: {a.elbo:.1f} nats" in printed and "2160 frames" in printed
    assert (tmp_path / "f.html").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.html", "long.wav", "t.csv"]  # no temporary left


def test_cli_analyze_leaves_no_partial_table(tiny_checkpoint, tmp_path, capsys):
    wave = speechlike(30.0)
    wave[20 * 16_000] = np.nan  # in the second block
    sf.write(tmp_path / "nan.wav", wave, 16_000, subtype="FLOAT")
    (tmp_path / "t.csv").write_text("the user's old table\n")
    assert main(["analyze", str(tiny_checkpoint), str(tmp_path / "nan.wav"), "--csv", str(tmp_path / "t.csv"),
                 "--quiet"]) == 2
    assert "NaN" in capsys.readouterr().err
    assert (tmp_path / "t.csv").read_text() == "the user's old table\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.wav", "t.csv"]


def test_cli_analyze_html_of_a_long_clip_draws_the_frame_envelope(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    import vrnn.__main__ as cli

    monkeypatch.setattr(cli, "HTML_WAVEFORM_SECONDS", 1.0)  # "long" = over 1 s here
    sf.write(tmp_path / "c.wav", speechlike(3.0), 16_000)
    assert main(["analyze", str(tiny_checkpoint), str(tmp_path / "c.wav"), "--html", str(tmp_path / "f.html"),
                 "--quiet", "--table"]) == 0
    out = capsys.readouterr().out
    assert "minimum and maximum" in out
    lines = out.splitlines()
    table = lines[:next(i for i, line in enumerate(lines) if line.startswith("c.wav:"))]
    rows = list(csv.reader(table, delimiter="\t"))
    assert rows[0] == ["time_s", "delta_t", "kl_t_nats", "log_px_t_nats"] and len(rows) == 241
    assert all(len(r) == 4 for r in rows)


def test_align_and_segment_flags_are_checked_first(tiny_checkpoint, tmp_path, capsys, no_work):
    clip = tmp_path / "c.wav"
    sf.write(clip, speechlike(0.5), 16_000)
    ck = str(tiny_checkpoint)
    assert "there is no file" in usage_error(["align", str(tmp_path / "none.wav"), "--text", "hi", "--out",
                                              str(tmp_path / "a.TextGrid")], capsys)
    assert "no extension" in usage_error(["align", str(clip), "--text", "hi", "--out", str(tmp_path / "a")], capsys)
    for flag, value in [("--tolerance", "0"), ("--tolerance", "nan"), ("--tolerance", "2"), ("--min-distance", "-1"),
                        ("--min-distance", "inf"), ("--prominence", "-0.1"), ("--prominence", "1.5")]:
        err = usage_error(["segment", ck, flag, value], capsys)
        assert f"argument {flag}:" in err, (flag, value)
    assert "is a folder" in usage_error(["segment", ck, "--json", str(tmp_path)], capsys)
