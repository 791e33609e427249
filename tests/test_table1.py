"""scripts/table1.py (issue 12's Table 1): both checkpoint layouts, the --init-from record, the paired intervals
in its JSON against scipy, the targets, and the doc's first line. Tiny random models on the tiny corpus."""

import importlib.util
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from vrnn import VRNN, preset, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table1():
    spec = importlib.util.spec_from_file_location("table1", ROOT / "scripts" / "table1.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _save(path, family, seed, training):
    torch.manual_seed(seed)
    save_checkpoint(path, VRNN(preset("tiny", family), 0.0, 0.1), training)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """DIR/rnn-gauss.safetensors (a file), DIR/vrnn-gauss/best.safetensors (a run folder continued from
    elsewhere/first.safetensors, 300 + 120 updates), DIR/vrnn-i-gauss/best.safetensors (a run folder)."""
    d = tmp_path_factory.mktemp("table1")
    first = d.parent / f"{d.name}-elsewhere" / "first.safetensors"
    _save(d / "rnn-gauss.safetensors", "rnn-gauss", 1, {"steps": 50, "wall_time_s": 60.0, "train_config": {"batch_size": 8}})
    _save(d / "vrnn-gauss" / "best.safetensors", "vrnn-gauss", 2,
          {"steps": 120, "wall_time_s": 240.0, "train_config": {"batch_size": 8}, "precision": "bf16",
           "init_from": {"path": str(first), "steps": 300, "valid_elbo_per_sequence": -1.0}})
    _save(first, "vrnn-gauss", 9, {"steps": 300, "wall_time_s": 600.0, "valid_elbo_per_sequence": -1.0})
    _save(d / "vrnn-i-gauss" / "best.safetensors", "vrnn-i-gauss", 3, {"steps": 40, "wall_time_s": 30.0})
    return d


def test_table1_end_to_end(table1, checkpoints, tiny_corpus, tmp_path, capsys):
    from scipy import stats

    out, js = tmp_path / "results.md", tmp_path / "results.json"
    argv = ["--checkpoints", str(checkpoints), "--corpus", str(tiny_corpus), "--samples", "3", "--sequences", "3",
            "--out", str(out), "--json", str(js)]
    assert table1.main(argv) == 0
    md, res = out.read_text(), json.loads(js.read_text())

    first = md.splitlines()[0]  # the command that wrote the doc, runnable as it stands
    assert first.startswith("`PYTHONPATH=. python scripts/table1.py ") and first.endswith("`")
    parsed = shlex.split(first.strip("`"))
    assert parsed[parsed.index("--checkpoints") + 1] == str(checkpoints) and parsed[parsed.index("--sequences") + 1] == "3"
    assert res["command"] == first.strip("`")

    assert set(res["models"]) == {"rnn-gauss", "vrnn-gauss", "vrnn-i-gauss"}
    assert res["models"]["vrnn-gauss"]["checkpoint"].endswith("vrnn-gauss/best.safetensors")
    tr = res["models"]["vrnn-gauss"]["training"]
    assert (tr["steps"], tr["init_steps"], tr["total_steps"], tr["init_wall_time_s"]) == (120, 300, 420, 600.0)
    assert res["models"]["rnn-gauss"]["training"]["total_steps"] == 50
    assert "| VRNN-Gauss |" in md and "first.safetensors (300) | 420 |" in md and "4 min + 10 min (initial run)" in md

    S, total = res["settings"]["sequences"], res["settings"]["sequences_in_split"]
    assert S == min(3, total) and ("A subset" in md) == (total > 3)
    for fam, m in res["models"].items():
        ll, elbo = np.array(m["per_sequence"]["loglik"]), np.array(m["per_sequence"]["elbo"])
        assert len(ll) == S and m["loglik_per_sequence"] == pytest.approx(ll.mean(), abs=1e-2)
        lo = m["loudness"]
        assert lo["speech"]["frames"] + lo["near_silent"]["frames"] == 40 * S
        assert lo["speech"]["per_sequence"] + lo["near_silent"]["per_sequence"] == pytest.approx(elbo.mean(), abs=1e-2)
        if fam.startswith("rnn"):
            np.testing.assert_allclose(ll, elbo, atol=2e-3)

    pairs = {(p["a"], p["b"]): p for p in res["paired_loglik"]}
    assert set(pairs) == {("vrnn-gauss", "vrnn-i-gauss"), ("vrnn-i-gauss", "rnn-gauss"), ("vrnn-gauss", "rnn-gauss")}
    if S >= 2:
        a = np.array(res["models"]["vrnn-gauss"]["per_sequence"]["loglik"])
        b = np.array(res["models"]["vrnn-i-gauss"]["per_sequence"]["loglik"])
        ci = stats.ttest_rel(a, b).confidence_interval(0.95)
        p = pairs[("vrnn-gauss", "vrnn-i-gauss")]
        assert (p["lo"], p["hi"]) == pytest.approx((ci.low, ci.high), abs=0.05)  # JSON rounds per-sequence values

    targets = {t["target"]: t for t in res["targets"]}
    assert targets["VRNN-Gauss log p(x) at or above RNN-GMM's"]["holds"] is None  # no RNN-GMM here
    every = targets["every VRNN above RNN-Gauss"]
    ll = {f: m["loglik_per_sequence"] for f, m in res["models"].items()}
    below = ll["vrnn-gauss"] <= ll["rnn-gauss"] or ll["vrnn-i-gauss"] <= ll["rnn-gauss"]
    assert every["holds"] is (False if below else None)  # two VRNNs above cannot confirm "every VRNN"
    assert "only 2 of 3 VRNNs" in every["detail"]
    assert "Targets:" in capsys.readouterr().out


def test_checkpoint_folders_are_checked(table1, checkpoints, tmp_path):
    found = table1.find_checkpoints(checkpoints)
    assert found == {"rnn-gauss": checkpoints / "rnn-gauss.safetensors",
                     "vrnn-gauss": checkpoints / "vrnn-gauss" / "best.safetensors",
                     "vrnn-i-gauss": checkpoints / "vrnn-i-gauss" / "best.safetensors"}
    dup = tmp_path / "dup"
    _save(dup / "vrnn-gauss.safetensors", "vrnn-gauss", 1, {"steps": 1})
    _save(dup / "run" / "best.safetensors", "vrnn-gauss", 2, {"steps": 2})
    with pytest.raises(SystemExit, match="two vrnn-gauss checkpoints"):
        table1.find_checkpoints(dup)
    with pytest.raises(SystemExit, match="no folder"):
        table1.find_checkpoints(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no \\*.safetensors"):
        table1.find_checkpoints(tmp_path / "empty")


def test_targets_from_known_numbers(table1):
    ll = {"rnn-gauss": 0.0, "rnn-gmm": 100.0, "vrnn-i-gauss": 50.0, "vrnn-gauss": 120.0, "vrnn-gmm": 10.0}
    ok = {"mean": 70.0, "lo": 5.0, "hi": 135.0}
    got = [t["holds"] for t in table1.check_targets(ll, {("vrnn-gauss", "vrnn-i-gauss"): ok})]
    assert got == [True, True, True]
    straddles = {"mean": 70.0, "lo": -5.0, "hi": 145.0}
    got = [t["holds"] for t in table1.check_targets({**ll, "vrnn-gmm": -1.0, "vrnn-gauss": 99.0},
                                                    {("vrnn-gauss", "vrnn-i-gauss"): straddles})]
    assert got == [False, False, False]
    partial = table1.check_targets({k: v for k, v in ll.items() if k != "vrnn-gmm"}, {})
    assert [t["holds"] for t in partial] == [True, None, None]


def test_init_wall_time_only_from_the_file_the_run_started_from(table1, tmp_path):
    src = tmp_path / "src.safetensors"
    _save(src, "vrnn-gauss", 1, {"steps": 2000, "wall_time_s": 5216.0, "valid_elbo_per_sequence": 37.8})
    info = {"training": {"steps": 168, "wall_time_s": 598.1, "state": {"best_step": 168},
                         "init_from": {"path": str(src), "steps": 2000, "valid_elbo_per_sequence": 37.8}}}
    rec = table1.training_record(info)
    assert (rec["steps"], rec["init_steps"], rec["total_steps"], rec["init_wall_time_s"]) == (168, 2000, 2168, 5216.0)
    _save(src, "vrnn-gauss", 2, {"steps": 1500, "wall_time_s": 99.0, "valid_elbo_per_sequence": 500.0})  # replaced
    assert table1.training_record(info)["init_wall_time_s"] is None
    src.unlink()
    assert table1.training_record(info)["init_wall_time_s"] is None and table1.training_record(info)["total_steps"] == 2168
    assert table1.training_record({"training": {"steps": 50}})["total_steps"] == 50
    chained = {"training": {"steps": 1500, "init_from": {"path": str(src), "steps": 500, "total_steps": 2500}}}
    assert table1.training_record(chained)["total_steps"] == 4000  # a continuation of a continuation


def test_subset_is_evenly_spaced(table1):
    assert table1.subset(100, 0).tolist() == list(range(100))
    assert table1.subset(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert table1.subset(3, 10).tolist() == [0, 1, 2]
