"""Audio front end: formats, rates, channels, bad input, framing."""

import io

import numpy as np
import pytest
import soundfile as sf

from vrnn import AudioWarning
from vrnn.audio import FRAME_SIZE, SAMPLE_RATE, AudioError, frame, frame_times, load_audio, to_wav_bytes, unframe


def _sine(sr, seconds=0.5, freq=1000.0, amp=0.5, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _wav(x, sr, subtype="PCM_16", fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, x, sr, subtype=subtype, format=fmt)
    return buf.getvalue()


def _peak_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[spec.argmax()]


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
def test_any_rate_is_resampled_to_16k(sr):
    y, rate = load_audio(_wav(_sine(sr), sr))
    assert rate == SAMPLE_RATE and y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SAMPLE_RATE * 0.5) <= 2
    assert _peak_hz(y) == pytest.approx(1000.0, abs=5)
    assert np.abs(y[1000:-1000]).max() == pytest.approx(0.5, rel=0.02)  # loudness kept


def test_stereo_is_downmixed():
    x = _sine(16000, channels=2)
    x[:, 1] = 0.0  # right channel silent: the mean halves the amplitude
    y, _ = load_audio(_wav(x, 16000))
    assert np.abs(y).max() == pytest.approx(0.25, rel=0.01)


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 0.02), ("PCM_24", 1e-5), ("FLOAT", 1e-6), ("PCM_32", 1e-6)])
def test_sample_formats(subtype, tol):
    x = _sine(16000)
    y, _ = load_audio(_wav(x, 16000, subtype))
    assert np.abs(y - x).max() < tol


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_flac_and_ogg(fmt, subtype):
    y, _ = load_audio(_wav(_sine(22050), 22050, subtype, fmt))
    assert _peak_hz(y) == pytest.approx(1000.0, abs=5)


def test_paths_and_file_objects(tmp_path):
    p = tmp_path / "a.wav"
    p.write_bytes(_wav(_sine(16000), 16000))
    a, _ = load_audio(p)
    b, _ = load_audio(io.BytesIO(p.read_bytes()))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("data,needle", [
    (b"", "empty"),
    (b"this is a text file, not audio\n" * 20, "could not be read"),
    (np.random.default_rng(0).bytes(5000), "could not be read"),
])
def test_bad_bytes_raise_readable_errors(data, needle):
    with pytest.raises(AudioError, match=needle):
        load_audio(data)


def test_truncated_wav_is_rejected_or_shortened():
    data = _wav(_sine(16000), 16000)
    with pytest.raises(AudioError, match="at least one frame"), pytest.warns(AudioWarning, match="holds 8 "):
        load_audio(data[:60])  # the header and 8 of its 8000 samples


@pytest.mark.parametrize("sr,channels", [(16000, 1), (44100, 2)])
def test_wav_cut_short_is_read_as_far_as_it_goes_with_a_warning(sr, channels):
    """A WAV whose header declares more samples than the file holds (a download or a copy cut off): read what
    is there, and say so with both numbers, never silently."""
    full = _wav(_sine(sr, seconds=1.0, channels=channels), sr)
    data = full[:44 + 2 * channels * (sr // 2 + 123)]  # 44-byte header, then half a second and 123 samples
    held = sr // 2 + 123
    notes = []
    y, rate = load_audio(data, on_warning=notes.append)
    assert rate == SAMPLE_RATE and abs(len(y) - held * SAMPLE_RATE / sr) <= 2
    assert len(notes) == 1 and f"declares {sr} samples" in notes[0] and f"holds {held} " in notes[0], notes
    with pytest.warns(AudioWarning, match=f"declares {sr} samples .* holds {held} "):
        load_audio(data)
    notes.clear()
    load_audio(full, on_warning=notes.append)  # complete: nothing to say
    stream = bytearray(full)
    stream[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # a streamed WAV leaves the length open: no warning
    load_audio(bytes(stream), on_warning=notes.append)
    assert notes == []


def test_non_finite_and_too_short():
    x = _sine(16000)
    x[100] = np.nan
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(_wav(x, 16000, "FLOAT"))
    with pytest.raises(AudioError, match="at least one frame"):
        load_audio(_wav(_sine(16000, seconds=0.005), 16000))


def test_missing_file_and_length_limit(tmp_path):
    with pytest.raises(AudioError, match="no audio file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="limit"):
        load_audio(_wav(_sine(16000, seconds=2.0), 16000), max_seconds=1.0)
    assert issubclass(AudioError, ValueError)


def test_frame_unframe_round_trip():
    x = np.arange(2 * FRAME_SIZE + 37, dtype=np.float32)
    f = frame(x)
    assert f.shape == (2, FRAME_SIZE)
    np.testing.assert_array_equal(unframe(f), x[: 2 * FRAME_SIZE])
    np.testing.assert_allclose(frame_times(3), [0.00625, 0.01875, 0.03125])


def test_wav_bytes_round_trip():
    x = _sine(16000)
    y, _ = load_audio(to_wav_bytes(x))
    assert np.abs(y - x).max() < 1e-4
