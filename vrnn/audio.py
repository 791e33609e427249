"""Audio front end: constants with units, loading any file to mono float32 at 16 kHz, framing.

The shape and rate contract (the one place it is written; docstrings elsewhere point here):

- A waveform is a 1-D float32 array [N], mono, in [-1, 1] for audio read from integer formats.
- The model hears 16 kHz (SAMPLE_RATE). Every public function that takes a waveform together with its
  sample rate (`load_audio` for files, `analyze`, `plots.log_mel`) accepts any positive rate and resamples
  to 16 kHz itself with soxr (HQ), through `resample`; one without a rate argument (`frame`,
  `evaluate.score_sequences`, the corpus arrays) takes 16 kHz audio.
- Everything returned (`load_audio`, `generate`, `Analysis.waveform`) is float32 [N] at 16 kHz, and
  time axes are in seconds; the model's frames are 200 samples = 12.5 ms, so a clip of N samples at
  16 kHz has N // 200 frames (the incomplete tail is dropped).

Reading uses soundfile (libsndfile: wav, flac, ogg, mp3 and more); resampling uses soxr, the
resampler librosa itself calls (`librosa.resample(res_type="soxr_hq")`), imported directly so no
numba compilation happens on the app's start-up path.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

SAMPLE_RATE = 16_000  # Hz, as Chung et al. 2015 (Blizzard, TIMIT)
FRAME_SIZE = 200  # samples per frame = 12.5 ms at 16 kHz (Chung et al. 2015, section 5.1); frames do not
#                   overlap. New models' default (ModelConfig.x_dim); a loaded model's own is model.config.x_dim
FRAME_SECONDS = FRAME_SIZE / SAMPLE_RATE  # 0.0125 s
WINDOW_FRAMES = 40  # frames per training/evaluation sequence = 0.5 s (the paper's Table 1 unit)
WINDOW_SIZE = WINDOW_FRAMES * FRAME_SIZE  # 8000 samples
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".sph", ".nist", ".g722"}
#                   file names `load_audio` is asked to read when a folder is scanned (corpus, evaluate --data)

AudioSource = str | os.PathLike | bytes | bytearray | BinaryIO


class AudioError(ValueError):
    """Audio that cannot be analysed; the message is a sentence meant for the person who gave it."""


class AudioWarning(UserWarning):
    """Audio that was read, but not as its file declares (a WAV cut short); the message is a sentence."""


def resample(waveform: np.ndarray, sample_rate: float) -> np.ndarray:
    """A mono waveform [N] at `sample_rate` Hz as float32 [M] at 16 kHz (soxr, HQ; unchanged at 16 kHz).

    Raises AudioError for a rate that is not a positive finite number. Source: soxr.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) \
            or not math.isfinite(sample_rate) or sample_rate <= 0:
        raise AudioError(f"The sample rate must be a positive number of Hz, got {sample_rate!r}.")
    x = np.asarray(waveform, dtype=np.float32)
    if sample_rate == SAMPLE_RATE:
        return x
    import soxr

    return soxr.resample(x, float(sample_rate), SAMPLE_RATE, quality="HQ").astype(np.float32)


