"""How much like speech are a model's generated samples? (Chung et al. 2015, Figure 3; issue 12.)

    python benchmarks/generation_quality.py --corpus /work/data/allison [--checkpoints assets/checkpoints/*.safetensors]
        [--n 12] [--seconds 5] [--outputs sample mean] [--no-pyin] [--json out.json]

For each checkpoint and output mode (`sample`: x_t drawn from p(x_t | z_t, h_{t-1}), the paper's samples;
`mean`: the decoder's mean, no output noise), `--n` samples of `--seconds` (seeds 0..n-1), and for the
controls the same amount of audio:
  real (train)     n random chunks of the TRAIN split (same speaker, not the reference): what a perfect
                   model would score;
  real (half)      the valid split's first half against its second half (the reference's own spread);
  white noise      at the valid split's RMS;
  envelope noise   white noise shaped by a real speech envelope (each 12.5 ms frame's RMS of a train chunk):
                   the right loudness contour with no spectrum or pitch;
three numbers:
  FD           Frechet distance between Gaussian fits (mean, full 80 x 80 covariance) of 80-band log-mel
               frames (absolute dB, 25 ms window, 12.5 ms hop) of the set and of the VALIDATION split
               (never the test split); lower is closer. FD = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).
  flatness     median spectral flatness (geometric / arithmetic mean of the power spectrum; 1 = white
               noise, ~0 = tonal) over non-silent frames (RMS within 40 dB of the valid split's 95th
               percentile frame RMS);
  voiced       share of non-silent frames that librosa.pyin calls voiced (f0 60-400 Hz).
Timings and machine load go in the JSON. pyin is slow (seconds per 5 s clip): --no-pyin skips it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrnn import SAMPLE_RATE, generate, load_checkpoint  # noqa: E402
from vrnn.audio import FRAME_SIZE  # noqa: E402
from vrnn.data import Corpus  # noqa: E402

N_MELS = 80
SILENCE_DB = 40.0  # frames more than this below the valid split's loud frames are silence


def log_mel_db(y: np.ndarray) -> np.ndarray:
    """[T, 80] absolute log-mel power (dB re 1, floor 1e-10), 400-sample window, 200-sample hop."""
    import librosa

    s = librosa.feature.melspectrogram(y=y.astype(np.float32), sr=SAMPLE_RATE, n_fft=2 * FRAME_SIZE,
                                       hop_length=FRAME_SIZE, n_mels=N_MELS, center=True)
    return librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=None).T


def frame_rms_db(y: np.ndarray) -> np.ndarray:
    import librosa

    r = librosa.feature.rms(y=y, frame_length=2 * FRAME_SIZE, hop_length=FRAME_SIZE, center=True)[0]
    return 20 * np.log10(np.maximum(r, 1e-10))


def gaussian_fit(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return frames.mean(0), np.cov(frames, rowvar=False)


def frechet(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """|m1 - m2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)) (the FID formula, Heusel et al. 2017)."""
    from scipy import linalg

    (m1, s1), (m2, s2) = a, b
    covmean = linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def describe(clips: list[np.ndarray], ref_fit, loud_db: float, pyin: bool) -> dict:
    """FD to the reference fit, median flatness and voiced share over non-silent frames of `clips`."""
    import librosa

    mel = np.concatenate([log_mel_db(y) for y in clips])
    flat, voiced, n_loud = [], 0, 0
    for y in clips:
        loud = frame_rms_db(y) > loud_db - SILENCE_DB
        f = librosa.feature.spectral_flatness(y=y, n_fft=2 * FRAME_SIZE, hop_length=FRAME_SIZE, center=True)[0]
        flat.append(f[loud[:len(f)]])
        if pyin:
            _, vflag, _ = librosa.pyin(y, fmin=60, fmax=400, sr=SAMPLE_RATE, frame_length=1024, hop_length=FRAME_SIZE)
            m = min(len(vflag), len(loud))
            voiced += int(np.sum(vflag[:m] & loud[:m]))
            n_loud += int(np.sum(loud[:m]))
    flat = np.concatenate(flat)
    return {"fd": frechet(gaussian_fit(mel), ref_fit), "flatness": float(np.median(flat)) if len(flat) else None,
            "voiced": voiced / n_loud if pyin and n_loud else None, "loud_frames": int(len(flat)),
            "frames": int(len(mel))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus folder (its valid split is the reference)")
    p.add_argument("--checkpoints", nargs="*", default=sorted(glob.glob(str(ROOT / "assets/checkpoints/*.safetensors"))))
    p.add_argument("--n", type=int, default=12, help="samples per model and mode")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each sample")
    p.add_argument("--outputs", nargs="+", choices=("sample", "mean"), default=["sample", "mean"])
    p.add_argument("--no-pyin", action="store_true", help="skip the voiced share (pyin is slow)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    pyin = not args.no_pyin
    corpus = Corpus.open(args.corpus)
    valid = corpus.audio("valid").astype(np.float32) / 32768.0
    train = corpus.audio("train")
    N = int(args.seconds * SAMPLE_RATE)
    rng = np.random.default_rng(0)
    loud_db = float(np.percentile(frame_rms_db(valid), 95))
    ref_fit = gaussian_fit(log_mel_db(valid))
    real = [train[o:o + N].astype(np.float32) / 32768.0 for o in rng.integers(0, len(train) - N, args.n)]
    rms = float(np.sqrt(np.mean(valid ** 2)))
    white = [rms * rng.standard_normal(N).astype(np.float32) for _ in range(args.n)]
    env_noise = []
    for y in real:
        env = np.repeat(np.sqrt(np.mean(y[: len(y) // FRAME_SIZE * FRAME_SIZE].reshape(-1, FRAME_SIZE) ** 2, 1)), FRAME_SIZE)
        env_noise.append((env * rng.standard_normal(len(env))).astype(np.float32))
    half = len(valid) // 2
    results = {"machine": {"load_avg": os.getloadavg(), "threads": __import__("torch").get_num_threads()},
               "settings": vars(args) | {"loud_threshold_db": loud_db - SILENCE_DB}, "controls": {}, "models": {}}
    t0 = time.perf_counter()
    results["controls"]["real speech (train chunks)"] = describe(real, ref_fit, loud_db, pyin)
    a_fit, b_fit = gaussian_fit(log_mel_db(valid[:half])), gaussian_fit(log_mel_db(valid[half:]))
    results["controls"]["real speech (valid half vs half)"] = {"fd": frechet(a_fit, b_fit)}
    results["controls"]["white noise"] = describe(white, ref_fit, loud_db, pyin)
    results["controls"]["speech-envelope noise"] = describe(env_noise, ref_fit, loud_db, pyin)
    print(f"controls done in {time.perf_counter() - t0:.0f} s", flush=True)
    for path in args.checkpoints:
        model = load_checkpoint(path)
        name = Path(path).stem
        for mode in args.outputs:
            t = time.perf_counter()
            clips = [generate(model, seconds=args.seconds, seed=s, output_noise=mode == "sample") for s in range(args.n)]
            gen_s = time.perf_counter() - t
            r = describe([np.clip(c, -1, 1) for c in clips], ref_fit, loud_db, pyin)
            r["generation_s"] = round(gen_s, 1)
            results["models"][f"{name} ({mode})"] = r
            print(f"{name} ({mode}): {r}", flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def table(results: dict) -> str:
    rows = ["| set | FD to valid (log-mel) | flatness (median, non-silent) | voiced share (pyin) |", "|---|---|---|---|"]
    for group in ("controls", "models"):
        for k, r in results[group].items():
            fl, v = r.get("flatness"), r.get("voiced")
            rows.append(f"| {k} | {r['fd']:.0f} | {'-' if fl is None else f'{fl:.3f}'} | "
                        f"{'-' if v is None else f'{100 * v:.0f} %'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
