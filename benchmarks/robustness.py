"""Issue 15's reproductions 3-7, re-run through the CLI: for each case the message, the exit code and the time.

    python benchmarks/robustness.py                       # reproductions 3, 4, 5, 7 (about a minute)
    python benchmarks/robustness.py --long 3600 10800     # and 6: analyze of 1 h and 3 h synthetic clips
                                                          # (peak RSS and CPU time; minutes each)

Every hostile file is made here, in a temporary folder, from a bundled checkpoint with the safetensors
library. Each command runs as `python -m vrnn ...` in a subprocess from the repository root; the table
printed at the end has one row per case: reproduction, case, exit code, wall seconds, and the last line of
stderr (the message a person sees). Reproduction 6 runs under /usr/bin/time -v (Linux) for the peak
resident set size and the CPU time. The app's parts of 3 and 7 (uploads) are tests in tests/test_app.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the in-process measurement imports this checkout's vrnn
CHECKPOINT = ROOT / "assets" / "checkpoints" / "vrnn-gauss.safetensors"
GMM = ROOT / "assets" / "checkpoints" / "vrnn-gmm.safetensors"
CLIP = ROOT / "assets" / "examples" / "allison-vm-nobodyavail.wav"


def parts(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def hostile(path: Path, source: Path = CHECKPOINT, tensors=None, **meta_changes) -> Path:
    """A copy of `source` with metadata keys replaced (JSON-encoded unless strings) and/or other tensors."""
    meta, t = parts(source)
    for k, v in meta_changes.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    save_file(t if tensors is None else tensors(t), str(path), metadata=meta)
    return path


def run(argv: list[str], timeout: float = 600) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "vrnn", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    return {"exit": p.returncode, "seconds": time.perf_counter() - t0, "message": lines[-1] if lines else "",
            "traceback": "Traceback" in p.stderr, "stdout": p.stdout}


def cases(tmp: Path) -> list[tuple[str, str, list[str]]]:
    meta, _ = parts(CHECKPOINT)
    config = json.loads(meta["config"])
    norm = json.loads(meta["normalization"])
    clip, ck = str(CLIP), str(CHECKPOINT)
    out = []

    def analyze(n: str, what: str, path: Path) -> None:
        out.append((n, what, ["analyze", str(path), clip]))

    # 3: denial of service, a ~1.3 KB file whose config claims an 8000-unit LSTM
    small = lambda t: {k: v for k, v in t.items() if v.numel() <= 1}  # noqa: E731  (x_mean, x_std)
    huge = hostile(tmp / "huge.safetensors", tensors=small, config={**config, "h_dim": 8000})
    analyze("3", f"h_dim 8000 in a {huge.stat().st_size} B file", huge)
    # 4: silent wrong results
    def one_nan(t):
        t = dict(t)
        w = t["rnn.weight_hh"].clone()
        w[0, 0] = float("nan")
        t["rnn.weight_hh"] = w
        return t

    analyze("4", "one NaN weight", hostile(tmp / "nan.safetensors", tensors=one_nan))
    analyze("4", "x_std 0", hostile(tmp / "std0.safetensors", normalization={**norm, "std": 0.0}))
    analyze("4", "x_std NaN", hostile(tmp / "stdnan.safetensors", normalization='{"mean": 0.0, "std": NaN}'))
    analyze("4", "int64 tensors", hostile(tmp / "int64.safetensors",
                                          tensors=lambda t: {k: v.to(torch.int64) for k, v in t.items()}))
    analyze("4", "negative sigma floor", hostile(tmp / "sigma.safetensors", config={**config, "sigma_min": -0.1}))
    gmm_config = json.loads(parts(GMM)[0]["config"])
    analyze("4", "GMM with 0 components", hostile(tmp / "gmm0.safetensors", GMM, config={**gmm_config, "n_components": 0}))
    out.append(("4", "evaluate --batch-size -1", ["evaluate", ck, "--data", str(CLIP.parent), "--batch-size", "-1"]))
    # 5: tracebacks
    analyze("5", "normalization without mean", hostile(tmp / "nomean.safetensors", normalization={"std": 1.0}))
    analyze("5", "normalization a list", hostile(tmp / "normlist.safetensors", normalization=[0.0, 1.0]))
    analyze("5", "normalization None", hostile(tmp / "normnone.safetensors", normalization=None))
    analyze("5", "h_dim a string", hostile(tmp / "hstr.safetensors", config={**config, "h_dim": "512"}))
    analyze("5", "training with string numbers", hostile(tmp / "trainstr.safetensors",
                                                         training={"steps": "2000", "epochs": "3"}))
    for s in ("inf", "1e30", "nan"):
        out.append(("5", f"generate --seconds {s}", ["generate", ck, "--seconds", s, "--out", str(tmp / "g.wav")]))
    out.append(("5", "generate --out a folder", ["generate", ck, "--out", str(tmp)]))
    out.append(("5", "generate --out without extension", ["generate", ck, "--out", str(tmp / "sample")]))
    corpus = tmp / "corpus"
    out.append(("5", "(setup: corpus of the example clips)", ["corpus", "--from", str(CLIP.parent), "--out",
                                                              str(corpus), "--quiet"]))
    out.append(("5", "train --batch-size 0", ["train", "--data", str(corpus), "--out", str(tmp / "run0"), "--preset",
                                              "tiny", "--steps", "1", "--batch-size", "0", "--quiet"]))
    if not torch.cuda.is_available():
        out.append(("5", "train --device cuda (no CUDA)", ["train", "--data", str(corpus), "--out", str(tmp / "run1"),
                                                          "--preset", "tiny", "--device", "cuda", "--quiet"]))
    # 7: unclear messages
    (tmp / "empty").mkdir()
    out.append(("7", "evaluate --data missing folder", ["evaluate", ck, "--data", str(tmp / "missing")]))
    out.append(("7", "evaluate --data empty folder", ["evaluate", ck, "--data", str(tmp / "empty")]))
    out.append(("7", "evaluate --samples 0", ["evaluate", ck, "--data", str(CLIP.parent), "--samples", "0"]))
    out.append(("7", "train --steps 0", ["train", "--data", str(corpus), "--out", str(tmp / "run2"), "--preset", "tiny",
                                         "--steps", "0", "--quiet"]))
    return out


def refusal_in_process(path: Path) -> dict:
    """Reproduction 3 without the interpreter's start-up: the time and the memory `load_checkpoint` takes to
    refuse the file, in this process (peak RSS before and after, from getrusage)."""
    import resource

    from vrnn import CheckpointError, load_checkpoint

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    try:
        load_checkpoint(path)
        message = "loaded?!"
    except CheckpointError as e:
        message = str(e)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_growth_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0,
            "message": message}


def synthetic_clip(path: Path, seconds: float) -> Path:
    """A speech-like 16 kHz int16 WAV written a minute at a time."""
    rng = np.random.default_rng(0)
    block = 16_000 * 60
    with sf.SoundFile(str(path), "w", 16_000, 1, subtype="PCM_16") as f:
        for start in range(0, int(seconds * 16_000), block):
            n = min(block, int(seconds * 16_000) - start)
            t = (start + np.arange(n)) / 16_000
            env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
            f.write((0.1 * env * (np.sin(2 * np.pi * (150 + 50 * np.sin(2 * np.pi * 0.7 * t)) * t)
                                  + 0.3 * rng.standard_normal(n))).astype(np.float32))
    return path


def long_analysis(tmp: Path, seconds: float) -> dict:
    clip = synthetic_clip(tmp / f"{seconds:g}s.wav", seconds)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "vrnn", "analyze", str(CHECKPOINT), str(clip),
           "--csv", str(tmp / "long.csv"), "--quiet"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    field = lambda name: re.search(rf"{name}: (.+)", p.stderr).group(1)  # noqa: E731
    clip.unlink()
    return {"exit": p.returncode, "peak_rss_mb": int(field("Maximum resident set size \\(kbytes\\)")) / 1024,
            "user_s": float(field("User time \\(seconds\\)")), "sys_s": float(field("System time \\(seconds\\)")),
            "wall": field("Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)"),
            "summary": p.stdout.splitlines()[0] if p.stdout else p.stderr[-500:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--long", type=float, nargs="*", default=[], help="also analyze synthetic clips of these lengths (s)")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = run(["--help"])
        print(f"   python -m vrnn --help (start-up alone, for scale)  exit {base['exit']}  {base['seconds']:6.2f} s")
        rows.append({"reproduction": "-", "case": "start-up (--help)", **{k: v for k, v in base.items() if k != "stdout"}})
        for n, what, argv in cases(tmp):
            r = run(argv)
            rows.append({"reproduction": n, "case": what, **{k: v for k, v in r.items() if k != "stdout"}})
            print(f"{n}  {what:38s} exit {r['exit']}  {r['seconds']:6.2f} s  {'TRACEBACK ' if r['traceback'] else ''}"
                  f"{r['message'][:200]}", flush=True)
        for i in range(3):
            r = refusal_in_process(tmp / "huge.safetensors")
            rows.append({"reproduction": "3", "case": f"load_checkpoint(huge) in process, run {i + 1}", **r})
            print(f"3  load_checkpoint of the {(tmp / 'huge.safetensors').stat().st_size} B h_dim-8000 file, in process: "
                  f"refused in {1000 * r['seconds']:.1f} ms, peak RSS +{r['peak_rss_growth_mb']:.1f} MB", flush=True)
        for seconds in args.long:
            r = long_analysis(tmp, seconds)
            rows.append({"reproduction": "6", "case": f"analyze {seconds / 3600:g} h", **r})
            print(f"6  analyze {seconds / 3600:g} h clip: exit {r['exit']}, peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"CPU {r['user_s']:.0f} s user + {r['sys_s']:.0f} s sys, wall {r['wall']}; {r['summary']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