def _wav_declared_frames(data: bytes) -> int | None:
    """Frames (samples per channel) the data chunk of a RIFF/WAVE header declares; None for other formats,
    RF64, or a streamed WAV whose header leaves the length open (0 or 0xFFFFFFFF bytes). `data` is the file
    or its beginning (the header)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk == b"fmt " and pos + 22 <= len(data):
            block_align = int.from_bytes(data[pos + 20:pos + 22], "little")  # bytes per frame, all channels
        elif chunk == b"data":
            return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def check_wav_length(header: bytes, held: int, rate: int, what: str,
                     on_warning: Callable[[str], None] | None = None) -> None:
    """Warn when a WAV file's header (`header`: the file or its first bytes) declares more samples than
    the `held` that were read from it at `rate` Hz; the sentence names both numbers and the file (`what`).
    Reported through `on_warning`, or `warnings.warn(sentence, AudioWarning)` by default."""
    declared = _wav_declared_frames(header)
    if declared is None or declared <= held:
        return
    message = (f"{what} is cut short: its header declares {declared} samples ({declared / rate:.2f} s) but "
               f"the file holds {held} ({held / rate:.2f} s); reading the {held} there are.")
    if on_warning is None:
        warnings.warn(message, AudioWarning, stacklevel=3)
    else:
        on_warning(message)


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{Path(source).name}'"
    name = getattr(source, "name", None)
    return f"'{name}'" if isinstance(name, str) else "the uploaded audio"


def load_audio(source: AudioSource, max_seconds: float | None = None,
               on_warning: Callable[[str], None] | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file to a mono float32 waveform at 16 kHz (the contract in this module's docstring).

    Args:
        source: a path, raw bytes, or a binary file-like object (such as a Streamlit upload) holding
            any format libsndfile reads (wav, flac, ogg/vorbis, mp3, aiff, ...), any sample rate,
            channel count and sample format (8/16/24/32-bit int, float).
        max_seconds: if given, longer audio is refused (before resampling).
        on_warning: called with a sentence when the file is read only in part: a WAV whose header
            declares more samples than the file holds is read as far as it goes, and the sentence names
            both numbers. Default: `warnings.warn(sentence, AudioWarning)`.

    Returns:
        (waveform, 16000): waveform float32 [N] in [-1, 1] for integer formats, channels averaged,
        resampled with soxr (HQ) when the file's rate is not 16 kHz.

    Raises:
        AudioError (a ValueError): the file is empty, not audio soundfile can decode, truncated to no
        samples, holds NaN or infinite samples, is shorter than one 200-sample frame (12.5 ms) after
        resampling, or is longer than `max_seconds`.

    Source: soundfile (libsndfile) for decoding, soxr for resampling.
    """
    import soundfile as sf

    what = _describe(source)
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"There is no audio file at {path}.")
        data = path.read_bytes()
    else:
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read()
    if len(data) == 0:
        raise AudioError(f"{what} is empty (0 bytes); please choose an audio file.")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            if max_seconds is not None and f.frames > max_seconds * rate:
                raise AudioError(
                    f"{what} is {f.frames / rate:.0f} s long; the limit here is {max_seconds:.0f} s. "
                    "Please trim it and try again."
                )
            x = f.read(dtype="float32", always_2d=True)  # [N, C]
    except AudioError:
        raise
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError/TypeError for bad input
        reason = re.sub(r"^Error opening <[^>]*>: ", "", str(e)).strip().rstrip(".")
        raise AudioError(
            f"{what} could not be read as audio ({reason}). Supported formats are those of libsndfile: "
            "WAV, FLAC, OGG/Vorbis, MP3 and more."
        ) from None
    if x.shape[0] == 0:
        raise AudioError(f"{what} contains no audio samples (the file may be truncated).")
    check_wav_length(data, x.shape[0], rate, what, on_warning)
    if not np.isfinite(x).all():
        raise AudioError(f"{what} contains NaN or infinite sample values, so it cannot be analysed.")
    x = resample(x.mean(axis=1, dtype=np.float32), rate)  # [N] downmix to mono, then 16 kHz
    if x.shape[0] < FRAME_SIZE:
        raise AudioError(
            f"{what} is {1000 * x.shape[0] / SAMPLE_RATE:.1f} ms long; at least one frame of "
            f"{FRAME_SIZE} samples ({1000 * FRAME_SECONDS:.1f} ms) is needed."
        )
    return np.ascontiguousarray(x, dtype=np.float32), SAMPLE_RATE


