"""The training loop as a function: Adam, global gradient-norm clipping before the step, 0.5 s
windows, validation ELBO after each epoch, best/last checkpoints, JSON-lines metrics, resume.

Runs single-process on CPU or one GPU, or data-parallel under `torchrun` (torch.distributed with
DistributedDataParallel: NCCL on GPUs, gloo on CPU). Everything random depends only on (seed, step)
or (seed, epoch), so a resumed run and a run split over W processes follow the same path as one
uninterrupted process with the same global batch.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .audio import FRAME_SIZE, SAMPLE_RATE
from .checkpoint import read_checkpoint, restore_optimizer, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import Corpus, WindowBatches, split_chunks
from .evaluate import score_sequences
from .model import VRNN


class TrainingError(RuntimeError):
    """Training cannot go on; the message names the step and the likely cause."""


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def train(data: str | os.PathLike, out: str | os.PathLike, model_config: ModelConfig, cfg: TrainConfig,
          resume: bool = False, device: str | None = None, progress: bool = True, log=print) -> dict:
    """Train a model on a corpus folder (see `vrnn.data`).

    Args:
        data: corpus folder (`python -m vrnn corpus`).
        out: run folder; receives best.safetensors, last.safetensors, metrics.jsonl and, every
            `cfg.snapshot_every` steps, snapshots/step-NNNNNN.safetensors.
        model_config, cfg: model shape and training options.
        resume: continue from out/last.safetensors (model, Adam moments, step, data position).
        device: "cpu", "cuda", ...; default CUDA when present.

    Returns a summary dict (steps, epochs, wall time, best validation ELBO per sequence).
    Raises TrainingError on a long streak of non-finite losses, CorpusError for bad data.
    """
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    if str(device).startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if cfg.batch_size % world:
        raise TrainingError(f"The global batch {cfg.batch_size} does not divide over {world} processes.")
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
    if resume and last_path.is_file():
        info, tensors = read_checkpoint(last_path)
        if info["config"] != model_config.to_dict():
            raise TrainingError(f"--resume: {last_path} was trained with another model config "
                                f"({info['config']}); use a new --out folder or the same preset.")
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})
        restore_optimizer(opt, tensors)
        state.update(info["training"]["state"])
        if is_main:
            log(f"Resuming {last_path} at step {state['step']} (epoch {state['epoch']}, batch {state['batch_in_epoch']}).")
    elif resume and is_main:
        log(f"--resume: no {last_path} yet, starting a new run.")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    valid = split_chunks(corpus, "valid")
    if len(valid) == 0:
        valid = split_chunks(corpus, "train")[:64]
    train_seconds = corpus.meta["splits"]["train"]["seconds"]
    record_base = {"data": {"corpus": corpus.meta["source"]["name"], "train_seconds": train_seconds,
                            "corpus_fingerprint": corpus.meta["fingerprint"]},
                   "train_config": asdict(cfg), "world_size": world}

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    handlers = {}
    if is_main or distributed:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                handlers[s] = signal.signal(s, on_signal)
        except ValueError:  # not the main thread
            handlers = {}

    def record(valid_elbo: float | None = None) -> dict:
        return {**record_base, "steps": state["step"], "epochs": state["epoch"],
                "wall_time_s": round(state["wall_time_s"], 1),
                "valid_elbo_per_sequence": state["best_valid_elbo"] if valid_elbo is None else valid_elbo,
                "best_valid_elbo_per_sequence": state["best_valid_elbo"], "state": dict(state)}

    def write_metrics(row: dict) -> None:
        if is_main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def validate() -> float:
        model.eval()
        score = score_sequences(model, valid, samples=1, seed=cfg.seed).elbo_per_sequence
        model.train()
        return score

    def end_of_epoch_or_run(last_valid: list) -> None:
        v = validate()
        last_valid[0] = v
        improved = v > state["best_valid_elbo"]
        if improved:
            state["best_valid_elbo"], state["best_step"] = v, state["step"]
        write_metrics({"step": state["step"], "epoch": state["epoch"], "valid_elbo_per_sequence": v,
                       "valid_elbo_per_frame": v / cfg.window_frames, "best": improved,
                       "wall_time_s": round(state["wall_time_s"], 1)})
        if is_main:
            if improved:
                save_checkpoint(best_path, model, record(v))
            save_checkpoint(last_path, model, record(v), opt)

    if is_main:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"{model_config.family}: {n_params / 1e6:.2f} M parameters on {device}; global batch "
            f"{cfg.batch_size} x {cfg.window_frames} frames over {world} process(es), lr {cfg.lr}, "
            f"{train_seconds / 60:.1f} min of training audio.")
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train", unit="step", disable=not (progress and is_main))
    bad_streak = 0
    last_valid = [None]
    window = cfg.window_frames * FRAME_SIZE
    model.train()
    try:
        while state["step"] < cfg.steps and stop["signal"] is None:
            batches = WindowBatches(data, "train", cfg.batch_size, state["epoch"], cfg.seed, window=window,
                                    rank=rank, world_size=world, start_batch=state["batch_in_epoch"])
            loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False,
                                                 num_workers=cfg.num_workers,
                                                 persistent_workers=False)
            finished_epoch = True
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
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)  # before step
                stats = torch.stack([loss.detach(), output.kl.sum(-1).mean().detach(), grad_norm.detach()])
                if distributed:
                    torch.distributed.all_reduce(stats)
                    stats /= world
                finite = bool(torch.isfinite(stats).all())
                if finite:
                    opt.step()
                    bad_streak = 0
                else:
                    state["skipped_steps"] += 1
                    bad_streak += 1
                    if bad_streak >= cfg.max_bad_steps:
                        raise TrainingError(
                            f"Step {state['step']}: the loss or gradient was not finite for {bad_streak} steps "
                            "in a row. Likely causes: a learning rate too high for this model, or audio with "
                            "extreme values in the corpus. The last good checkpoint is in "
                            f"{last_path}.")
                state["step"] += 1
                state["batch_in_epoch"] += 1
                state["wall_time_s"] += time.perf_counter() - t0
                loss_v, kl_v, gn_v = (float(v) for v in stats)
                bar.update(1)
                bar.set_postfix(elbo_frame=f"{-loss_v / cfg.window_frames:.1f}", kl_frame=f"{kl_v / cfg.window_frames:.2f}")
                if state["step"] % 10 == 0 or not finite:
                    write_metrics({"step": state["step"], "epoch": state["epoch"],
                                   "train_elbo_per_sequence": -loss_v, "train_elbo_per_frame": -loss_v / cfg.window_frames,
                                   "kl_per_frame": kl_v / cfg.window_frames, "grad_norm": gn_v, "finite": finite,
                                   "skipped_steps": state["skipped_steps"],
                                   "wall_time_s": round(state["wall_time_s"], 1),
                                   "audio_seconds_seen": state["step"] * cfg.batch_size * window / SAMPLE_RATE})
                if is_main and cfg.snapshot_every and state["step"] % cfg.snapshot_every == 0:
                    save_checkpoint(out / "snapshots" / f"step-{state['step']:06d}.safetensors", model, record())
                if state["step"] >= cfg.steps or stop["signal"] is not None:
                    finished_epoch = state["batch_in_epoch"] >= len(batches) + batches.start_batch
                    break
            if finished_epoch:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            if stop["signal"] is not None:
                break
            if finished_epoch or state["step"] >= cfg.steps:
                end_of_epoch_or_run(last_valid)
    finally:
        bar.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    if stop["signal"] is not None:
        if is_main:
            save_checkpoint(last_path, model, record(), opt)
            log(f"Stopped by {stop['signal']} at step {state['step']}; saved {last_path}. Resume with --resume.")
    summary = {"steps": state["step"], "epochs": state["epoch"], "wall_time_s": round(state["wall_time_s"], 1),
               "best_valid_elbo_per_sequence": state["best_valid_elbo"], "best_step": state["best_step"],
               "skipped_steps": state["skipped_steps"], "interrupted": stop["signal"]}
    if distributed:
        torch.distributed.barrier()
    return summary
