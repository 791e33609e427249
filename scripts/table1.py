"""Chung et al. 2015, Table 1, on our data: one command from a folder of checkpoints to docs/results.md + .json.

    PYTHONPATH=. nice -n 5 python scripts/table1.py --checkpoints assets/checkpoints --corpus /work/data/allison

(or `pip install -e .` first and drop PYTHONPATH). The checkpoints folder may hold DIR/<name>.safetensors files
(assets/checkpoints) and/or training-run folders DIR/<name>/best.safetensors (/work/runs/bundled); each
checkpoint's family is read from the checkpoint itself, and two checkpoints of one family are refused.

For every model, on the corpus's test split (non-overlapping 0.5 s sequences; nats; never used for choices):
ELBO and importance-sampled log p(x) (K samples) per sequence and per frame; the ELBO's per-frame terms split
into speech and near-silent frames by the raw waveform's frame RMS (`vrnn.evaluate.loudness_split`); paired
per-sequence differences of log p(x) with 95 % t intervals (`vrnn.evaluate.paired_difference`); the training
record (updates of this run, of the run it was initialised from, wall time); the paper's numbers; and issue
12's targets, checked and printed. Nothing in the output is typed by hand. `--sequences N` scores an evenly
spaced subset while iterating (the doc then says so).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from vrnn import load_checkpoint, read_checkpoint
from vrnn.data import Corpus, split_chunks
from vrnn.evaluate import (
    NEAR_SILENT_DBFS,
    loudness_bands,
    loudness_split,
    near_silent_frames,
    paired_difference,
    score_each_sequence,
)
from vrnn.train import updates_behind

ORDER = ["rnn-gauss", "rnn-gmm", "vrnn-i-gauss", "vrnn-gauss", "vrnn-gmm"]
NAMES = {"rnn-gauss": "RNN-Gauss", "rnn-gmm": "RNN-GMM", "vrnn-i-gauss": "VRNN-I-Gauss",
         "vrnn-gauss": "VRNN-Gauss", "vrnn-gmm": "VRNN-GMM"}

# Chung et al. 2015, Table 1: average log-likelihood per test sequence (nats), Blizzard and TIMIT. For RNNs the
# exact log-likelihood; for VRNNs the paper prints the ELBO ("≥") and an importance-sampled estimate ("≈").
# ELBO / exact values: checked against the one stored quotation of the table found, Table 1 of "Variational
# Bi-LSTMs" (the anonymous ICLR 2018 submission text), which agrees on every value here except VRNN-GMM Blizzard:
# it prints ≥ 9392 there (its other VRNN rows are ELBOs), which we read as the paper's ≈ value copied into an
# ELBO column -- so 9107 below stays unconfirmed by a stored source.
# "≈" values: no stored copy of the paper's text or of the authors' repositories (jych/nips2015_vrnn: code only,
# its README holds no numbers) could be found in this session, so they are left None and the doc says so.
# Fill them in from arXiv:1506.02216 (v6) Table 1 when a copy is at hand.
PAPER = {
    "rnn-gauss": {"blizzard": {"elbo": 3539, "is": None, "exact": True}, "timit": {"elbo": -1900, "is": None, "exact": True}},
    "rnn-gmm": {"blizzard": {"elbo": 7413, "is": None, "exact": True}, "timit": {"elbo": 26643, "is": None, "exact": True}},
    "vrnn-i-gauss": {"blizzard": {"elbo": 8933, "is": None}, "timit": {"elbo": 28340, "is": None}},
    "vrnn-gauss": {"blizzard": {"elbo": 9223, "is": None}, "timit": {"elbo": 28805, "is": None}},
    "vrnn-gmm": {"blizzard": {"elbo": 9107, "is": None}, "timit": {"elbo": 28982, "is": None}},
}
PAPER_UNVERIFIED = {("vrnn-gmm", "blizzard", "elbo")}

# Paired comparisons of log p(x) per sequence (a minus b): issue 12's two, then each VRNN against RNN-Gauss.
BANDS_DB = (-70.0, -60.0, -50.0, -40.0, -30.0, -20.0)  # edges of the finer loudness table (dBFS)

PAIRS = [("vrnn-gauss", "vrnn-i-gauss"), ("vrnn-gauss", "rnn-gmm"), ("vrnn-i-gauss", "rnn-gauss"),
         ("vrnn-gauss", "rnn-gauss"), ("vrnn-gmm", "rnn-gauss")]


def find_checkpoints(folder: Path) -> dict[str, Path]:
    """family -> checkpoint path for DIR/*.safetensors and DIR/*/best.safetensors. Raises SystemExit with a
    sentence for a missing folder, no checkpoints, or two checkpoints of one family."""
    if not folder.is_dir():
        raise SystemExit(f"--checkpoints {folder}: there is no folder there.")
    paths = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*/best.safetensors"))
    if not paths:
        raise SystemExit(f"--checkpoints {folder}: no *.safetensors or */best.safetensors in it.")
    found: dict[str, Path] = {}
    for p in paths:
        family = read_checkpoint(p)[0]["config"]["family"]
        if family in found:
            raise SystemExit(f"--checkpoints {folder}: two {family} checkpoints, {found[family]} and {p}; keep one "
                             "per family (or use --families).")
        found[family] = p
    return found


def training_record(info: dict) -> dict:
    """The checkpoint's training record in the table's terms. A run started with --init-from records
    training["init_from"] = {"path", "steps", "total_steps", ...}; its total updates are the initial checkpoint's
    total_steps (its steps where an older record has none) plus its own. The initial run's wall time is read from that checkpoint when the file at its path is still the one the run
    started from (same steps and validation ELBO as recorded), None otherwise."""
    tr = info.get("training", {})
    steps = tr.get("steps")
    init = tr.get("init_from") or {}
    init_steps = init.get("steps") if init else None
    init_wall = None
    if init.get("path"):
        try:
            source = read_checkpoint(init["path"])[0].get("training", {})
        except (OSError, ValueError):
            source = {}
        # only when the file there is still the one the run started from (assets/ may have been replaced since)
        if source.get("steps") == init_steps and source.get("valid_elbo_per_sequence") == init.get("valid_elbo_per_sequence"):
            init_wall = source.get("wall_time_s")
    total = None if steps is None else updates_behind(tr)
    before = None if not init or total is None else total - steps  # the updates behind the starting weights
    return {"steps": steps, "init_from": init or None, "init_steps": init_steps, "total_steps": total,
            "best_step": tr.get("state", {}).get("best_step"), "batch_size": tr.get("train_config", {}).get("batch_size"),
            "precision": tr.get("precision"), "wall_time_s": tr.get("wall_time_s"), "init_wall_time_s": init_wall,
            "init_total_steps": before,
            "valid_elbo_per_sequence": tr.get("valid_elbo_per_sequence"), "train_config": tr.get("train_config"),
            "corpus_fingerprint": tr.get("data", {}).get("corpus_fingerprint") if isinstance(tr.get("data"), dict) else None}


def subset(n_total: int, n: int) -> np.ndarray:
    """Indices of n evenly spaced sequences out of n_total (all when n is 0 or >= n_total)."""
    if n <= 0 or n >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(int))


def check_targets(ll: dict[str, float], paired: dict[tuple[str, str], dict]) -> list[dict]:
    """Issue 12's targets on the test split: [{"target", "holds" (True/False/None = not checkable), "detail"}]."""
    out = []

    def missing(*fams):
        return [NAMES[f] for f in fams if f not in ll]

    m = missing("vrnn-gauss", "rnn-gmm")
    out.append({"target": "VRNN-Gauss log p(x) at or above RNN-GMM's",
                "holds": None if m else bool(ll["vrnn-gauss"] >= ll["rnn-gmm"]),
                "detail": f"not scored: {', '.join(m)}" if m else
                f"{ll['vrnn-gauss']:.1f} vs {ll['rnn-gmm']:.1f} nats/seq"})
    vrnns = [f for f in ORDER if f.startswith("vrnn") and f in ll]
    m = missing("rnn-gauss") or ([] if vrnns else ["any VRNN"])
    out.append({"target": "every VRNN above RNN-Gauss",
                "holds": None if m else (False if any(ll[f] <= ll["rnn-gauss"] for f in vrnns)
                                         else (True if len(vrnns) == 3 else None)),  # all three to confirm
                "detail": f"not scored: {', '.join(m)}" if m else
                "; ".join(f"{NAMES[f]} {ll[f] - ll['rnn-gauss']:+.1f}" for f in vrnns) + " nats/seq vs RNN-Gauss"
                + ("" if len(vrnns) == 3 else f" (only {len(vrnns)} of 3 VRNNs scored)")})
    p = paired.get(("vrnn-gauss", "vrnn-i-gauss"))
    out.append({"target": "VRNN-Gauss above VRNN-I-Gauss, paired 95 % interval excluding zero",
                "holds": None if p is None else bool(p["lo"] > 0),
                "detail": "not scored: VRNN-Gauss and VRNN-I-Gauss both needed" if p is None else
                f"{p['mean']:+.1f} nats/seq, 95 % interval [{p['lo']:+.1f}, {p['hi']:+.1f}]"})
    return out


