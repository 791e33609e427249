"""Speed of the VRNN engine's fast path (vrnn/fused.py) beside the readable model (vrnn/model.py), same weights.

    python benchmarks/engine.py [--presets cpu paper] [--json out.json] [--repeats N] [--threads N]

For each preset (vrnn.preset), one model family (vrnn-gauss unless --families), random weights
(seed 0) unless --checkpoint:
  1. analysis of a 30 s clip, batch 1 (`vrnn.analyze`, posterior-mean path): wall time, real-time factor;
  2. training: frames/s for batch 64 x 40 frames, forward + backward + gradient clipping + Adam step;
  3. generation of 10 s (`vrnn.generate`): wall time, real-time factor;
  4. peak resident memory of a process that loads the checkpoint and analyses a 10 minute clip
     (a fresh subprocess per path; its VmHWM, see peak_rss_mb).
Each beside the readable `vrnn.VRNN` (the "reference" columns and JSON keys: the model as the paper
writes it; before issue 11 a straightforward VRNN with every network inside the time loop), with its
outputs checked equal: KL_t, delta_t, log p(x_t | .) and ELBO within 1e-4 of their scale for
the same noise; the training loss and gradient norm; the generated audio for the same seed.
Also the matmul FLOPs per frame counted from the config, the achieved GFLOP/s, and the machine's
measured peaks: a large sgemm (GFLOP/s, what training can reach) and a matrix-vector product over as
many bytes as the engine's time loop streams per step (GB/s, what batch-1 analysis can reach).

Timings: one warm-up run, then --repeats runs of the engine and the reference, alternated; the median
wall time is reported (all runs are in the JSON). The paper preset (LSTM 4000) is big for a CPU: there
it runs shorter inputs, a smaller training batch and fewer repeats, and the table says so.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vrnn import FRAME_SIZE, SAMPLE_RATE, VRNN, FusedVRNN, ModelConfig, TrainConfig, analyze, generate, preset
from vrnn.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]

RTOL = 1e-4  # outputs equal within 1e-4 of their scale
CLIP_NORM = TrainConfig().clip_norm  # the one home of the authors' clip norm


@dataclass
class Plan:
    """Input sizes of one preset's measurements (seconds of 16 kHz audio; training batch x frames)."""

    analysis_s: float = 30.0
    train_batch: int = 64
    train_frames: int = 40
    generation_s: float = 10.0
    memory_s: float = 600.0
    repeats: int = 5
    note: str = ""
    bf16_batch_slow: int = 4  # the bf16 training row's batch on a CPU without native bf16
    skip_bf16: bool = False


def plan_for(name: str, repeats: int, device: str) -> Plan:
    if name == "paper" and device == "cpu":
        return Plan(analysis_s=3.0, train_batch=8, generation_s=1.0, memory_s=10.0, repeats=min(repeats, 2),
                    note="paper preset on CPU: 3 s analysis, batch 8 x 40 training, 1 s generation, 10 s clip for "
                         "memory, 2 repeats (the issue's sizes take minutes per run here)")
    if name == "tiny":
        return Plan(analysis_s=3.0, generation_s=1.0, memory_s=10.0, repeats=repeats, note="tiny preset (smoke test)")
    return Plan(repeats=repeats)