def frame(waveform: np.ndarray, frame_size: int = FRAME_SIZE) -> np.ndarray:
    """Cut a waveform into non-overlapping frames (hop = frame size), dropping the incomplete tail.

    waveform [..., N] -> frames [..., T, frame_size] with T = N // frame_size (a view when possible).
    """
    n = (waveform.shape[-1] // frame_size) * frame_size
    return waveform[..., :n].reshape(*waveform.shape[:-1], n // frame_size, frame_size)


def frame_rms_dbfs(waveform: np.ndarray, frame_size: int = FRAME_SIZE, floor_db: float = -200.0) -> np.ndarray:
    """Loudness of each non-overlapping frame (as `frame`): 20 log10(RMS) in dBFS, full scale = 1.0.

    waveform [..., N] float in [-1, 1] -> float64 [..., N // frame_size]. RMS = sqrt(mean of x^2) over the
    frame's samples, so a constant 0.1 reads -20 dBFS and a full-scale sine -3.01 dBFS (no +3 dB sine
    correction). Digital silence reads `floor_db`. Computed in float64 (an int16 corpus's quietest frames are
    near -90 dBFS).
    """
    x = frame(np.asarray(waveform, dtype=np.float64), frame_size)  # [..., T, F]
    rms = np.sqrt(np.mean(x * x, axis=-1))  # [..., T]
    with np.errstate(divide="ignore"):
        return np.maximum(20.0 * np.log10(rms), floor_db)


def unframe(frames: np.ndarray) -> np.ndarray:
    """Inverse of `frame`: [..., T, F] -> [..., T * F]."""
    return frames.reshape(*frames.shape[:-2], frames.shape[-2] * frames.shape[-1])


def frame_times(n_frames: int, frame_size: int = FRAME_SIZE) -> np.ndarray:
    """Centre of each frame in seconds: [T] float64, (t + 0.5) * frame_size / 16 kHz (12.5 ms frames by default)."""
    return (np.arange(n_frames) + 0.5) * (frame_size / SAMPLE_RATE)


def to_wav_bytes(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode a float waveform [N] as 16-bit PCM WAV bytes (values clipped to [-1, 1]).

    Loudness is kept as is (no normalisation), so a clip plays as loud as it was recorded.
    """
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(waveform, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def read_audio_blocks(path: str | os.PathLike, block_seconds: float = 30.0,
                      on_warning: Callable[[str], None] | None = None) -> tuple[int, int, Iterator[np.ndarray]]:
    """Decode one audio file in blocks, for files of any length in bounded memory.

    Returns (the file's sample rate in Hz, its length in samples at 16 kHz (estimated from the header:
    libsndfile's frame count times 16000 / rate), an iterator of float32 [n] mono blocks at 16 kHz):
    channels averaged, resampled with a streaming soxr resampler (HQ) when the rate is not 16 kHz, the
    same values as `load_audio` for 16 kHz files. The file is opened here (a missing or unreadable file
    fails now) and read while iterating; about `block_seconds` of source audio is in memory at a time.

    Raises AudioError (when opened, or while iterating) for a missing file, a file that is not readable
    audio, or one that holds NaN/infinite samples. A WAV cut short (its header declares more samples than
    the file holds) is read as far as it goes, reported as `load_audio` does (`on_warning`, else an
    `AudioWarning`). Source: soundfile (libsndfile), soxr.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"There is no audio file at {path}.")
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # LibsndfileError and friends
        reason = re.sub(r"^Error opening <[^>]*>: ", "", str(e)).strip().rstrip(".")
        raise AudioError(f"'{path.name}' could not be read as audio ({reason}). Supported formats are those of "
                         "libsndfile: WAV, FLAC, OGG/Vorbis, MP3 and more.") from None
    rate = f.samplerate
    n_out = f.frames if rate == SAMPLE_RATE else int(round(f.frames * SAMPLE_RATE / rate))
    with open(path, "rb") as head:  # a WAV cut short is read as far as it goes, with a warning
        check_wav_length(head.read(1 << 16), f.frames, rate, f"'{path.name}'", on_warning)

    def blocks() -> Iterator[np.ndarray]:
        with f:
            resampler = None
            if rate != SAMPLE_RATE:
                import soxr

                resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            size = max(1, int(block_seconds * rate))
            while True:
                try:
                    x = f.read(size, dtype="float32", always_2d=True)  # [n, C]
                except Exception as e:
                    raise AudioError(f"'{path.name}' could not be decoded ({e}).") from None
                last = x.shape[0] < size
                # [n] downmix to mono: the channel mean, as a matrix product (ten times faster than
                # x.mean(axis=1) over a short axis, and the same numbers for one or two channels)
                x = x[:, 0] if x.shape[1] == 1 else x @ np.full(x.shape[1], 1.0 / x.shape[1], np.float32)
                if not np.isfinite(x).all():
                    raise AudioError(f"'{path.name}' contains NaN or infinite sample values, so it cannot be analysed.")
                if resampler is not None:
                    x = resampler.resample_chunk(x, last=last)
                if x.size:
                    yield np.ascontiguousarray(x, dtype=np.float32)
                if last:
                    return

    return rate, n_out, blocks()
