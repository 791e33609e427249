"""scripts/valid_curves.py: validation rows of several runs side by side, resumed rows replaced."""

from __future__ import annotations

import json

from scripts.valid_curves import table, valid_rows


def test_valid_rows_keep_the_last_row_of_a_step_and_skip_training_rows(tmp_path):
    f = tmp_path / "metrics.jsonl"
    rows = [{"step": 10, "train_elbo_per_sequence": 5.0}, {"step": 42, "valid_elbo_per_sequence": 1.0},
            {"step": 42, "valid_elbo_per_sequence": 2.5}, {"step": 84, "valid_elbo_per_sequence": -3.0}]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    assert valid_rows(f) == {42: 2.5, 84: -3.0}


def test_table_thins_rows_keeps_the_last_and_names_each_runs_best():
    curves = {"a": {0: -10.0, 42: 5.0, 84: 7.0, 126: 6.0}, "b": {0: 1.0, 126: 9.0}}
    lines = table(curves, every=80).splitlines()
    assert lines[0] == "| update | a | b |"
    assert [line.split("|")[1].strip() for line in lines[2:-1]] == ["0", "84", "126"]
    assert lines[2] == "| 0 | -10 | 1 |" and lines[3] == "| 84 | 7 |  |"
    assert lines[-1] == "| best | 7 @ 84 | 9 @ 126 |"
