"""The training loop as a function: Adam, global gradient-norm clipping before the step, 0.5 s
windows, validation ELBO after each epoch (and before the first update of an --init-from run), best/last
checkpoints, JSON-lines metrics, resume.

Runs single-process on CPU or one GPU, or data-parallel under `torchrun` (`vrnn.distrib`:
DistributedDataParallel, NCCL on GPUs, gloo on CPU). Everything random depends only on (seed, step)
or (seed, epoch), so a resumed run and a run split over W processes follow the same path as one
uninterrupted process with the same global batch.

Faults: checkpoints are written atomically (`save_checkpoint`); last.safetensors is refreshed at
every epoch end, every `checkpoint_every` steps and at least every `checkpoint_minutes`, so a run
killed at any moment loses only the steps since then, and `--resume` continues from that exact
step and batch; a non-finite loss or gradient skips the step; SIGINT/SIGTERM stop after the
current step and save.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from . import distrib
from .audio import SAMPLE_RATE, frame
from .checkpoint import read_checkpoint, remove_stale_temporaries, restore_optimizer, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import Corpus, CorpusError, WindowBatches, chunk_starts, ignore_signals_in_worker, read_windows
from .fused import FusedVRNN
from .model import VRNN
from .runfolder import claim_run_folder

METRICS_EVERY = 10  # steps between training rows in metrics.jsonl (plus every skipped step)
VALID_BATCH = 64  # sequences per validation forward pass (as `evaluate.score_sequences`)
VALID_FALLBACK = 64  # training windows scored when a corpus has no valid split long enough


class TrainingError(RuntimeError):
    """Training cannot go on; the message names the step and the likely cause."""


@dataclass
class RunState:
    """Where a run stands. Every checkpoint records it (training.state) and --resume restores it."""

    step: int = 0  # optimiser updates done (skipped ones included)
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch done
    best_valid_elbo: float = -math.inf  # nats per 0.5 s sequence
    best_step: int = 0
    wall_time_s: float = 0.0  # time in training steps (validation and checkpoints not counted)
    skipped_steps: int = 0  # steps whose loss or gradient was not finite


@dataclass
class StepStats:
    """One step's results, averaged over the global batch (all processes)."""

    loss: float  # negative ELBO, nats per sequence
    kl: float  # KL summed over the sequence's steps, nats
    grad_norm: float  # before clipping
    finite: bool  # False: the step was skipped
    stop: bool  # some process was asked to stop (SIGINT/SIGTERM)


def train(data: str | os.PathLike, out: str | os.PathLike, model_config: ModelConfig, cfg: TrainConfig,
          resume: bool = False, device: str | None = None, progress: bool = True, log=print,
          force: bool = False) -> dict:
    """Train a model on a corpus folder (see `vrnn.data`).

    Args:
        data: corpus folder (`python -m vrnn corpus`).
        out: run folder; receives best.safetensors, last.safetensors, metrics.jsonl and, every
            `cfg.snapshot_every` steps, snapshots/step-NNNNNN.safetensors. Under torchrun every rank
            must see it (a shared filesystem): rank 0 alone writes, every rank reads it on resume.
        model_config, cfg: model shape and training options; `cfg.batch_size` is the global batch,
            split evenly over the processes, and `cfg.lr` is used as given (not scaled by world size).
        resume: continue from out/last.safetensors (model, Adam moments, step, epoch and batch within
            it); rows of metrics.jsonl past that step (logged after the checkpoint by a run that was
            killed) are dropped first.
        force: without `resume`, start over in a folder that holds a run (its files are moved into
            out/replaced-DATE-TIME/) or write into a non-empty folder that holds none; with `resume`,
            continue on a corpus other than the run's. See `vrnn.runfolder`: without it, both refuse.
        device: "cpu", "cuda", ...; default CUDA when present (cuda:LOCAL_RANK under torchrun).

    metrics.jsonl rows: every METRICS_EVERY steps and every skipped step, {"step", "epoch",
    "train_elbo_per_sequence", "train_elbo_per_frame", "kl_per_frame", "grad_norm", "finite",
    "skipped_steps", "wall_time_s", "audio_seconds_seen"} (averages over the global batch);
    after every epoch, at the end (and at step 0 of an --init-from run) {"step", "epoch", "valid_elbo_per_sequence",
    "valid_elbo_per_frame", "best", "wall_time_s"}.

    Returns a summary dict (steps, epochs, wall time, best validation ELBO per sequence, skipped
    steps, the signal that stopped it or None).
    Raises TrainingError on a long streak of non-finite losses (naming the step), or when ranks
    disagree about the run folder; RunFolderError (before any work) when `out` holds a run and
    neither `resume` nor `force` is given, holds other files, is locked by another training, or
    `resume` meets another corpus; CorpusError for bad data; CheckpointError when a checkpoint
    cannot be written (disk full), leaving the previous one intact.
    """
    with claim_run_folder(out, data, resume=resume, force=force, is_main=distrib.is_main(), log=log):
        return _train(Path(data), Path(out), model_config, cfg, resume, device, progress, log)


