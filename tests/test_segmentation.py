"""The segmentation table over a corpus split, and the align / segment commands end to end."""

import json
import shutil

from vrnn.__main__ import main
from vrnn.data import Corpus
from vrnn.segmentation import collect, evaluate_clips, format_table, picking_rule, recall_by_class
from vrnn.segments import read_textgrid


def corpus_with_phones(tiny_corpus, tmp_path, splits=("valid",)):
    """The tiny corpus with TIMIT-style phones (16 kHz sample offsets) in the manifest of `splits`:
    phones of 80 ms with a 0.1 s silence at each end."""
    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        if r["split"] in splits:
            edges = list(range(1600, r["length"] - 1600, 1280))
            r["phones"] = ([[0, 1600, "h#"]] + [[a, b, "aa" if i % 2 else "s"] for i, (a, b) in
                           enumerate(zip(edges, edges[1:], strict=False))] + [[edges[-1], r["length"], "h#"]])
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_align_and_segment_commands(tiny_corpus, tiny_checkpoint, tmp_path, capsys):
    root = corpus_with_phones(tiny_corpus, tmp_path)
    out_json = tmp_path / "seg.json"
    capsys.readouterr()
    assert main(["segment", str(tiny_checkpoint), "--corpus", str(root), "--split", "valid", "--quiet",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    for word in ("delta", "kl_dims", "flux", "energy", "uniform", "random", "R-val"):
        assert word in out
    data = json.loads(out_json.read_text())
    assert data["split"] == "valid" and {r["signal"] for r in data["rows"]} >= {"delta", "kl", "flux", "random"}
    assert all(0 <= r["all"]["f1"] <= 1 for r in data["rows"])
    assert main(["segment", str(tiny_checkpoint), "--corpus", str(root), "--split", "valid", "--quiet", "--top-n"]) == 0
    # a split without references says how to make them
    assert main(["segment", str(tiny_checkpoint), "--corpus", str(root), "--split", "test", "--quiet"]) == 2
    assert "--align test" in capsys.readouterr().err


def test_align_command_writes_a_textgrid(tmp_path, capsys):
    from pathlib import Path

    clip = Path(__file__).parent.parent / "assets/examples/allison-cannot-complete-as-dialed.wav"
    out = tmp_path / "a.TextGrid"
    assert main(["align", str(clip), "--text", "Your call cannot be completed as dialed.", "--out", str(out)]) == 0
    ref = read_textgrid(out)
    assert [w.label for w in ref.words] == "your call cannot be completed as dialed".split()
    assert abs(ref.duration - 2.6415) < 1e-6
    assert main(["align", str(clip), "--text", "your call qqqzzz", "--out", str(out)]) == 2
    assert "qqqzzz" in capsys.readouterr().err


def test_top_n_keeps_the_reference_count_and_classes_add_up(tiny_corpus, tiny_checkpoint, tmp_path):
    c = Corpus.open(corpus_with_phones(tiny_corpus, tmp_path))
    clips = collect([str(tiny_checkpoint)], c, "valid", progress=False)
    rows = evaluate_clips(clips, 0.02, picking_rule(top_n=True))
    n_ref = sum(len(cl.ref.boundaries()) for cl in clips)
    for r in rows:
        assert r["all"]["n_ref"] == n_ref
        if r["signal"] in ("uniform", "flux"):
            assert r["all"]["n_est"] <= n_ref
    assert "flux" in format_table(rows, markdown=True)
    by_class = recall_by_class(clips, "baseline", "flux", picking_rule()("flux"))
    assert sum(n for _, n in by_class.values()) == n_ref