# -- inputs --
def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Deterministic voiced-like test signal at 16 kHz: harmonics of a gliding f0, syllable-rate
    envelope with pauses, a little noise. float32 [N] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f = 140.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    return (0.15 * x * env + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def make_model(name: str, family: str, checkpoint: str | None, device: str) -> VRNN:
    if checkpoint:
        return load_checkpoint(checkpoint, device=device)
    torch.manual_seed(0)
    return VRNN(preset(name, family), x_mean=0.0, x_std=0.1).to(device).eval()


# -- FLOPs and bytes, counted from the config --
def _mlp_macs(in_dim: int, sizes: tuple[int, ...]) -> int:
    macs = 0
    for size in sizes:
        macs += in_dim * size
        in_dim = size
    return macs


def count_per_frame(c: ModelConfig) -> dict:
    """Multiply-adds per frame of each network (matrix products only; elementwise work is < 1%).

    Returns MACs per network, FLOPs (2 per MAC) per frame for the teacher-forced pass, for training
    (forward + backward ~ 3 x forward) and for generation (no encoder), and the bytes of weights that
    one step of each path's time loop reads (float32): both keep only the encoder, phi_z and the LSTM in
    their loop, but the engine moves the x-part of the encoder's and the LSTM's input products out of it.
    """
    X, H, Z = c.x_dim, c.h_dim, c.z_dim
    dx = c.phi_x[-1]
    dz = c.phi_z[-1] if c.has_latent else 0
    out = c.n_components * (1 + 2 * X) if c.gmm_output else 2 * X
    m = {"phi_x": _mlp_macs(X, c.phi_x), "lstm": 4 * H * (dx + dz + H),
         "decoder": _mlp_macs(dz + H, c.decoder) + c.decoder[-1] * out}
    if c.has_latent:
        m["phi_z"] = _mlp_macs(Z, c.phi_z)
        m["encoder"] = _mlp_macs(dx + H, c.encoder) + c.encoder[-1] * 2 * Z
        if c.learned_prior:
            m["prior"] = _mlp_macs(H, c.prior) + c.prior[-1] * 2 * Z
    forward = sum(m.values())
    gen = forward - m.get("encoder", 0)
    if c.has_latent:  # in the engine's loop: encoder (h part of layer 1 and the rest), phi_z, LSTM (h and z parts)
        loop = H * c.encoder[0] + m["encoder"] - (dx + H) * c.encoder[0] + m["phi_z"] + 4 * H * (H + dz)
        readable_loop = m["encoder"] + m["phi_z"] + m["lstm"]  # VRNN.step: the whole encoder, phi_z, the LSTM cell
    else:  # the library LSTM: its recurrent weights; the readable model's nn.LSTMCell: all of it
        loop, readable_loop = 4 * H * H, m["lstm"]
    return {"macs": m, "flops_analysis": 2 * forward, "flops_training": 6 * forward, "flops_generation": 2 * gen,
            "loop_bytes_engine": 4 * loop, "loop_bytes_reference": 4 * readable_loop}


# -- machine peaks --
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sgemm_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 [n, n] x [n, n] product (median)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def gemv_bandwidth(device: torch.device, n_bytes: int, repeats: int = 200) -> float:
    """GB/s of a batch-1 product [1, K] x [K, N] over a float32 matrix of about n_bytes: the rate at
    which a time loop can stream its weights from cache or memory. The best of a plain product (MKL
    runs it on one thread) and one split into a column block per thread (a batched product); median
    of blocks of calls."""
    k, parts = 512, max(1, torch.get_num_threads()) if device.type == "cpu" else 1
    n = max(parts, n_bytes // (4 * k) // parts * parts)
    w, h = torch.randn(k, n, device=device), torch.randn(1, k, device=device)
    wb = w.view(k, parts, n // parts).transpose(0, 1).contiguous()  # [P, K, N / P]
    best = 0.0
    with torch.inference_mode():
        for fn in (lambda: h @ w, lambda: torch.bmm(h.expand(parts, 1, k), wb)):
            for _ in range(10):
                fn()
            times = []
            for _ in range(5):
                _sync(device)
                t = time.perf_counter()
                for _ in range(repeats // 5):
                    fn()
                _sync(device)
                times.append((time.perf_counter() - t) / (repeats // 5))
            best = max(best, 4 * k * n / statistics.median(times) / 1e9)
    return best


# -- timing --
def timed_pair(fast, slow, repeats: int) -> tuple[dict, dict, object, object]:
    """Warm up both, then alternate `repeats` runs of each. Returns timing dicts and the last results."""
    r_fast, r_slow = fast(), slow()
    wall = {"engine": [], "reference": []}
    cpu = {"engine": [], "reference": []}
    for _ in range(repeats):
        for key, fn in (("engine", fast), ("reference", slow)):
            t, c = time.perf_counter(), time.process_time()
            res = fn()
            wall[key].append(time.perf_counter() - t)
            cpu[key].append(time.process_time() - c)
            if key == "engine":
                r_fast = res
            else:
                r_slow = res
    out = [{"median_s": statistics.median(wall[k]), "wall_s": wall[k], "cpu_s": cpu[k]} for k in ("engine", "reference")]
    return out[0], out[1], r_fast, r_slow


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (0 when both are empty or zero)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max()) if a.size else 0.0


def analysis_errors(a, b) -> dict[str, float]:
    """`rel_err` of log p(x_t | .), the ELBO and (for VRNNs) KL_t and delta_t: `vrnn.analyze`'s result `a`
    (the fast path) against `b` (`analyze(..., fast=False)`, the readable model)."""
    errs = {"log_px": rel_err(a.log_px, b.log_px), "elbo": rel_err(a.elbo, b.elbo)}
    if a.kl is not None:
        errs.update(kl=rel_err(a.kl, b.kl), delta=rel_err(a.delta, b.delta))
    return errs


# -- the four measurements --
def bench_analysis(model: VRNN, ref: VRNN, plan: Plan, counts: dict) -> dict:
    wave = speechlike(plan.analysis_s)
    e, r, a, b = timed_pair(lambda: analyze(model, wave), lambda: analyze(ref, wave, fast=False), plan.repeats)
    errs = analysis_errors(a, b)
    frames = len(a.times)
    for d in (e, r):
        d["rtf"] = d["median_s"] / plan.analysis_s
        d["gflops"] = counts["flops_analysis"] * frames / d["median_s"] / 1e9
    return {"seconds": plan.analysis_s, "frames": frames, "engine": e, "reference": r, "errors": errs,
            "equal": all(v <= RTOL for v in errs.values())}


def bench_training(model: VRNN, ref: VRNN, plan: Plan, counts: dict) -> dict:
    B, T, X = plan.train_batch, plan.train_frames, model.config.x_dim
    device = model.x_mean.device
    wave = speechlike(B * T * X / SAMPLE_RATE + 1.0, seed=1)
    x = model.normalize(torch.from_numpy(wave[:B * T * X]).view(B, T, X).to(device))
    noise = torch.randn(B, T, model.config.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    model.train()
    ref.train()

    def loss_and_grads(m: torch.nn.Module, dtype: torch.dtype) -> tuple[float, np.ndarray]:
        m.zero_grad(set_to_none=True)
        loss = -m(x.to(dtype), noise=noise.to(dtype)).elbo.mean()
        loss.backward()
        params = dict(m.named_parameters())
        grads = torch.cat([params[k].grad.reshape(-1) for k in sorted(params)])
        m.zero_grad(set_to_none=True)
        return loss.item(), grads.double().cpu().numpy()

    # Same weights, same noise: the loss and every gradient. In float64 the two paths must be the same
    # function (1e-9); the float32 gradients are compared with the float64 ones for each path.
    fast = FusedVRNN(model)  # what `train` runs
    l32, g32 = loss_and_grads(fast, torch.float32)
    rl32, rg32 = loss_and_grads(ref, torch.float32)
    m64 = copy.deepcopy(model).double()
    l64, g64 = loss_and_grads(FusedVRNN(m64), torch.float64)
    rl64, rg64 = loss_and_grads(m64, torch.float64)
    del m64
    errs = {"loss": rel_err(l32, rl32), "grads_f64": rel_err(g64, rg64)}
    accuracy = {"engine_f32_grads_vs_f64": rel_err(g32, g64), "reference_f32_grads_vs_f64": rel_err(rg32, g64),
                "engine_vs_reference_f32_grads": rel_err(g32, rg32)}
    equal = errs["loss"] <= RTOL and errs["grads_f64"] <= 1e-9
    opts = {id(m): torch.optim.Adam(m.parameters(), lr=3e-4) for m in (fast, ref)}

    def step(m):
        opt = opts[id(m)]
        loss = -m(x, noise=noise).elbo.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), CLIP_NORM)
        opt.step()
        _sync(device)
        return loss.item()

    state = {k: v.clone() for k, v in model.state_dict().items()}
    e, r, _, _ = timed_pair(lambda: step(fast), lambda: step(ref), plan.repeats)
    for d in (e, r):
        d["frames_per_s"] = B * T / d["median_s"]
        d["gflops"] = counts["flops_training"] * B * T / d["median_s"] / 1e9
    bf16 = None if plan.skip_bf16 else bench_bf16_training(model, state, x, noise, plan, counts)
    model.load_state_dict(state)  # undo the Adam steps for the measurements that follow
    ref.load_state_dict(state)
    model.eval()
    ref.eval()
    return {"batch": B, "frames": T, "engine": e, "reference": r, "bf16": bf16, "errors": errs,
            "float32_accuracy": accuracy, "equal": equal}


def bench_bf16_training(model: VRNN, state: dict, x: torch.Tensor, noise: torch.Tensor, plan: Plan, counts: dict) -> dict:
    """`train`'s own step (vrnn.train._train_step) in bf16 and in fp32 on the fast path, and the readable
    model in fp32 and in bf16 (plain autocast over the readable model), alternated round by round in this
    process (same weights at the start of each round).

    On a CPU without native bf16 (no avx512_bf16/AMX: `resolve_precision("auto")` gives fp32) bf16 products
    are emulated and a step of the full batch takes minutes, so there the four are timed on
    plan.bf16_batch_slow windows, once, and the row says so."""
    from vrnn.train import _train_step, resolve_precision

    native = resolve_precision("auto", x.device) == "bf16"
    b = x.shape[0] if native else min(x.shape[0], plan.bf16_batch_slow)
    repeats = plan.repeats if native else 1
    xb, nb = x[:b], noise[:b]
    ref = copy.deepcopy(model)
    runs = {"engine_bf16": (FusedVRNN(model), model, "bf16"), "engine_fp32": (FusedVRNN(model), model, "fp32"),
            "reference_fp32": (ref, ref, "fp32"), "reference_bf16": (ref, ref, "bf16")}
    times = {k: [] for k in runs}
    for _ in range(repeats + (1 if native else 0)):  # the first round warms up where there are repeats
        for k, (net, m, prec) in runs.items():
            m.load_state_dict(state)
            opt = torch.optim.Adam(m.parameters(), lr=3e-4)
            cfg = TrainConfig(precision=prec, batch_size=b)
            t = time.perf_counter()
            _train_step(net, m, opt, xb, nb, cfg, False, prec)
            _sync(x.device)
            times[k].append(time.perf_counter() - t)
    if native:
        times = {k: v[1:] for k, v in times.items()}
    out = {k: {"median_s": statistics.median(v), "wall_s": v, "frames_per_s": b * x.shape[1] / statistics.median(v),
               "gflops": counts["flops_training"] * b * x.shape[1] / statistics.median(v) / 1e9} for k, v in times.items()}
    ratio = [r / e for r, e in zip(times["reference_fp32"], times["engine_bf16"], strict=True)]
    return {"batch": b, "native_bf16": native, "repeats": repeats, **out, "speedup_vs_reference": ratio,
            "note": "" if native else f"no native bf16 on this CPU: batch {b}, one round (bf16 products are emulated)"}


def bench_generation(model: VRNN, ref: VRNN, plan: Plan, counts: dict) -> dict:
    s = plan.generation_s
    e, r, a, b = timed_pair(lambda: generate(model, s, seed=0), lambda: generate(ref, s, seed=0, fast=False),
                            plan.repeats)
    err = rel_err(a, b)
    frames = len(a) // FRAME_SIZE
    for d in (e, r):
        d["rtf"] = d["median_s"] / s
        d["gflops"] = counts["flops_generation"] * frames / d["median_s"] / 1e9
    return {"seconds": s, "frames": frames, "engine": e, "reference": r, "errors": {"audio": err}, "equal": err <= RTOL}


BUSY_LOOP = "import time\nt = time.time() + 600\nwhile time.time() < t: pass"  # one core, at most 10 min


def bench_under_load(model: VRNN, plan: Plan, repeats: int) -> dict:
    """Batch-1 analysis (plan.analysis_s) and generation (plan.generation_s) with 1 and with 2 threads, with
    one core kept busy by another process (a Python busy loop started and stopped here) and without it,
    alternated in this process: round after round, busy and quiet, 1 and 2 threads. "quiet" means only
    that this benchmark adds no load: other work on the machine still runs (the load average is kept)."""
    wave = speechlike(plan.analysis_s)
    runs = {f"{what}_{th}t": (lambda th=th, what=what: analyze(model, wave, threads=th) if what == "analysis"
                              else generate(model, plan.generation_s, seed=0, threads=th))
            for what in ("analysis", "generation") for th in (1, 2)}
    times = {f"{k}_{mode}": [] for k in runs for mode in ("busy", "quiet")}
    loads = []
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(repeats):
        for mode in ("busy", "quiet"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if mode == "busy" else None
            try:
                time.sleep(0.3 if busy else 0.0)
                loads.append(os.getloadavg()[0])
                for k, fn in runs.items():
                    t = time.perf_counter()
                    fn()
                    times[f"{k}_{mode}"].append(time.perf_counter() - t)
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
    out = {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "wall_s": v} for k, v in times.items()}
    return {"analysis_s": plan.analysis_s, "generation_s": plan.generation_s, "repeats": repeats,
            "load_average_1min": loads, "default_threads": __import__("vrnn.fused", fromlist=["x"]).default_threads(),
            **out}


def bench_memory(checkpoint: Path, plan: Plan, threads: int, device: str) -> dict:
    """Peak RSS of a fresh process per path: load the checkpoint, make the clip, analyse it."""
    res = {"seconds": plan.memory_s}
    for path in ("engine", "reference"):
        cmd = [sys.executable, __file__, "--memory-child", path, str(checkpoint), str(plan.memory_s),
               "--threads", str(threads), "--device", device]
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res[path] = json.loads(out.stdout.strip().splitlines()[-1])
        res[path]["wall_s"] = time.perf_counter() - t
    return res


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
    except (OSError, StopIteration):
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM of /proc/self/status, the high-water mark of
    this process's own address space. (ru_maxrss is the fallback only: Linux carries a parent's peak
    into a child started with fork/vfork + exec, so a child of a large parent reports the parent's peak.)"""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start a new high-water mark at the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(path: str, checkpoint: str, seconds: float, device: str) -> None:
    model = load_checkpoint(checkpoint, device=device)
    run = lambda w: analyze(model, w, fast=path == "engine")  # noqa: E731
    wave = speechlike(seconds)  # its synthesis peaks higher than the clip itself: start the count after it
    reset = reset_peak_rss()
    before = _status_mb("VmRSS") if reset else peak_rss_mb()
    t = time.perf_counter()
    run(wave)
    elapsed = time.perf_counter() - t
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "before_mb": before, "analysis_s": elapsed,
                      "peak_reset_after_setup": reset}))


# -- report --
def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores kept busy by other processes over `seconds` (from /proc/stat; None where unavailable)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    try:
        (t0, i0), _ = sample(), time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError):
        return None
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(1, t1 - t0))