def _train(data: Path, out: Path, model_config: ModelConfig, cfg: TrainConfig, resume: bool, device: str | None,
           progress: bool, log) -> dict:
    """`train`'s body, run while this process holds the run folder: set-up, then the loop."""
    from tqdm import tqdm

    rank, world = distrib.rank(), distrib.world_size()
    if cfg.batch_size % world:
        raise TrainingError(f"The global batch {cfg.batch_size} does not divide over {world} processes; "
                            f"choose --batch-size as a multiple of {world}.")
    device = distrib.pick_device(device)
    owns_group = distrib.init(device)
    corpus = Corpus.open(data)
    torch.manual_seed(cfg.seed)
    model = VRNN(model_config, *corpus.normalization).to(device)
    if cfg.sigma_bias:
        init_sigma_bias(model, cfg.sigma_bias)
    init = init_weights(model, cfg.init_from, corpus) if cfg.init_from else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    window = cfg.window_frames * model_config.x_dim  # samples per training sequence
    precision = resolve_precision(cfg.precision, device)
    files = RunFiles(out, {"data": {"corpus": corpus.meta["source"]["name"],
                                    "train_seconds": corpus.meta["splits"]["train"]["seconds"],
                                    "corpus_fingerprint": corpus.meta["fingerprint"]},
                           "train_config": asdict(cfg), "precision": precision, "world_size": world,
                           **({"init_from": init} if init else {})})
    state = _resume(files, model, opt, resume, device, log) if resume else RunState()
    net = distrib.wrap(FusedVRNN(model), device)  # the fast path (the same numbers as model.forward)
    valid_audio, valid_starts = _validation_windows(corpus, window)
    if distrib.is_main():
        log(f"{model_config.family}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters on "
            f"{device}; global batch {cfg.batch_size} x {cfg.window_frames} frames ({cfg.batch_size // world} per "
            f"process x {world} process(es)), lr {cfg.lr}, {precision}; {files.record['data']['train_seconds'] / 60:.1f} min "
            "of training audio." + (f" Weights from {init['path']} ({init['steps']} steps before this run)."
                                    if init else ""))

    def end_of_epoch_or_run() -> None:
        v = _validate(model, valid_audio, valid_starts, window, cfg.seed, rank, world, distrib.is_distributed())
        improved = v > state.best_valid_elbo
        if improved:
            state.best_valid_elbo, state.best_step = v, state.step
        files.log_metrics(state, {"valid_elbo_per_sequence": v, "valid_elbo_per_frame": v / cfg.window_frames,
                                  "best": improved})
        if improved:
            files.save(files.best, model, state, valid_elbo=v)
        files.save_last(model, state, opt, valid_elbo=v)

    if init and state.step == 0:
        end_of_epoch_or_run()  # the starting weights are a candidate too: best-by-validation over the whole history
    bar = tqdm(total=cfg.steps, initial=state.step, desc="train", unit="step",
               disable=not (progress and distrib.is_main()))
    bad_streak = 0
    carried = None  # (h, c) of the previous window of each row (cfg.carry_state)
    model.train()
    with StopSignals() as stop, bar:
        while state.step < cfg.steps:
            batches = WindowBatches(data, "train", cfg.batch_size, state.epoch, cfg.seed, window=window,
                                    rank=rank, world_size=world, start_batch=state.batch_in_epoch,
                                    consecutive=max(1, cfg.carry_state))
            for wave in _loader(batches, cfg.num_workers):
                t0 = time.perf_counter()
                x = model.normalize(wave.to(device).view(wave.shape[0], -1, model_config.x_dim))  # [b, T, X]
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, state.step)
                if not cfg.carry_state or state.batch_in_epoch % cfg.carry_state == 0:
                    carried = None  # a new group of consecutive windows (a resumed run also starts from zero)
                s, carried = _train_step(net, model, opt, x,
                                         _step_noise(cfg, state.step, x.shape[1], model_config, device), cfg,
                                         stop.signal is not None, precision, carried)
                state.step += 1
                state.batch_in_epoch += 1
                state.wall_time_s += time.perf_counter() - t0
                state.skipped_steps += not s.finite
                bad_streak = 0 if s.finite else bad_streak + 1
                bar.update(1)
                bar.set_postfix(elbo_frame=f"{-s.loss / cfg.window_frames:.1f}", kl_frame=f"{s.kl / cfg.window_frames:.2f}")
                if state.step % METRICS_EVERY == 0 or not s.finite:
                    files.log_metrics(state, _train_row(s, state, cfg, window))
                if bad_streak >= cfg.max_bad_steps:
                    raise _nonfinite_streak_error(state.step, bad_streak, files.last)
                if cfg.snapshot_every and state.step % cfg.snapshot_every == 0:
                    files.save(files.snapshot(state.step), model, state)
                if s.stop:
                    stop.signal = stop.signal or "a signal to another process"
                    break
                if state.step >= cfg.steps:
                    break
                if state.batch_in_epoch < batches.n_batches and files.last_is_due(state, cfg):
                    files.save_last(model, state, opt)
            if stop.signal is not None:
                # Saved with the epoch's position as is: a run stopped at an epoch end validates that
                # epoch when resumed (its loader is then empty), as the uninterrupted run would have.
                break
            if state.batch_in_epoch >= batches.n_batches:
                state.epoch += 1
                state.batch_in_epoch = 0
                end_of_epoch_or_run()
            elif state.step >= cfg.steps:
                end_of_epoch_or_run()
    if stop.signal is not None:
        files.save_last(model, state, opt)
        if distrib.is_main():
            log(f"Stopped by {stop.signal} at step {state.step}; saved {files.last}. Resume with --resume.")
    distrib.close(owns_group)
    return {"steps": state.step, "epochs": state.epoch, "wall_time_s": round(state.wall_time_s, 1),
            "best_valid_elbo_per_sequence": state.best_valid_elbo, "best_step": state.best_step,
            "skipped_steps": state.skipped_steps, "interrupted": stop.signal}