def fmt(v, digits=0, bound=""):
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{bound}{v:.{digits}f}"


def paper_cell(fam: str, dataset: str) -> str:
    p = PAPER[fam][dataset]
    if p.get("exact"):
        return f"{p['elbo']}"
    elbo = f"≥ {p['elbo']}" + ("\\*" if (fam, dataset, "elbo") in PAPER_UNVERIFIED else "")
    return f"{elbo} / " + (f"≈ {p['is']}" if p["is"] is not None else "≈ ?")


def render(args, command: str, chunks_total: int, idx: np.ndarray, rows: dict, paired: dict, split_pairs: dict,
           targets: list[dict], notes: list[str]) -> str:
    fams = [f for f in ORDER if f in rows]
    any_row = rows[fams[0]]
    sp, qs = any_row["loudness"]["speech"], any_row["loudness"]["near_silent"]
    S = len(idx)
    L = [f"`{command}`", "",
         "# Table 1 on real speech (Allison Smith, asterisk-core-sounds-en-g722)", ""]
    subset_note = "" if S == chunks_total else (f" **A subset: {S} of the {chunks_total} sequences, evenly spaced "
                                                 "(--sequences); not the full table.**")
    L.append(f"The first line is the command that wrote this file and {Path(args.json).name}; `--checkpoints` takes a "
             "folder of `<name>.safetensors` files or of training-run folders `<name>/best.safetensors`. "
             f"{args.split.capitalize()} "
             f"split: {S} non-overlapping 0.5 s sequences (40 frames of 200 samples at 16 kHz), scored in the "
             f"normalised waveform space each model was trained in; K = {args.samples} importance samples per "
             f"sequence (Burda et al. 2016), seed {args.seed}. Nats; higher is better.{subset_note}")
    L += ["", "## Scores", "",
          "| model | ELBO / seq | log p(x) ≈ / seq | ELBO / frame | log p(x) ≈ / frame | speech: ELBO / frame | "
          "speech: nats / seq | near-silent: ELBO / frame | near-silent: nats / seq | paper Blizzard | paper TIMIT |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in fams:
        r, b = rows[f], "≥ " if rows[f]["has_latent"] else ""
        lo = r["loudness"]
        L.append(f"| {NAMES[f]} | {fmt(r['elbo_per_sequence'], 0, b)} | {fmt(r['loglik_per_sequence'], 0, b)} | "
                 f"{fmt(r['elbo_per_frame'], 2, b)} | {fmt(r['loglik_per_frame'], 2, b)} | "
                 f"{fmt(lo['speech']['mean_per_frame'], 2)} | {fmt(lo['speech']['per_sequence'], 0)} | "
                 f"{fmt(lo['near_silent']['mean_per_frame'], 2)} | {fmt(lo['near_silent']['per_sequence'], 0)} | "
                 f"{paper_cell(f, 'blizzard')} | {paper_cell(f, 'timit')} |")
    L += ["",
          "- **log p(x) ≈** is L_K, the K-sample importance-weighted bound, per sequence then averaged; for RNNs it "
          "and the ELBO are the exact log-likelihood (≥ marks a lower bound). **ELBO** here is the mean over the "
          "same K posterior paths of sum_t [log p(x_t | z_t, h_{t-1}) - KL_t] (eq. (11), KL in closed form); it "
          "has the expectation of the one-path ELBO that earlier versions of this table drew, with less noise.",
          f"- **Loudness split.** A frame is *near-silent* when the RMS of its 200 raw waveform samples (in [-1, 1], "
          f"before normalisation) is below {args.silence_db:g} dBFS (20 log10 RMS, full scale 1.0), *speech* "
          f"otherwise; the threshold was chosen once on the training split (`vrnn.evaluate.NEAR_SILENT_DBFS`: the "
          "noise-floor mode there lies at -85..-75 dBFS, the speech mode at -25..-10 dBFS). Here "
          f"{sp['frames']} speech frames ({100 * sp['share']:.1f} %) and {qs['frames']} near-silent frames "
          f"({100 * qs['share']:.1f} %). What is split is the ELBO's per-frame term log p(x_t | z_t, h_{{t-1}}) - "
          "KL_t, which adds up exactly over frames (for RNNs: log p(x_t | x_{<t}), the exact log-likelihood); "
          "\"ELBO / frame\" is its mean over that class's frames, \"nats / seq\" its sum over that class's frames "
          "per sequence (speech + near-silent = ELBO / seq). The importance-sampling gain L_K - ELBO does not "
          "split by frame and is in neither.",
          "- **Paper** columns: Chung et al. 2015, Table 1 (Blizzard, TIMIT; per 0.5 s sequence), RNNs exact, "
          "VRNNs \"≥ ELBO / ≈ importance-sampled\". The ≈ values are shown as ? because no stored copy of the "
          "paper's table could be read in the session that wrote this script, and they are not typed from memory; "
          "see PAPER in scripts/table1.py. \\* VRNN-GMM Blizzard ≥ 9107 is not confirmed by a stored source (the "
          "one stored quotation of the table, in the \"Variational Bi-LSTMs\" submission, prints 9392 there); the "
          "other ≥ and exact values agree with that quotation.",
          ""]

    bands = any_row["loudness_bands"]

    def band_name(b):
        return f"< {b['hi_db']:g}" if b["lo_db"] is None else (f"≥ {b['lo_db']:g}" if b["hi_db"] is None
                                                               else f"{b['lo_db']:g} .. {b['hi_db']:g}")
    L += ["## ELBO per frame by loudness band", "",
          "The same per-frame terms in 10 dB bands of raw frame RMS (dBFS), to see where each model gains: mean "
          "nats per frame of the frames in the band (RNNs: exact log p(x_t | x_{<t})).", "",
          "| model | " + " | ".join(band_name(b) for b in bands) + " |",
          "|---|" + "---:|" * len(bands),
          "| frames (share) | " + " | ".join(f"{b['frames']} ({100 * b['share']:.1f} %)" for b in bands) + " |"]
    for f in fams:
        L.append(f"| {NAMES[f]} | " + " | ".join(fmt(b["mean_per_frame"], 1) for b in rows[f]["loudness_bands"]) + " |")
    L += ["", "Where each model gains (the ELBO's per-frame terms, speech vs near-silent frames as above):", ""]
    for a, b in paired:
        la, lb = rows[a]["loudness"], rows[b]["loudness"]
        sp_d, qs_d = (None if la[k]["mean_per_frame"] is None else la[k]["mean_per_frame"] - lb[k]["mean_per_frame"]
                      for k in ("speech", "near_silent"))
        c_sp, c_qs = (la[k]["per_sequence"] - lb[k]["per_sequence"] for k in ("speech", "near_silent"))
        L.append(f"- {NAMES[a]} − {NAMES[b]}: {fmt(sp_d, 1, '+' if (sp_d or 0) >= 0 else '')} nats/frame on speech "
                 f"frames, {fmt(qs_d, 1, '+' if (qs_d or 0) >= 0 else '')} on near-silent frames; per sequence "
                 f"{c_sp:+.0f} nats from speech frames and {c_qs:+.0f} from near-silent frames "
                 f"({100 * qs['share']:.0f} % of frames), {c_sp + c_qs:+.0f} in all.")
    L.append("")

    L += ["## Paired differences of log p(x) per sequence", "",
          f"Mean over the {S} sequences of log p(x)_a - log p(x)_b (each the model's L_K, so its Monte Carlo noise "
          f"is inside the spread), with a two-sided 95 % Student-t interval: mean ± t_(0.975, {S - 1}) · sd / "
          "√n (sd with n - 1). Split columns: the same for each sequence's sum of per-frame ELBO terms over its "
          "speech (near-silent) frames.", "",
          "| a − b | log p(x): mean | 95 % interval | excludes 0 | speech frames: mean | 95 % interval | "
          "near-silent frames: mean | 95 % interval |",
          "|---|---:|---:|:---:|---:|---:|---:|---:|"]
    for (a, b), p in paired.items():
        s_sp, s_qs = split_pairs[(a, b)]["speech"], split_pairs[(a, b)]["near_silent"]
        L.append(f"| {NAMES[a]} − {NAMES[b]} | {p['mean']:+.1f} | [{p['lo']:+.1f}, {p['hi']:+.1f}] | "
                 f"{'yes' if p['excludes_zero'] else 'no'} | {s_sp['mean']:+.1f} | [{s_sp['lo']:+.1f}, {s_sp['hi']:+.1f}] | "
                 f"{s_qs['mean']:+.1f} | [{s_qs['lo']:+.1f}, {s_qs['hi']:+.1f}] |")
    L += ["", f"## Issue 12's targets ({args.split} split, K = {args.samples})", ""]
    for t in targets:
        mark = {True: "**holds**", False: "**does not hold**", None: "**not checked**"}[t["holds"]]
        L.append(f"- {t['target']}: {mark} ({t['detail']}).")
    ll = {f: rows[f]["loglik_per_sequence"] for f in fams}
    L += ["", "Ranking by log p(x): " + " > ".join(NAMES[f] for f in sorted(ll, key=ll.get, reverse=True)) + ".", ""]

    L += ["## Training record", "",
          "| model | parameters | checkpoint | updates this run (best at) | initialised from (updates) | total updates | "
          "batch | precision | train wall time | eval time |",
          "|---|---:|---|---:|---|---:|---:|---|---:|---:|"]
    for f in fams:
        r, t = rows[f], rows[f]["training"]
        init = t["init_from"]
        chain = "" if t["init_total_steps"] in (None, t["init_steps"]) else f" of {t['init_total_steps']} in all"
        init_cell = "–" if not init else f"{Path(str(init.get('path', '?'))).parent.name}/{Path(str(init.get('path', '?'))).name} ({t['init_steps']}{chain})"
        best = f" ({t['best_step']})" if t["best_step"] is not None and t["best_step"] != t["steps"] else ""
        wall = "–" if t["wall_time_s"] is None else f"{t['wall_time_s'] / 60:.0f} min"
        if t["init_wall_time_s"] is not None:
            wall += f" + {t['init_wall_time_s'] / 60:.0f} min (initial run)"
        L.append(f"| {NAMES[f]} | {r['params'] / 1e6:.2f} M | {r['checkpoint']} | {fmt(t['steps'])}{best} | {init_cell} | "
                 f"{fmt(t['total_steps'])} | {fmt(t['batch_size'])} | {t['precision'] or 'fp32 (not recorded)'} | "
                 f"{wall} | {r['eval_seconds']:.0f} s |")
    L += ["",
          "Updates this run: the training record's `steps` when this checkpoint was saved (the best by validation "
          "ELBO). A run continued with `--init-from` starts its own count at 0; its total is the initial "
          "checkpoint's total (its `steps`, plus those of the checkpoint it was itself continued from: "
          "`init_from.total_steps`) plus its own. Train wall time is "
          "the sum of step times as logged; runs shared 2 CPU cores with each other and with other work, so it "
          "overstates the time one run takes alone. Eval time: this script, on the same shared machine.", ""]
    if notes:
        L += ["## Warnings", ""] + [f"- {n}" for n in notes] + [""]
    L += ["Absolute values are not comparable with the paper's: different data (25 minutes of one speaker vs 300 "
          "hours of Blizzard), normalisation and model size (the `cpu` preset), and a budget of hours on 2 CPU "
          "cores instead of days on a GPU."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoints", default="assets/checkpoints",
                   help="folder of <name>.safetensors checkpoints and/or <name>/best.safetensors run folders")
    p.add_argument("--corpus", default="/work/data/allison", help="corpus folder (python -m vrnn corpus)")
    p.add_argument("--split", default="test", help="split to score")
    p.add_argument("--samples", type=int, default=40, help="K importance samples per sequence")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples")
    p.add_argument("--sequences", type=int, default=0, help="score only this many evenly spaced sequences (0 = all)")
    p.add_argument("--families", default="", help="comma-separated families to score (empty = every one found)")
    p.add_argument("--silence-db", type=float, default=NEAR_SILENT_DBFS,
                   help="frames with raw RMS below this many dBFS are near-silent")
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (sequences x K)")
    p.add_argument("--out", default="docs/results.md", help="markdown file to write")
    p.add_argument("--json", default="docs/results.json", help="machine-readable results to write")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.samples < 1 or args.sequences < 0 or args.batch_size < 1:
        p.error("--samples and --batch-size must be >= 1, --sequences >= 0")
    command = "PYTHONPATH=. python " + shlex.join(
        ["scripts/table1.py", "--checkpoints", args.checkpoints, "--corpus", args.corpus, "--split", args.split,
         "--samples", str(args.samples), "--seed", str(args.seed)]
        + (["--sequences", str(args.sequences)] if args.sequences else [])
        + (["--families", args.families] if args.families else [])
        + (["--silence-db", f"{args.silence_db:g}"] if args.silence_db != NEAR_SILENT_DBFS else [])
        + ["--out", args.out, "--json", args.json])

    found = find_checkpoints(Path(args.checkpoints))
    if args.families:
        wanted = [f.strip() for f in args.families.split(",") if f.strip()]
        unknown = [f for f in wanted if f not in found]
        if unknown:
            raise SystemExit(f"--families: no checkpoint of {', '.join(unknown)} in {args.checkpoints} "
                             f"(found: {', '.join(found)}).")
        found = {f: found[f] for f in wanted}
    corpus = Corpus.open(args.corpus)
    all_chunks = split_chunks(corpus, args.split)
    idx = subset(len(all_chunks), args.sequences)
    chunks = all_chunks[idx]

    rows, per_seq, notes = {}, {}, []
    for fam in [f for f in ORDER if f in found]:
        path = found[fam]
        model = load_checkpoint(path)
        t0 = time.perf_counter()
        s = score_each_sequence(model, chunks, samples=args.samples, batch_size=args.batch_size, seed=args.seed,
                                progress=True)
        dt = time.perf_counter() - t0
        summary = s.summary()
        rec = training_record(model.info)
        rows[fam] = {"checkpoint": str(path), "family": fam, "has_latent": model.config.has_latent,
                     **summary.to_dict(), "samples": s.samples,
                     "loudness": loudness_split(s.frame_elbo, chunks, args.silence_db, model.config.x_dim),
                     "loudness_bands": loudness_bands(s.frame_elbo, chunks, BANDS_DB, model.config.x_dim),
                     "normalization": model.info.get("normalization"), "training": rec,
                     "params": sum(q.numel() for q in model.parameters()), "eval_seconds": round(dt, 1)}
        per_seq[fam] = s
        fp = rec["corpus_fingerprint"]
        if fp and fp != corpus.meta.get("fingerprint"):
            notes.append(f"{NAMES[fam]} was trained on another corpus (fingerprint {fp[:12]}, this corpus "
                         f"{str(corpus.meta.get('fingerprint'))[:12]}).")
        print(f"{fam}: {path} ELBO {summary.elbo_per_sequence:.1f} log p(x) {summary.loglik_per_sequence:.1f} "
              f"nats/seq, {dt:.0f} s", flush=True)
    stds = {f: (r["normalization"] or {}).get("std") for f, r in rows.items()}
    if len({round(v, 9) for v in stds.values() if v is not None}) > 1:
        notes.append("The models' normalisations differ (std " + ", ".join(f"{NAMES[f]} {v:.5f}" for f, v in
                     stds.items()) + "), so their log-densities are in different spaces: a difference of std by a "
                     "factor c shifts log p(x) by 8000 log c nats per sequence.")

    paired, split_pairs = {}, {}
    n_frames = next(iter(per_seq.values())).frame_elbo.shape[1]
    quiet = near_silent_frames(chunks, n_frames, args.silence_db)  # [S, T], the frames of loudness_split
    for a, b in PAIRS:
        if a in per_seq and b in per_seq:
            paired[(a, b)] = paired_difference(per_seq[a].loglik, per_seq[b].loglik).to_dict()
            split_pairs[(a, b)] = {  # per sequence: the sum of its speech (near-silent) frames' ELBO terms
                name: paired_difference((per_seq[a].frame_elbo * m).sum(1), (per_seq[b].frame_elbo * m).sum(1)).to_dict()
                for name, m in (("speech", ~quiet), ("near_silent", quiet))}
    ll = {f: r["loglik_per_sequence"] for f, r in rows.items()}
    targets = check_targets(ll, paired)

    md = render(args, command, len(all_chunks), idx, rows, paired, split_pairs, targets, notes)
    result = {
        "command": command,
        "settings": {"split": args.split, "samples": args.samples, "seed": args.seed, "sequences": len(idx),
                     "sequences_in_split": len(all_chunks), "sequence_indices": idx.tolist() if len(idx) < len(all_chunks) else "all",
                     "near_silent_below_dbfs": args.silence_db, "frames_per_sequence": int(n_frames),
                     "corpus": args.corpus, "corpus_fingerprint": corpus.meta.get("fingerprint"),
                     "interval": "two-sided 95% Student-t over sequences, paired (mean +- t(0.975, n-1) sd/sqrt(n))"},
        "models": {f: {**rows[f], "per_sequence": {"elbo": np.round(per_seq[f].elbo, 3).tolist(),
                                                    "loglik": np.round(per_seq[f].loglik, 3).tolist()}} for f in rows},
        "paired_loglik": [{"a": a, "b": b, **v} for (a, b), v in paired.items()],
        "paired_split_elbo": [{"a": a, "b": b, **v} for (a, b), v in split_pairs.items()],
        "targets": targets,
        "paper": {"source": "Chung et al. 2015, Table 1 (nats per 0.5 s sequence)", "values": PAPER,
                  "unverified": [list(k) for k in sorted(PAPER_UNVERIFIED)],
                  "note": "'is' (importance-sampled, the paper's ≈) values are None: not verified from a stored source"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(md)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(md)
    print("Targets:")
    for t in targets:
        print(f"  [{ {True: 'HOLDS', False: 'FAILS', None: 'N/A'}[t['holds']] }] {t['target']}: {t['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
