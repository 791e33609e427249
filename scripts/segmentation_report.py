"""The tables of docs/segmentation.md, from the bundled checkpoints and a corpus with alignments: one command.

    python -m vrnn corpus --out data/allison --align valid test
    python scripts/segmentation_report.py --corpus data/allison assets/checkpoints/*.safetensors \\
        --out docs/segmentation.md [--test]

Writes, between the markers <!-- tables:start --> and <!-- tables:end --> of --out: the validation table with
the tuned peak picking and with top-N picking, recall per kind of boundary and per clip for the best latent
signal on valid against spectral flux, and, only with --test, the test split table (run once, at the end).
Also writes the rows with per-clip scores to docs/segmentation.json. Nothing in the tables is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vrnn.data import Corpus  # noqa: E402
from vrnn.segmentation import collect, evaluate_clips, format_table, picking_rule, recall_by_class  # noqa: E402

START, END = "<!-- tables:start -->", "<!-- tables:end -->"


def best_latent(rows: list[dict]) -> dict:
    latent = [r for r in rows if r["source"] != "baseline"]
    return max(latent, key=lambda r: (r["all"]["r_value"] + r["all"]["f1"]))


def bootstrap_difference(a: list[dict], b: list[dict], n: int = 2000, seed: int = 0) -> dict[str, tuple]:
    """Pooled F1 and R-value of per-clip counts a minus b: (observed, 2.5%, 97.5%) over clip resamples."""
    import numpy as np

    from vrnn.boundaries import Scores

    rng = np.random.default_rng(seed)
    ca = np.array([[c["all_hits"], c["all_n_ref"], c["all_n_est"]] for c in a])
    cb = np.array([[c["all_hits"], c["all_n_ref"], c["all_n_est"]] for c in b])

    def metrics(idx):
        sa, sb = Scores(*map(int, ca[idx].sum(0))), Scores(*map(int, cb[idx].sum(0)))
        return sa.f1 - sb.f1, sa.r_value - sb.r_value

    obs = metrics(np.arange(len(ca)))
    draws = np.array([metrics(rng.integers(0, len(ca), len(ca))) for _ in range(n)])
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"f1": (obs[0], lo[0], hi[0]), "r_value": (obs[1], lo[1], hi[1])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--corpus", default="data/allison")
    p.add_argument("--out", default="docs/segmentation.md")
    p.add_argument("--test", action="store_true", help="also score the test split (do this once, at the end)")
    args = p.parse_args()
    corpus = Corpus.open(args.corpus)
    clips = collect(args.checkpoints, corpus, "valid", progress=False)
    tuned = evaluate_clips(clips, 0.02, picking_rule())
    topn = evaluate_clips(clips, 0.02, picking_rule(top_n=True))
    n_b, n_p = sum(len(c.ref.boundaries()) for c in clips), sum(len(c.ref.boundaries(True)) for c in clips)
    md = [f"Validation split: {len(clips)} clips, {sum(c.ref.duration for c in clips):.1f} s, {n_b} phone boundaries "
          f"({n_p} phone-to-phone). Tolerance 20 ms, one-to-one matching; pooled over clips. P, R, F1, R-val, OS: "
          "all phone boundaries; p2p: phone-to-phone boundaries only. Random: mean over 5 seeds (± the spread of F1).",
          "", "**Peak picking tuned per signal on this split** (vrnn/segmentation.py `TUNED`):", ""]
    md += [f"- {r['signal']}: {r['picking']}" for r in {r["signal"]: r for r in tuned}.values()]
    md += ["", format_table(tuned, markdown=True), "",
           "**Top-N peak picking** (N = the clip's reference boundary count, peaks >= 40 ms apart; no tuning, "
           "but the count is an oracle):", "", format_table(topn, markdown=True), ""]
    best = best_latent(tuned)
    flux = next(r for r in tuned if r["signal"] == "flux")
    src, sig = best["source"], best["signal"]
    rule = picking_rule()
    ours = recall_by_class(clips, src, sig, rule(sig))
    theirs = recall_by_class(clips, "baseline", "flux", rule("flux"))
    md += [f"**Where the best latent signal on valid ({src} {sig}, tuned) misses, against flux.** Recall of the "
           "reference boundaries by the classes of the phones on either side (ARPAbet classes; 'silence' includes "
           "the clip's unlabelled ends):", "",
           f"| boundary | count | {src} {sig} recall | flux recall |", "|---|---:|---:|---:|"]
    for k, (h, n) in ours.items():
        if n >= 8:
            md.append(f"| {k} | {n} | {h / n:.2f} | {theirs[k][0] / n:.2f} |")
    into: dict[str, list[int]] = {}
    for k, (h, n) in ours.items():
        c = into.setdefault(k.split(" -> ")[1], [0, 0, 0])
        c[0] += h
        c[1] += n
        c[2] += theirs[k][0]
    md += ["", "Collapsed by the class of the phone that starts at the boundary:", "",
           f"| into | count | {src} {sig} recall | flux recall |", "|---|---:|---:|---:|"]
    md += [f"| {k} | {n} | {h / n:.2f} | {f / n:.2f} |" for k, (h, n, f) in sorted(into.items(), key=lambda kv: -kv[1][1])]
    diff = bootstrap_difference(best["per_clip"], flux["per_clip"])
    md += ["", f"Paired bootstrap over clips (2000 resamples of the {len(clips)} clips, seed 0): {src} {sig} minus flux, "
           f"F1 {diff['f1'][0]:+.3f} (95% interval {diff['f1'][1]:+.3f} to {diff['f1'][2]:+.3f}), R-value "
           f"{diff['r_value'][0]:+.3f} ({diff['r_value'][1]:+.3f} to {diff['r_value'][2]:+.3f})."]
    md += ["", f"Per clip, F1 over all boundaries ({src} {sig} vs flux, both tuned):", "",
           "| clip | boundaries | latent F1 | flux F1 | latent - flux |", "|---|---:|---:|---:|---:|"]
    for a, b in sorted(zip(best["per_clip"], flux["per_clip"], strict=True), key=lambda ab: ab[0]["all_f1"] - ab[1]["all_f1"]):
        md.append(f"| {a['file']} | {a['all_n_ref']} | {a['all_f1']:.2f} | {b['all_f1']:.2f} | {a['all_f1'] - b['all_f1']:+.2f} |")
    out = {"valid_tuned": tuned, "valid_top_n": topn, "best_latent_valid": [src, sig]}
    if args.test:
        tclips = collect(args.checkpoints, corpus, "test", progress=False)
        test = evaluate_clips(tclips, 0.02, picking_rule())
        out["test_tuned"] = test
        md += ["", f"**Test split, scored once at the end** ({len(tclips)} clips, "
               f"{sum(len(c.ref.boundaries()) for c in tclips)} boundaries; peak picking as tuned on valid):", "",
               format_table(test, markdown=True)]
    doc = Path(args.out)
    text = doc.read_text() if doc.is_file() else f"{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + START + "\n" + "\n".join(md) + "\n" + END + tail)
    Path(doc.with_suffix(".json")).write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"Wrote {doc} and {doc.with_suffix('.json')}; best latent signal on valid: {src} {sig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