# -- one step ---------------------------------------------------------------------------------------

def _step_noise(cfg: TrainConfig, step: int, n_frames: int, config: ModelConfig, device: str) -> torch.Tensor:
    """eps [b, T, Z] for this process's rows of step `step`'s global batch, drawn from (seed, step) alone,
    so a resumed or data-parallel run draws the same numbers as one uninterrupted process."""
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
    noise = torch.randn(cfg.batch_size, n_frames, config.z_dim, generator=gen, device=device)  # [B, T, Z]
    return noise[distrib.rank()::distrib.world_size()]


def _train_step(net: torch.nn.Module, model: VRNN, opt: torch.optim.Optimizer, x: torch.Tensor,
                noise: torch.Tensor, cfg: TrainConfig, stop_requested: bool, precision: str = "fp32",
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[StepStats, tuple[torch.Tensor, torch.Tensor] | None]:
    """Negative ELBO (eq. (11)) of x [b, T, X], backward, clip the global gradient norm, then Adam's step,
    unless the loss or gradient is not finite on some process (then every process skips the step).

    precision "bf16": the forward pass runs under torch.autocast (matrix products in bf16; the
    log-densities, KL and the loss in fp32, see `vrnn.distributions`); the weights, their gradients and
    Adam's moments stay fp32. cfg.loss_scale "frame": the gradient is that of the per-frame mean divided
    by the global batch, before the clip at cfg.clip_norm (the authors' cost and GradientClipping).
    cfg.max_norm: every weight row clipped after the step (`clip_weight_rows_`). state: (h, c) to start
    from (detached: no gradient crosses windows). Returns the step's StepStats and the final LSTM state
    (detached) when cfg.carry_state, else None.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        output = net(x, noise=noise, state=state)
    loss = -output.elbo.mean()  # nats per 0.5 s sequence (fp32)
    objective = loss if cfg.loss_scale == "sequence" else loss / (x.shape[1] * cfg.batch_size)
    opt.zero_grad(set_to_none=True)
    objective.backward()  # under DDP: gradients averaged over the processes = the global batch's
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)  # before the step
    # One all-reduce carries the statistics and whether any process was asked to stop, so that every
    # process skips, logs and stops at the same step.
    stats = torch.stack([loss.detach(), output.kl.sum(-1).mean().detach(), grad_norm.detach(),
                         torch.tensor(float(stop_requested), device=x.device)])
    distrib.all_reduce(stats)
    stats[:3] /= distrib.world_size()
    finite = bool(torch.isfinite(stats[:3]).all())
    if finite:
        opt.step()
        if cfg.max_norm:
            clip_weight_rows_(model, cfg.max_norm)
    loss_v, kl_v, grad_v = (float(v) for v in stats[:3])
    final = None
    if cfg.carry_state and finite and output.state is not None:
        final = tuple(t.detach() for t in output.state)
    return StepStats(loss_v, kl_v, grad_v, finite, bool(stats[3] > 0)), final


# -- the recipe (TrainConfig; docs/ablation.md) -----------------------------------------------------

def resolve_precision(precision: str, device: str | torch.device, cpu_flags: set[str] | None = None) -> str:
    """"fp32" or "bf16" for TrainConfig.precision on `device`. "auto": bf16 on a CUDA device that supports
    it, and on a CPU whose flags (/proc/cpuinfo, or `cpu_flags`) include avx512_bf16 or AMX (amx_bf16,
    amx_tile): elsewhere bf16 products are emulated and far slower than fp32 (measured on an AVX2-only
    AMD EPYC: a 64 x 512 x 2304 product ran at 0.35-0.40 GFLOP/s in bf16 against 10-20 in fp32)."""
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if dev.type == "cpu":
        flags = cpu_flags if cpu_flags is not None else _cpu_flags()
        return "bf16" if flags & {"avx512_bf16", "amx_bf16", "amx_tile"} else "fp32"
    return "fp32"


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of update `step` (0-based): cfg.lr, or with cfg.lr_schedule "cosine" a linear
    warm-up over cfg.warmup_steps to the peak cfg.lr, then a cosine decay to cfg.lr / 10 at cfg.steps.
    A function of the step alone, so a resumed run follows the same schedule."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * progress)))


def init_sigma_bias(model: VRNN, value: float) -> None:
    """Set the bias of every sigma output (prior, encoder and decoder heads) to `value`, so each sigma
    starts near softplus(value) + sigma_min (authors: 0.6 -> 1.04; zero biases give 0.69)."""
    c = model.config
    with torch.no_grad():
        for name in ("prior_head", "encoder_head"):
            head = getattr(model, name, None)
            if head is not None:
                head.bias[head.bias.shape[0] // 2:] = value  # (mu, raw sigma) halves
        b = model.decoder_head.bias
        if c.gmm_output:  # logits [K], then K x (mu [X], raw sigma [X])
            b[c.n_components:].view(c.n_components, 2 * c.x_dim)[:, c.x_dim:] = value
        else:
            b[c.x_dim:] = value


@torch.no_grad()
def init_weights(model: VRNN, path: str | os.PathLike, corpus: Corpus | None = None) -> dict:
    """Copy the weights and normalisation of checkpoint `path` into `model` (`--init-from`: a new run
    that continues a finished one; Adam and the schedule start afresh).

    The checkpoint is read with `read_checkpoint` (safetensors, validated before allocation; no pickle).
    Its normalisation replaces the corpus's, since the weights were learned on it. Returns the record
    kept in every checkpoint of the new run: {"path", "steps", "total_steps", "valid_elbo_per_sequence",
    "corpus_fingerprint", "same_corpus"}; "total_steps" counts the updates behind the weights across a chain of
    continuations (the source's steps plus its own init_from's total_steps, or steps where an older record has
    no total). Raises TrainingError when the checkpoint holds another family
    or other sizes (naming both), CheckpointError (a ValueError) for a bad file.
    """
    info, tensors = read_checkpoint(path)
    if info["config"] != model.config.to_dict():
        theirs, ours = info["config"], model.config.to_dict()
        diff = ", ".join(f"{k} {theirs.get(k)!r} (this run: {ours.get(k)!r})" for k in ours if theirs.get(k) != ours.get(k))
        raise TrainingError(f"--init-from {path}: the checkpoint is another model: {diff}. Choose the "
                            "checkpoint's --family and --preset.")
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})  # x_mean, x_std too
    training = info.get("training", {})
    fingerprint = training.get("data", {}).get("corpus_fingerprint")
    return {"path": str(path), "steps": int(training.get("steps", 0)), "total_steps": updates_behind(training),
            "valid_elbo_per_sequence": training.get("valid_elbo_per_sequence"),
            "corpus_fingerprint": fingerprint,
            "same_corpus": corpus is not None and fingerprint == corpus.meta["fingerprint"]}


def updates_behind(training: dict) -> int:
    """The updates behind a checkpoint's weights, from its training record: its own `steps` plus those behind
    the weights it started from (`init_from.total_steps`, or `init_from.steps` in a record written before
    total_steps was kept), so a chain of `--init-from` continuations adds up."""
    earlier = training.get("init_from") or {}
    return int(training.get("steps", 0)) + int(earlier.get("total_steps", earlier.get("steps", 0)) or 0)


@torch.no_grad()
def clip_weight_rows_(model: VRNN, max_norm: float) -> None:
    """Scale every row of every feed-forward weight and of the LSTM's input weight (one unit's incoming
    weights, torch's [out, in] layout) down to L2 norm `max_norm` where it is longer: w * min(n, max) /
    (n + 1e-7), as jych/cle's WeightNorm on Theano's [in, out] columns. The recurrent W_hh is left alone."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)] + [model.rnn.weight_ih]
    for w in weights:
        norms = w.norm(dim=1, keepdim=True)
        w.mul_(norms.clamp(max=max_norm) / (norms + 1e-7))


def _train_row(s: StepStats, state: RunState, cfg: TrainConfig, window: int) -> dict:
    """The metrics row of a training step (see `train`)."""
    return {"train_elbo_per_sequence": -s.loss, "train_elbo_per_frame": -s.loss / cfg.window_frames,
            "kl_per_frame": s.kl / cfg.window_frames, "grad_norm": s.grad_norm, "finite": s.finite,
            "skipped_steps": state.skipped_steps, "audio_seconds_seen": state.step * cfg.batch_size * window / SAMPLE_RATE}


def _nonfinite_streak_error(step: int, streak: int, last: Path) -> TrainingError:
    return TrainingError(
        f"Step {step}: the loss or gradient was not finite for {streak} steps in a row (steps "
        f"{step - streak + 1}-{step}; none of them changed the weights). Likely causes: a learning rate too "
        "high for this model, or audio with extreme values in the corpus. "
        + (f"The last good checkpoint is {last}; resume from it with a lower --lr, or check the corpus."
           if last.is_file() else "No checkpoint was written yet."))


def _loader(batches: WindowBatches, num_workers: int) -> torch.utils.data.DataLoader:
    """The epoch's batches, read in `num_workers` worker processes (0: in this one)."""
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=num_workers,
                                       persistent_workers=False,
                                       worker_init_fn=ignore_signals_in_worker if num_workers else None)


