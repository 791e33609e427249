"""The training loop as a function: Adam, global gradient-norm clipping before the step, 0.5 s
windows, validation ELBO after each epoch, best/last checkpoints, JSON-lines metrics, resume.

Runs single-process on CPU or one GPU, or data-parallel under `torchrun` (torch.distributed with
DistributedDataParallel: NCCL on GPUs, gloo on CPU). Everything random depends only on (seed, step)
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
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .audio import FRAME_SIZE, SAMPLE_RATE, frame
from .checkpoint import read_checkpoint, remove_stale_temporaries, restore_optimizer, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import Corpus, CorpusError, WindowBatches, chunk_starts, ignore_signals_in_worker, read_windows
from .fused import FusedVRNN
from .model import VRNN
from .runfolder import claim_run_folder

CHECKPOINT_MINUTES = 5.0  # default: last.safetensors is at most this old (wall-clock minutes) while training
METRICS_EVERY = 10  # steps between training rows in metrics.jsonl (plus every skipped step)
VALID_BATCH = 64  # sequences per validation forward pass (as `evaluate.score_sequences`)


class TrainingError(RuntimeError):
    """Training cannot go on; the message names the step and the likely cause."""


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the environment `torchrun` sets; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _all_reduce(t: torch.Tensor, distributed: bool, op=None) -> torch.Tensor:
    if distributed:
        torch.distributed.all_reduce(t, op=op or torch.distributed.ReduceOp.SUM)
    return t


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the rows a killed run logged after its last checkpoint (step > `step`) and any torn last
    line, so that a resumed run's metrics.jsonl reads like one uninterrupted run's."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step:
            keep.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(x + "\n" for x in keep))
    os.replace(tmp, path)


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
    total = 0.0
    was_training = model.training
    model.eval()
    for j, i0 in enumerate(range(0, len(starts), VALID_BATCH)):
        offs = starts[i0: i0 + VALID_BATCH]
        T = window // FRAME_SIZE
        noise = (torch.randn(len(offs), T, c.z_dim, generator=gen, device=device) if c.has_latent else None)
        if j % world != rank:
            continue
        x = model.normalize(torch.from_numpy(frame(read_windows(audio, offs, window))).to(device))  # [b, T, X]
        total += FusedVRNN(model)(x, sample=True, noise=noise).elbo.sum().item()  # the fast path, batch 64: 1 thread
    model.train(was_training)
    sums = _all_reduce(torch.tensor([total], dtype=torch.float64, device=device), distributed)
    return float(sums[0]) / len(starts)


def train(data: str | os.PathLike, out: str | os.PathLike, model_config: ModelConfig, cfg: TrainConfig,
          resume: bool = False, device: str | None = None, progress: bool = True, log=print,
          checkpoint_every: int | None = None, checkpoint_minutes: float | None = None, force: bool = False) -> dict:
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
        checkpoint_every: also refresh last.safetensors every this many steps (0: only by time and at
            epoch ends). Default: `cfg.checkpoint_every` if TrainConfig has it, else 0.
        checkpoint_minutes: refresh last.safetensors when it is older than this (wall clock).
            Default: `cfg.checkpoint_minutes` if TrainConfig has it, else CHECKPOINT_MINUTES.

    metrics.jsonl rows: every METRICS_EVERY steps and every skipped step, {"step", "epoch",
    "train_elbo_per_sequence", "train_elbo_per_frame", "kl_per_frame", "grad_norm", "finite",
    "skipped_steps", "wall_time_s", "audio_seconds_seen"} (averages over the global batch);
    after every epoch and at the end {"step", "epoch", "valid_elbo_per_sequence",
    "valid_elbo_per_frame", "best", "wall_time_s"}.

    Returns a summary dict (steps, epochs, wall time, best validation ELBO per sequence, skipped
    steps, the signal that stopped it or None).
    Raises TrainingError on a long streak of non-finite losses (naming the step), or when ranks
    disagree about the run folder; RunFolderError (before any work) when `out` holds a run and
    neither `resume` nor `force` is given, holds other files, is locked by another training, or
    `resume` meets another corpus; CorpusError for bad data; CheckpointError when a checkpoint
    cannot be written (disk full), leaving the previous one intact.
    """
    with claim_run_folder(out, data, resume=resume, force=force, is_main=_dist_info()[0] == 0, log=log):
        return _train(data, out, model_config, cfg, resume, device, progress, log, checkpoint_every, checkpoint_minutes)


