"""Corpus transcripts and alignments: parsing Debian's core-sounds-en.txt, storing per split, references."""

import json

import numpy as np
import pytest

from vrnn.data import Corpus
from vrnn.transcripts import parse_core_sounds, read_jsonl, references, store_alignments, store_transcripts


def test_parse_core_sounds():
    text = ("; Core Asterisk Sounds in English\n\nactivated: Activated.\nbeep: [this is a simple beep tone]\n"
            "digits/1: one\nqueue-quantity2: ... callers waiting to speak with a representative.\nempty:\n")
    assert parse_core_sounds(text) == {"activated": "Activated.", "digits/1": "one",
                                       "queue-quantity2": "callers waiting to speak with a representative."}


def test_transcripts_and_alignments_of_a_corpus_with_text(tiny_corpus, tmp_path):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    # give two valid files a transcript, as the TIMIT/LJSpeech/VCTK readers do in the manifest
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["split"] == "valid"]
    for r in valid:
        r["text"] = "hello"
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = Corpus.open(root)
    counts = store_transcripts(c)
    assert counts["valid"] == len(valid) and counts["train"] == 0
    assert read_jsonl(root / "valid.transcripts.jsonl")[0]["text"] == "hello"
    n, failed = store_alignments(c, "valid", progress=False)
    assert n + len(failed) == len(valid)
    refs = references(c, "valid")
    assert len(refs) == n
    for ref in refs.values():  # a synthetic buzz aligned to "hello": the words come back, inside the clip
        assert [w.label for w in ref.words] == ["hello"] and ref.phones[-1].end <= ref.duration + 1e-9


def test_timit_phones_are_the_reference(tiny_corpus, tmp_path):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    r0 = next(r for r in rows if r["split"] == "test")
    r0["phones"] = [[0, 1600, "h#"], [1600, 4000, "k"], [4000, 8000, "ae"], [8000, r0["length"], "h#"]]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    refs = references(Corpus.open(root), "test")
    np.testing.assert_allclose(refs[r0["file"]].boundaries(), [0.1, 0.25, 0.5])
    assert refs[r0["file"]].duration == pytest.approx(r0["length"] / 16000)
