"""Write assets/examples/*.TextGrid: the forced alignment of each bundled example clip (one command).

    python -m vrnn corpus --out data/allison --align test
    python scripts/example_textgrids.py --corpus data/allison

Each example clip `allison-NAME.wav` is the test-split prompt NAME (vm-msginstruct cut to its first 10 s):
its stored alignment (PocketSphinx, `python -m vrnn corpus --align`) is cut to the clip's length and written
with praatio. The clip's samples are checked against the corpus's first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402

from vrnn.audio import load_audio  # noqa: E402
from vrnn.data import Corpus  # noqa: E402
from vrnn.segments import write_textgrid  # noqa: E402
from vrnn.transcripts import clip_audio, references  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="data/allison", help="corpus folder with test.alignments.jsonl")
    p.add_argument("--examples", default="assets/examples", help="folder of allison-*.wav clips")
    args = p.parse_args()
    corpus = Corpus.open(args.corpus)
    refs = references(corpus, "test")
    rows = {Path(r["file"]).with_suffix("").as_posix().replace("/", "-"): r for r in corpus.files("test")}
    for wav in sorted(Path(args.examples).glob("allison-*.wav")):
        name = wav.stem.removeprefix("allison-").removesuffix("-10s")
        row = rows.get(name)
        if row is None or row["file"] not in refs:
            print(f"{wav.name}: no aligned test file {name}", file=sys.stderr)
            return 1
        x, _ = load_audio(wav)
        full = clip_audio(corpus, row)
        if not np.allclose(x, full[: len(x)], atol=1 / 32768):
            print(f"{wav.name}: its samples differ from {row['file']} in the corpus", file=sys.stderr)
            return 1
        ref = refs[row["file"]].crop(len(x) / 16000)
        out = wav.with_suffix(".TextGrid")
        write_textgrid(ref, out)
        print(f"{out}: {len(ref.speech_phones())} phones, {len(ref.words)} words, {len(ref.boundaries())} boundaries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