def _train(data, out, model_config: ModelConfig, cfg: TrainConfig, resume: bool, device: str | None, progress: bool,
           log, checkpoint_every: int | None, checkpoint_minutes: float | None) -> dict:
    """`train`'s body, run while this process holds the run folder."""
    if checkpoint_every is None:
        checkpoint_every = int(getattr(cfg, "checkpoint_every", 0) or 0)
    if checkpoint_minutes is None:
        checkpoint_minutes = float(getattr(cfg, "checkpoint_minutes", CHECKPOINT_MINUTES))
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif str(device) == "cuda":
        device = f"cuda:{local_rank}"  # one GPU per process under torchrun (cuda:0 otherwise)
    if cfg.batch_size % world:
        raise TrainingError(f"The global batch {cfg.batch_size} does not divide over {world} processes; "
                            f"choose --batch-size as a multiple of {world}.")
    owns_group = False
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
        owns_group = True
    if str(device).startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    is_main = rank == 0
    out = Path(out)
    corpus = Corpus.open(data)
    mean, std = corpus.normalization
    torch.manual_seed(cfg.seed)
    model = VRNN(model_config, mean, std).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_valid_elbo": -math.inf, "wall_time_s": 0.0,
             "skipped_steps": 0, "best_step": 0}
    last_path, best_path, metrics_path = out / "last.safetensors", out / "best.safetensors", out / "metrics.jsonl"
    found = resume and last_path.is_file()
    if distributed and resume:
        seen = _all_reduce(torch.tensor([int(found)], device=device), True)
        if 0 < int(seen) < world:
            raise TrainingError(f"--resume: only {int(seen)} of {world} processes can see {last_path}; the run "
                                "folder must be on a filesystem that every node shares.")
    if found:
        info, tensors = read_checkpoint(last_path)
        if info["config"] != model_config.to_dict():
            raise TrainingError(f"--resume: {last_path} was trained with another model config "
                                f"({info['config']}); use a new --out folder or the same preset.")
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})
        restore_optimizer(opt, tensors)
        state.update(info["training"]["state"])
        if is_main:
            _truncate_metrics(metrics_path, state["step"])
            log(f"Resuming {last_path} at step {state['step']} (epoch {state['epoch']}, batch {state['batch_in_epoch']}).")
    elif resume and is_main:
        _truncate_metrics(metrics_path, 0)  # rows of a run killed before its first checkpoint
        log(f"--resume: no {last_path} yet, starting a new run.")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
    net = FusedVRNN(model)  # the fast path (same numbers as model.forward, tests/test_fused.py), shares its weights
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[torch.device(device).index] if str(device).startswith("cuda") else None)
    window = cfg.window_frames * FRAME_SIZE
    valid_split = "valid"
    valid_starts = chunk_starts(corpus, valid_split, window)
    if len(valid_starts) == 0:  # a corpus too small for a valid split: score 64 training windows
        valid_split = "train"
        valid_starts = chunk_starts(corpus, valid_split, window)[:64]
    if len(valid_starts) == 0:
        raise CorpusError(f"No file in {data} is {window / SAMPLE_RATE:.1f} s or longer, so there is nothing to "
                          "validate on; add longer recordings.")
    valid_audio = corpus.audio(valid_split)
    train_seconds = corpus.meta["splits"]["train"]["seconds"]
    record_base = {"data": {"corpus": corpus.meta["source"]["name"], "train_seconds": train_seconds,
                            "corpus_fingerprint": corpus.meta["fingerprint"]},
                   "train_config": asdict(cfg), "world_size": world}

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    handlers = {}
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            handlers[s] = signal.signal(s, on_signal)
    except ValueError:  # not the main thread: no signal handling
        for s, h in handlers.items():
            signal.signal(s, h)
        handlers = {}

    def record(valid_elbo: float | None = None) -> dict:
        return {**record_base, "steps": state["step"], "epochs": state["epoch"],
                "wall_time_s": round(state["wall_time_s"], 1),
                "valid_elbo_per_sequence": state["best_valid_elbo"] if valid_elbo is None else valid_elbo,
                "best_valid_elbo_per_sequence": state["best_valid_elbo"], "state": dict(state)}

    def write_metrics(row: dict) -> None:
        if is_main:
            try:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            except OSError as e:
                raise TrainingError(f"Step {state['step']}: could not append to {metrics_path} ({e}). The last "
                                    f"checkpoint, {last_path}, is intact; free some space and resume.") from None

    last_saved = [time.monotonic()]

    def save_last(valid_elbo: float | None = None) -> None:
        if is_main:
            save_checkpoint(last_path, model, record(valid_elbo), opt)
        last_saved[0] = time.monotonic()

    def end_of_epoch_or_run() -> None:
        v = _validate(model, valid_audio, valid_starts, window, cfg.seed, rank, world, distributed)
        improved = v > state["best_valid_elbo"]
        if improved:
            state["best_valid_elbo"], state["best_step"] = v, state["step"]
        write_metrics({"step": state["step"], "epoch": state["epoch"], "valid_elbo_per_sequence": v,
                       "valid_elbo_per_frame": v / cfg.window_frames, "best": improved,
                       "wall_time_s": round(state["wall_time_s"], 1)})
        if is_main and improved:
            save_checkpoint(best_path, model, record(v))
        save_last(v)

    if is_main:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"{model_config.family}: {n_params / 1e6:.2f} M parameters on {device}; global batch "
            f"{cfg.batch_size} x {cfg.window_frames} frames ({cfg.batch_size // world} per process x {world} "
            f"process(es)), lr {cfg.lr}; {train_seconds / 60:.1f} min of training audio.")
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train", unit="step", disable=not (progress and is_main))
    bad_streak = 0
    model.train()
    try:
        while state["step"] < cfg.steps:
            batches = WindowBatches(data, "train", cfg.batch_size, state["epoch"], cfg.seed, window=window,
                                    rank=rank, world_size=world, start_batch=state["batch_in_epoch"])
            loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False,
                                                 num_workers=cfg.num_workers, persistent_workers=False,
                                                 worker_init_fn=ignore_signals_in_worker if cfg.num_workers else None)
            for wave in loader:
                t0 = time.perf_counter()
                x = model.normalize(wave.to(device).view(wave.shape[0], -1, FRAME_SIZE))  # [b, T, X]
                # Noise for the global batch from (seed, step); this process takes its rows.
                gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + state["step"])
                noise = torch.randn(cfg.batch_size, x.shape[1], model_config.z_dim, generator=gen,
                                    device=device)[rank::world]
                output = net(x, noise=noise)
                loss = -output.elbo.mean()  # negative ELBO, nats per 0.5 s sequence
                opt.zero_grad(set_to_none=True)
                loss.backward()  # under DDP: gradients averaged over the ranks = the global batch's
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)  # before step
                # One all-reduce carries the step's statistics and whether any rank was asked to stop,
                # so that every rank skips, logs and stops at the same step.
                stats = torch.stack([loss.detach(), output.kl.sum(-1).mean().detach(), grad_norm.detach(),
                                     torch.tensor(float(stop["signal"] is not None), device=device)])
                _all_reduce(stats, distributed)
                stats[:3] /= world
                finite = bool(torch.isfinite(stats[:3]).all())
                if finite:
                    opt.step()
                    bad_streak = 0
                else:
                    state["skipped_steps"] += 1
                    bad_streak += 1
                state["step"] += 1
                state["batch_in_epoch"] += 1
                state["wall_time_s"] += time.perf_counter() - t0
                loss_v, kl_v, gn_v = (float(v) for v in stats[:3])
                bar.update(1)
                bar.set_postfix(elbo_frame=f"{-loss_v / cfg.window_frames:.1f}", kl_frame=f"{kl_v / cfg.window_frames:.2f}")
                if state["step"] % METRICS_EVERY == 0 or not finite:
                    write_metrics({"step": state["step"], "epoch": state["epoch"],
                                   "train_elbo_per_sequence": -loss_v, "train_elbo_per_frame": -loss_v / cfg.window_frames,
                                   "kl_per_frame": kl_v / cfg.window_frames, "grad_norm": gn_v, "finite": finite,
                                   "skipped_steps": state["skipped_steps"],
                                   "wall_time_s": round(state["wall_time_s"], 1),
                                   "audio_seconds_seen": state["step"] * cfg.batch_size * window / SAMPLE_RATE})
                if bad_streak >= cfg.max_bad_steps:
                    raise TrainingError(
                        f"Step {state['step']}: the loss or gradient was not finite for {bad_streak} steps in a "
                        f"row (steps {state['step'] - bad_streak + 1}-{state['step']}; none of them changed the "
                        "weights). Likely causes: a learning rate too high for this model, or audio with extreme "
                        "values in the corpus. "
                        + (f"The last good checkpoint is {last_path}; resume from it with a lower --lr, or check "
                           "the corpus." if last_path.is_file() else "No checkpoint was written yet."))
                if is_main and cfg.snapshot_every and state["step"] % cfg.snapshot_every == 0:
                    save_checkpoint(out / "snapshots" / f"step-{state['step']:06d}.safetensors", model, record())
                if stats[3] > 0:
                    if stop["signal"] is None:
                        stop["signal"] = "a signal to another process"
                    break
                if state["step"] >= cfg.steps:
                    break
                epoch_ends = state["batch_in_epoch"] >= batches.n_batches
                if not epoch_ends and (
                        (checkpoint_every and state["step"] % checkpoint_every == 0)
                        or time.monotonic() - last_saved[0] >= 60 * checkpoint_minutes):
                    save_last()
            if stop["signal"] is not None:
                # Saved with the epoch's position as is: a run stopped at an epoch end validates that
                # epoch when resumed (its loader is then empty), as the uninterrupted run would have.
                break
            if state["batch_in_epoch"] >= batches.n_batches:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
                end_of_epoch_or_run()
            elif state["step"] >= cfg.steps:
                end_of_epoch_or_run()
    finally:
        bar.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    if stop["signal"] is not None:
        save_last()
        if is_main:
            log(f"Stopped by {stop['signal']} at step {state['step']}; saved {last_path}. Resume with --resume.")
    summary = {"steps": state["step"], "epochs": state["epoch"], "wall_time_s": round(state["wall_time_s"], 1),
               "best_valid_elbo_per_sequence": state["best_valid_elbo"], "best_step": state["best_step"],
               "skipped_steps": state["skipped_steps"], "interrupted": stop["signal"]}
    if distributed:
        torch.distributed.barrier()
        if owns_group:
            torch.distributed.destroy_process_group()
    return summary
