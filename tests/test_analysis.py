"""analyze() and generate(): Figure 2's per-frame quantities, sampling."""

import numpy as np
import pytest
import torch
from conftest import speechlike

from vrnn import VRNN, AudioError, analyze, generate, load_checkpoint, preset


def test_analyze_quantities(tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)
    w = speechlike(1.0)
    a = analyze(m, w, 16000)
    T = 16000 // 200
    assert a.n_frames == T and a.times.shape == (T,) and a.kl.shape == (T,) and a.delta.shape == (T,)
    assert a.z_mean.shape == (T, m.config.z_dim) and a.kl_per_dim.shape == (T, m.config.z_dim)
    assert a.times[0] == pytest.approx(0.00625) and a.times[-1] == pytest.approx(1.0 - 0.00625)
    assert a.delta[0] == 0 and (a.delta[1:] >= 0).all()
    np.testing.assert_allclose(a.delta[5], ((a.z_mean[5] - a.z_mean[4]) ** 2).sum(), rtol=1e-5)
    np.testing.assert_allclose(a.kl_per_dim.sum(1), a.kl, rtol=1e-4, atol=1e-5)
    assert a.elbo == pytest.approx((a.log_px - a.kl).sum(), rel=1e-4)
    assert a.waveform.shape == (T * 200,)
    # the mean path is reproducible; a sampled path differs
    b = analyze(m, w, 16000)
    np.testing.assert_array_equal(a.kl, b.kl)
    s = analyze(m, w, 16000, sample=True, seed=1)
    assert s.sampled and not np.allclose(s.kl, a.kl)


def test_analyze_silence_and_rnn():
    torch.manual_seed(0)
    m = VRNN(preset("tiny"), 0.0, 0.1).eval()
    a = analyze(m, np.zeros(4000, np.float32), 16000)
    assert np.isfinite(a.kl).all() and np.isfinite(a.delta).all() and np.isfinite(a.elbo)
    r = analyze(VRNN(preset("tiny", "rnn-gauss")).eval(), speechlike(0.5), 16000)
    assert not r.has_latent and r.kl is None and set(r.table()) == {"time_s", "log_px_t_nats"}


def _tones(sr: int, seconds: float = 1.0) -> np.ndarray:
    """220 Hz + 1500 Hz, gated at 2 Hz: the same signal at any rate (below 4 kHz, so 8 kHz holds it)."""
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1500 * t)
    return (x * np.clip(np.sin(2 * np.pi * 2 * t), 0, None)).astype(np.float32)


@pytest.mark.parametrize("sr", [48_000, 8_000])
def test_analyze_resamples_any_rate_like_load_audio(tiny_checkpoint, sr):
    """A 48 kHz or 8 kHz array is resampled to 16 kHz (soxr, as load_audio): the same frames, times and
    values as the same sound at 16 kHz, and exactly what analysing its WAV file through load_audio gives."""
    import io

    import soundfile as sf

    from vrnn import load_audio

    m = load_checkpoint(tiny_checkpoint)
    native = analyze(m, _tones(16_000), 16_000)
    a = analyze(m, _tones(sr), sr)
    assert a.sample_rate == 16_000 and a.n_frames == native.n_frames == 80 and a.waveform.shape == (16_000,)
    np.testing.assert_array_equal(a.times, native.times)
    np.testing.assert_allclose(a.waveform, native.waveform, atol=1e-3)
    np.testing.assert_allclose(a.kl, native.kl, rtol=1e-3, atol=1e-6)
    assert a.elbo == pytest.approx(native.elbo, rel=1e-4)
    buf = io.BytesIO()
    sf.write(buf, _tones(sr), sr, format="WAV", subtype="FLOAT")
    waveform, rate = load_audio(buf.getvalue())
    np.testing.assert_array_equal(analyze(m, waveform, rate).kl, a.kl)


def test_analyze_rejects_bad_input(tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)
    for rate in (0, -16_000, float("nan")):
        with pytest.raises(AudioError, match="positive number of Hz"):
            analyze(m, speechlike(0.5), rate)
    with pytest.raises(AudioError, match="mono waveform"):
        analyze(m, np.stack([speechlike(0.5)] * 2, axis=1), 16000)  # [N, 2]: not silently interleaved
    with pytest.raises(AudioError, match="at least one frame"):
        analyze(m, np.zeros(250, np.float32), 22_050)  # 250 samples at 22.05 kHz are 181 at 16 kHz
    with pytest.raises(AudioError, match="at least one frame"):
        analyze(m, np.zeros(10, np.float32), 16000)
    bad = speechlike(0.5)
    bad[3] = np.inf
    with pytest.raises(AudioError, match="infinite"):
        analyze(m, bad, 16000)


def test_generate_length_seed_and_scale():
    torch.manual_seed(0)
    m = VRNN(preset("tiny"), 0.25, 0.01).eval()  # large offset, small scale: output must be de-normalised
    a = generate(m, seconds=0.5, seed=3)
    assert a.shape == (8000,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, generate(m, seconds=0.5, seed=3))
    assert not np.array_equal(a, generate(m, seconds=0.5, seed=4))
    assert abs(a.mean() - 0.25) < 0.1
    assert generate(m, seconds=0.1, seed=0, n_samples=3).shape == (3, 1600)
    with pytest.raises(ValueError):
        generate(m, seconds=0)


def test_csv_has_the_same_columns_for_every_family(tiny_checkpoint):
    """One writer (`Analysis.to_csv`): the values are the analysis's, RNN rows leave delta_t and KL_t empty."""
    import csv
    import io

    torch.manual_seed(0)
    rnn = VRNN(preset("tiny", "rnn-gauss")).eval()
    vr = load_checkpoint(tiny_checkpoint)
    wave = speechlike(0.3)
    for model in (vr, rnn):
        a = analyze(model, wave)
        rows = list(csv.DictReader(io.StringIO(a.to_csv())))
        assert list(rows[0]) == ["time_s", "delta_t", "kl_t_nats", "log_px_t_nats"] and len(rows) == a.n_frames
        np.testing.assert_allclose([float(r["log_px_t_nats"]) for r in rows], a.log_px, rtol=1e-5)
        if a.has_latent:
            np.testing.assert_allclose([float(r["kl_t_nats"]) for r in rows], a.kl, rtol=1e-5, atol=1e-9)
        else:
            assert {r["delta_t"] for r in rows} == {""} and {r["kl_t_nats"] for r in rows} == {""}


@pytest.mark.parametrize("family", ["vrnn-gauss", "rnn-gmm"])
def test_a_checkpoint_with_another_frame_size_analyses_generates_and_scores(tmp_path, family):
    """The frame size is the checkpoint's (config.x_dim), not the module constant: 160-sample (10 ms) frames."""
    import dataclasses

    from vrnn import save_checkpoint
    from vrnn.evaluate import score_sequences

    torch.manual_seed(0)
    path = tmp_path / "x160.safetensors"
    save_checkpoint(path, VRNN(dataclasses.replace(preset("tiny", family), x_dim=160), 0.0, 0.1), {"steps": 0})
    m = load_checkpoint(path)
    assert m.config.x_dim == 160
    a = analyze(m, speechlike(1.0), 16000)
    assert a.n_frames == 100 and a.times[1] - a.times[0] == pytest.approx(0.010) and np.isfinite(a.elbo)
    assert a.waveform.shape == (16000,)
    assert generate(m, seconds=0.5).shape == (8000,)
    s = score_sequences(m, np.stack([speechlike(0.5), speechlike(0.5, seed=1)]), samples=2, batch_size=4)
    assert s.n_frames == 50 and np.isfinite(s.elbo_per_sequence)