class StopSignals:
    """While entered, SIGINT and SIGTERM set `signal` (their name) instead of stopping the process, so
    the loop can finish its step and save. Outside the main thread (no signal handling there) it does
    nothing."""

    def __init__(self):
        self.signal: str | None = None
        self._old: dict = {}

    def __enter__(self) -> StopSignals:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._on_signal)
        except ValueError:  # not the main thread
            self.__exit__()
        return self

    def _on_signal(self, signum, _frame) -> None:
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}


# -- validation -------------------------------------------------------------------------------------

def _validation_windows(corpus: Corpus, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(audio, window starts) of the valid split; VALID_FALLBACK training windows for a corpus too small
    for a valid split. Raises CorpusError when no file is one window long."""
    split, starts = "valid", chunk_starts(corpus, "valid", window)
    if len(starts) == 0:
        split, starts = "train", chunk_starts(corpus, "train", window)[:VALID_FALLBACK]
    if len(starts) == 0:
        raise CorpusError(f"No file in {corpus.root} is {window / SAMPLE_RATE:.1f} s or longer, so there is nothing "
                          "to validate on; add longer recordings.")
    return corpus.audio(split), starts


@torch.no_grad()
def _validate(model: VRNN, audio: np.ndarray, starts: np.ndarray, window: int, seed: int, rank: int, world: int,
              distributed: bool) -> float:
    """Mean ELBO (nats per sequence) over the chunks at `starts`, sharded over the ranks.

    Batch j (of VALID_BATCH sequences) is scored by rank j % world; every rank draws the noise of
    every batch from one generator seeded with `seed`, in order, so the result is the same for any
    number of processes and equals `evaluate.score_sequences(model, chunks, samples=1, seed=seed)`.
    Chunks are read from the memory map batch by batch, so a large valid split never sits in memory.
    """
    device = model.x_mean.device
    gen = torch.Generator(device=device).manual_seed(seed)
    c = model.config
    T = window // c.x_dim
    fast = FusedVRNN(model)  # batch VALID_BATCH: plain products (threads=1)
    total = 0.0
    was_training = model.training
    model.eval()
    for j, i0 in enumerate(range(0, len(starts), VALID_BATCH)):
        offs = starts[i0: i0 + VALID_BATCH]
        noise = torch.randn(len(offs), T, c.z_dim, generator=gen, device=device) if c.has_latent else None
        if j % world != rank:
            continue
        x = model.normalize(torch.from_numpy(frame(read_windows(audio, offs, window), c.x_dim)).to(device))  # [b, T, X]
        total += fast(x, sample=True, noise=noise).elbo.sum().item()
    model.train(was_training)
    sums = torch.tensor([total], dtype=torch.float64, device=device)
    if distributed:
        distrib.all_reduce(sums)
    return float(sums[0]) / len(starts)


# -- the run folder's files -------------------------------------------------------------------------

class RunFiles:
    """The files of a run folder: checkpoints (rank 0 alone writes) and metrics.jsonl.

    record: what every checkpoint records about the run besides its RunState (data, options, world size).
    """

    def __init__(self, out: Path, record: dict):
        self.out, self.record = out, record
        self.last, self.best, self.metrics = out / "last.safetensors", out / "best.safetensors", out / "metrics.jsonl"
        self.last_saved = time.monotonic()
        if distrib.is_main():
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out)

    def snapshot(self, step: int) -> Path:
        return self.out / "snapshots" / f"step-{step:06d}.safetensors"

    def save(self, path: Path, model: VRNN, state: RunState, opt: torch.optim.Optimizer | None = None,
             valid_elbo: float | None = None) -> None:
        """Write a checkpoint of `model` (with the Adam moments if `opt`), recording the run and its state;
        its valid_elbo_per_sequence is `valid_elbo`, else the best so far."""
        if distrib.is_main():
            training = {**self.record, "steps": state.step, "epochs": state.epoch,
                        "wall_time_s": round(state.wall_time_s, 1),
                        "valid_elbo_per_sequence": state.best_valid_elbo if valid_elbo is None else valid_elbo,
                        "best_valid_elbo_per_sequence": state.best_valid_elbo, "state": asdict(state)}
            save_checkpoint(path, model, training, opt)

    def save_last(self, model: VRNN, state: RunState, opt: torch.optim.Optimizer,
                  valid_elbo: float | None = None) -> None:
        self.save(self.last, model, state, opt, valid_elbo)
        self.last_saved = time.monotonic()

    def last_is_due(self, state: RunState, cfg: TrainConfig) -> bool:
        """last.safetensors is due every `cfg.checkpoint_every` steps (0: never by count) and when it is
        older than `cfg.checkpoint_minutes` (`save_last` resets the clock)."""
        by_count = cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0
        return bool(by_count) or time.monotonic() - self.last_saved >= 60 * cfg.checkpoint_minutes

    def log_metrics(self, state: RunState, row: dict) -> None:
        """Append {"step", "epoch", **row, "wall_time_s"} to metrics.jsonl (rank 0)."""
        if not distrib.is_main():
            return
        row = {"step": state.step, "epoch": state.epoch, **row, "wall_time_s": round(state.wall_time_s, 1)}
        try:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            raise TrainingError(f"Step {state.step}: could not append to {self.metrics} ({e}). The last "
                                f"checkpoint, {self.last}, is intact; free some space and resume.") from None

    def truncate_metrics(self, step: int) -> None:
        """Drop the rows a killed run logged after its last checkpoint (step > `step`) and any torn last
        line, so that a resumed run's metrics.jsonl reads like one uninterrupted run's."""
        if not self.metrics.is_file():
            return
        keep = []
        for line in self.metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= step:
                keep.append(line)
        tmp = self.metrics.with_name(self.metrics.name + ".tmp")
        tmp.write_text("".join(x + "\n" for x in keep))
        os.replace(tmp, self.metrics)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a run's metrics.jsonl (see `train`), in file order. A torn line (a run writing it right
    now, or killed mid-write) is skipped. Raises OSError when the file cannot be read."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def valid_curve(rows: list[dict]) -> dict[int, float]:
    """{step: validation ELBO per sequence (nats per 0.5 s)} of metrics rows (`read_metrics`); of two rows
    for one step the later wins."""
    return {int(r["step"]): float(r["valid_elbo_per_sequence"]) for r in rows if "valid_elbo_per_sequence" in r}


def _resume(files: RunFiles, model: VRNN, opt: torch.optim.Optimizer, resume: bool, device: str, log) -> RunState:
    """Load last.safetensors into `model` and `opt` and return its RunState; a new RunState when the run
    folder has none yet. Raises TrainingError when only some processes see the file, or it holds
    another model config."""
    found = files.last.is_file()
    if distrib.is_distributed():
        seen = int(distrib.all_reduce(torch.tensor([int(found)], device=device)))
        if 0 < seen < distrib.world_size():
            raise TrainingError(f"--resume: only {seen} of {distrib.world_size()} processes can see {files.last}; "
                                "the run folder must be on a filesystem that every node shares.")
    if not found:
        if distrib.is_main():
            files.truncate_metrics(0)  # rows of a run killed before its first checkpoint
            log(f"--resume: no {files.last} yet, starting a new run.")
        return RunState()
    info, tensors = read_checkpoint(files.last)
    if info["config"] != model.config.to_dict():
        raise TrainingError(f"--resume: {files.last} was trained with another model config "
                            f"({info['config']}); use a new --out folder or the same preset.")
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})
    restore_optimizer(opt, tensors)
    known = {f.name for f in fields(RunState)}
    state = RunState(**{k: v for k, v in info["training"]["state"].items() if k in known})
    if distrib.is_main():
        files.truncate_metrics(state.step)
        log(f"Resuming {files.last} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch}).")
    return state
