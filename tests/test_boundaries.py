"""Boundary scores against mir_eval and by hand; peak picking; the baselines on real audio."""

import warnings

import mir_eval
import numpy as np
import pytest

from vrnn.boundaries import (
    PeakPicking,
    Scores,
    count_hits,
    energy_change,
    inside_speech,
    pick_peaks,
    score,
    score_clip,
    spectral_flux,
    uniform_boundaries,
)
from vrnn.segments import Segment, make_reference


def test_hits_equal_mir_eval_maximum_matching():
    rng = np.random.default_rng(0)
    for _ in range(500):
        r = np.sort(rng.random(rng.integers(1, 25)) * 2)
        e = np.sort(rng.random(rng.integers(1, 25)) * 2)
        assert count_hits(r, e, 0.02) == len(mir_eval.util.match_events(r, e, 0.02))


def test_precision_recall_f1_equal_mir_eval_onset_and_segment_detection():
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(100):
            r = np.unique(rng.random(rng.integers(2, 30)) * 3)  # no exact ties at the window's edge
            near = r + rng.normal(0, 0.02, len(r))  # detections scattered around the references
            e = np.unique(np.r_[near[near > 0.05], rng.random(rng.integers(0, 10)) * 3])
            s = score(r, e, 0.02)
            f, p, rc = mir_eval.onset.f_measure(r, e, window=0.02)
            assert (s.f1, s.precision, s.recall) == pytest.approx((f, p, rc))
            # the same boundaries as segment intervals: mir_eval.segment.detection compares interval edges
            edges = lambda b: np.stack([np.r_[0.0, b], np.r_[b, 3.5]], 1)  # noqa: E731
            p2, r2, f2 = mir_eval.segment.detection(edges(r), edges(e), window=0.02, trim=True)
            assert (s.precision, s.recall, s.f1) == pytest.approx((p2, r2, f2))


def test_one_to_one_hand_case_and_r_value():
    ref = np.array([0.10, 0.20, 0.30])
    est = np.array([0.095, 0.105, 0.215, 0.40])  # two near 0.10 (only one counts), one near 0.20, one miss
    s = score(ref, est, 0.02)
    assert (s.hits, s.n_ref, s.n_est) == (2, 3, 4)
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.over_segmentation == pytest.approx(1 / 3)
    os_, hr = 1 / 3, 2 / 3
    r1, r2 = np.sqrt((1 - hr) ** 2 + os_ ** 2), (-os_ + hr - 1) / np.sqrt(2)
    assert s.r_value == pytest.approx(1 - (abs(r1) + abs(r2)) / 2)
    perfect = score(ref, ref, 0.02)
    assert perfect.f1 == 1 and perfect.r_value == pytest.approx(1.0)
    assert score(ref, [], 0.02).f1 == 0 and score([], est, 0.02).recall == 0
    assert (Scores(1, 2, 3) + Scores(2, 3, 4)).to_dict()["precision"] == pytest.approx(3 / 7)
    assert score([0.1], [0.12], 0.02).hits == 1 and score([0.1], [0.1201], 0.02).hits == 0  # window is inclusive


def test_phone_to_phone_leaves_silence_edges_out():
    ref = make_reference([Segment(0, 0.1, "sil"), Segment(0.1, 0.2, "k"), Segment(0.2, 0.35, "ae"),
                          Segment(0.35, 0.4, "t"), Segment(0.4, 0.6, "sil")], 0.6)
    est = np.array([0.05, 0.1, 0.21, 0.3, 0.35, 0.5])
    np.testing.assert_allclose(inside_speech(est, ref, 0.02), [0.21, 0.3, 0.35])
    s = score_clip(ref, est, 0.02)
    assert (s["all"].hits, s["all"].n_ref, s["all"].n_est) == (3, 4, 6)
    assert (s["p2p"].hits, s["p2p"].n_ref, s["p2p"].n_est) == (2, 2, 3)


def test_peak_picking_distance_prominence_and_top_n():
    t = np.arange(100) * 0.01
    v = np.zeros(100)
    v[[10, 13, 40, 70]] = [1.0, 0.9, 0.5, 0.03]
    assert list(pick_peaks(t, v, PeakPicking(min_distance=0.0, prominence=0.0))) == pytest.approx([0.1, 0.13, 0.4, 0.7])
    assert list(pick_peaks(t, v, PeakPicking(min_distance=0.05, prominence=0.0))) == pytest.approx([0.1, 0.4, 0.7])
    assert list(pick_peaks(t, v, PeakPicking(min_distance=0.01, prominence=0.1))) == pytest.approx([0.1, 0.13, 0.4])
    assert list(pick_peaks(t, v, PeakPicking(min_distance=0.01, top_n=True), n=2)) == pytest.approx([0.1, 0.13])
    with pytest.raises(ValueError):
        pick_peaks(t, v, PeakPicking(top_n=True))
    np.testing.assert_allclose(uniform_boundaries(1.0, 3), [0.25, 0.5, 0.75])


def test_baselines_peak_at_a_step_in_real_audio():
    from pathlib import Path

    from vrnn.audio import load_audio

    x, sr = load_audio(Path(__file__).parent.parent / "assets/examples/allison-vm-nobodyavail.wav")
    floor = np.random.default_rng(0).normal(0, 1e-4, 8000).astype(np.float32)  # 0.5 s of room tone (-80 dB)
    y = np.concatenate([floor, x[:16000]])  # then speech, which begins ~0.11 s into x
    for fn in (spectral_flux, energy_change):
        t, v = fn(y, sr)
        assert len(t) == len(v) and np.all(np.diff(t) > 0) and abs(t[1] - t[0] - 0.01) < 1e-9
        # steady noise changes little; the onset of speech (0.61 s) changes a lot
        assert v[(t > 0.05) & (t < 0.45)].max() < 0.3 * v[(t > 0.55) & (t < 0.7)].max()