def machine_info(threads: int) -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    busy = subprocess.run(["pgrep", "-f", "vrnn train"], capture_output=True, text=True).stdout.split()
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "load_average": os.getloadavg(), "busy_cores": busy_cores(),
            "training_jobs_running": len(busy), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def targets(name: str, p: dict) -> dict:
    """Issue 5's absolute targets (2 CPU cores, cpu preset, issue sizes): met (True/False) per row; None
    elsewhere. (Its speed-up targets were against a straightforward VRNN with every network inside the
    time loop, which the readable model no longer is: the ratio column is now fast path vs readable model.)"""
    if name.split("/")[0] != "cpu" or p["plan"]["note"]:
        return {}
    a, g, mem = p["analysis"], p["generation"], p.get("memory")
    met = {"analysis": a["engine"]["median_s"] < 0.5, "generation": g["engine"]["rtf"] <= 0.02}
    if mem and mem["seconds"] >= 600:
        met["memory"] = mem["engine"]["peak_rss_mb"] < 1000
    return met


def table(results: dict) -> str:
    """The results as a plain-text table (also stored in the JSON under "table")."""
    m = results["machine"]
    others = [v for v in (m.get("busy_cores"), m.get("busy_cores_at_end")) if v is not None]
    busy = m["training_jobs_running"] or m.get("training_jobs_running_at_end") or any(v > 0.2 for v in others)
    lines = [f"VRNN fast path (vrnn.fused) vs readable model (vrnn.model); {m['cpu']} ({m['cores']} cores), {m['threads']} threads, "
             f"torch {m['torch']}" + (f", {m['cuda']}" if m["cuda"] else ""),
             "cores busy with other work before/after: " + "/".join(f"{v:.1f}" for v in others)
             + f"; `vrnn train` jobs running at start/end: {m['training_jobs_running']}/"
             f"{m.get('training_jobs_running_at_end', '?')}" + ("  << OTHER WORK RAN: timings distorted" if busy else "")]
    fmt = lambda d: f"{d['median_s']:.3f} s, RTF {d['rtf']:.4f}, {d['gflops']:.1f} GF/s"  # noqa: E731
    tf = lambda d: f"{d['frames_per_s']:.0f} frames/s, {d['gflops']:.0f} GF/s"  # noqa: E731
    mf = lambda d: f"{d['peak_rss_mb']:.0f} MB ({d['peak_rss_mb'] - d['before_mb']:+.0f} MB)"  # noqa: E731
    errs = lambda d: ("equal" if d["equal"] else "NOT EQUAL") + " (" + ", ".join(  # noqa: E731
        f"{k} {v:.0e}" for k, v in d["errors"].items()) + ")"
    for name, p in results["presets"].items():
        c, pk, met = p["counts"], p["peaks"], targets(name, p)
        lines += ["", f"[{name}] {p['family']}: {c['flops_analysis'] / 1e6:.2f} MFLOP/frame teacher-forced, "
                      f"{c['flops_generation'] / 1e6:.2f} generating, {c['flops_training'] / 1e6:.1f} training; "
                      f"time-loop weights per step: engine {c['loop_bytes_engine'] / 2**20:.1f} MiB, "
                      f"reference {c['loop_bytes_reference'] / 2**20:.1f} MiB",
                  f"  machine peaks: sgemm {pk['sgemm_gflops']:.0f} GFLOP/s; batch-1 matrix-vector product over "
                  f"{c['loop_bytes_engine'] / 2**20:.1f} MiB {pk['gemv_gbps']:.0f} GB/s, i.e. >= "
                  f"{c['loop_bytes_engine'] / pk['gemv_gbps'] / 1e3:.0f} us per analysis step"]
        if p["plan"]["note"]:
            lines.append(f"  NOTE: {p['plan']['note']}")
        lines.append(f"  {'measurement':30} {'engine':>36} {'reference':>36} {'ratio':>7}  {'target':24} outputs")
        rows = []
        a, t, g, mem = p["analysis"], p["training"], p["generation"], p.get("memory")
        rows.append(("analysis", f"analysis {a['seconds']:g} s, batch 1", fmt(a["engine"]), fmt(a["reference"]),
                     a["reference"]["median_s"] / a["engine"]["median_s"], "<0.5 s", errs(a)))
        rows.append(("training", f"training {t['batch']}x{t['frames']} fwd+bwd+Adam", tf(t["engine"]), tf(t["reference"]),
                     t["reference"]["median_s"] / t["engine"]["median_s"], "-", errs(t)))
        bf = t.get("bf16")
        if bf:
            sp = bf["speedup_vs_reference"]
            rows.append(("training_bf16", f"training {bf['batch']}x{t['frames']} bf16 (engine)", tf(bf["engine_bf16"]),
                         tf(bf["reference_fp32"]), statistics.median(sp), ">=3.5x ref",
                         f"range {min(sp):.2f}-{max(sp):.2f}x; engine fp32 {tf(bf['engine_fp32'])}"
                         + (f"; readable bf16 {tf(bf['reference_bf16'])}" if "reference_bf16" in bf else "")
                         + (f"; NOTE {bf['note']}" if bf["note"] else "")))
        rows.append(("generation", f"generation {g['seconds']:g} s", fmt(g["engine"]), fmt(g["reference"]),
                     g["reference"]["median_s"] / g["engine"]["median_s"], "RTF<=0.02", errs(g)))
        if mem:
            clip = f"{mem['seconds'] / 60:g} min" if mem["seconds"] >= 60 else f"{mem['seconds']:g} s"
            rows.append(("memory", f"peak RSS, {clip} clip", mf(mem["engine"]), mf(mem["reference"]),
                         mem["reference"]["peak_rss_mb"] / mem["engine"]["peak_rss_mb"], "<1 GB",
                         f"analysis took {mem['engine']['analysis_s']:.1f} s vs {mem['reference']['analysis_s']:.1f} s"))
        for key, label, e, r, x, target, out in rows:
            verdict = {True: " MET", False: " MISSED"}.get(met.get(key), "")
            lines.append(f"  {label:30} {e:>36} {r:>36} {x:6.2f}x  {target + verdict:24} {out}")
        ul = p.get("under_load")
        if ul:
            la = ul["load_average_1min"]
            lines.append(f"  under load (batch 1; busy = one core running a Python busy loop; load average "
                         f"{min(la):.1f}-{max(la):.1f}; median [min-max] of {ul['repeats']}):")
            for what, secs in (("analysis", ul["analysis_s"]), ("generation", ul["generation_s"])):
                cells = [f"{mode} {th}t {ul[f'{what}_{th}t_{mode}']['median_s']:.2f} "
                         f"[{ul[f'{what}_{th}t_{mode}']['min_s']:.2f}-{ul[f'{what}_{th}t_{mode}']['max_s']:.2f}] s"
                         for mode in ("busy", "quiet") for th in (1, 2)]
                lines.append(f"    {what} {secs:g} s: " + "; ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["cpu", "paper"], help="vrnn.preset names to measure")
    ap.add_argument("--families", nargs="+", default=["vrnn-gauss"], help="model families to measure")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"), help="where to write the results")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each measurement (after one warm-up)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--checkpoint", default=None, help="measure this checkpoint instead of random weights")
    ap.add_argument("--skip-memory", action="store_true", help="leave out the 10 minute memory measurement")
    ap.add_argument("--skip-load", action="store_true", help="leave out the batch-1 rows under load (CPU)")
    ap.add_argument("--skip-bf16", action="store_true", help="leave out the bf16 training row")
    ap.add_argument("--memory-child", nargs=3, metavar=("PATH", "CHECKPOINT", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        path, ckpt, seconds = args.memory_child
        memory_child(path, ckpt, float(seconds), args.device)
        return {}
    device = torch.device(args.device)
    results = {"machine": machine_info(args.threads), "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            for family in args.families:
                key = name if len(args.families) == 1 else f"{name}/{family}"
                plan = plan_for(name, args.repeats, device.type)
                plan.skip_bf16 = args.skip_bf16
                model = make_model(name, family, args.checkpoint, args.device)
                ref = copy.deepcopy(model)  # the readable model, with its own optimiser state in bench_training
                counts = count_per_frame(model.config)
                print(f"[{key}] measuring ...", file=sys.stderr)
                p = {"family": model.config.family, "config": model.config.to_dict(), "plan": plan.__dict__,
                     "counts": counts, "peaks": {"sgemm_gflops": sgemm_peak(device),
                                                 "gemv_gbps": gemv_bandwidth(device, counts["loop_bytes_engine"])}}
                p["analysis"] = bench_analysis(model, ref, plan, counts)
                p["training"] = bench_training(model, ref, plan, counts)
                p["generation"] = bench_generation(model, ref, plan, counts)
                if device.type == "cpu" and not args.skip_load:
                    p["under_load"] = bench_under_load(model, plan, plan.repeats)
                if not args.skip_memory:
                    ckpt = Path(tmp) / f"{name}-{family}.safetensors"
                    save_checkpoint(ckpt, model, {"steps": 0, "data": "benchmark"})
                    p["memory"] = bench_memory(ckpt, plan, args.threads, args.device)
                results["presets"][key] = p
                del model, ref
    end = machine_info(args.threads)
    results["machine"]["training_jobs_running_at_end"] = end["training_jobs_running"]
    results["machine"]["busy_cores_at_end"] = end["busy_cores"]
    report = table(results)
    print(report)
    results["table"] = report
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.json}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
