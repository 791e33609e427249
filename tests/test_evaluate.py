"""Table 1 estimators: exact RNN log-likelihood, ELBO, importance-sampled log p(x) (Burda et al. 2016)."""

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from vrnn import VRNN, preset
from vrnn.evaluate import score_sequences


def _model(family, seed=0):
    torch.manual_seed(seed)
    return VRNN(preset("tiny", family), 0.0, 0.3).eval()


def test_rnn_loglik_matches_a_direct_computation():
    """Step an nn.LSTMCell by hand and score each frame with torch.distributions."""
    m = _model("rnn-gauss")
    x = torch.randn(2, 6, 200)
    with torch.no_grad():
        got = m(x).elbo
        h = torch.zeros(2, m.config.h_dim)
        c = torch.zeros_like(h)
        total = torch.zeros(2)
        for t in range(6):
            raw = m.decoder_head(m.decoder(h))
            mu, s = raw.chunk(2, -1)
            total += Independent(Normal(mu, torch.nn.functional.softplus(s) + 1e-4), 1).log_prob(x[:, t])
            h, c = m.rnn(m.phi_x(x[:, t]), (h, c))
    torch.testing.assert_close(got, total, rtol=1e-5, atol=1e-3)


def test_rnn_scores_are_exact_and_need_no_samples():
    m = _model("rnn-gmm")
    chunks = np.random.default_rng(0).standard_normal((5, 8000)).astype(np.float32) * 0.3
    a = score_sequences(m, chunks, samples=1, seed=0)
    b = score_sequences(m, chunks, samples=40, seed=1)
    assert a.elbo_per_sequence == pytest.approx(b.loglik_per_sequence, rel=1e-6)
    assert a.n_frames == 40 and a.elbo_per_frame == pytest.approx(a.elbo_per_sequence / 40)


def test_importance_weight_matches_elbo_in_expectation_and_k40_is_not_below():
    """E_q[log p(x,z) - log q(z|x)] = ELBO (analytic KL); L_40 >= L_1 on average."""
    m = _model("vrnn-gauss", seed=3)
    x = torch.randn(1, 8, 200).repeat(400, 1, 1)  # 400 independent posterior paths of one sequence
    with torch.no_grad():
        out = m(x, generator=torch.Generator().manual_seed(0))
        out2 = m(x, generator=torch.Generator().manual_seed(1))
    lw, elbo = out.log_weight, out2.elbo
    se = torch.sqrt(lw.var() / len(lw) + elbo.var() / len(elbo))
    assert abs(lw.mean() - elbo.mean()) < 4 * se, (lw.mean(), elbo.mean(), se)

    chunks = np.random.default_rng(1).standard_normal((6, 1600)).astype(np.float32) * 0.3
    gaps = []
    for seed in range(5):
        s40 = score_sequences(m, chunks, samples=40, seed=seed)
        gaps.append(s40.loglik_per_sequence - s40.elbo_per_sequence)
    assert np.mean(gaps) > 0, gaps


def test_k_sample_bound_is_per_sequence_in_any_batching():
    """L_K takes the log-mean-exp of each sequence's own K weights. Scoring a quiet and a loud sequence together,
    in one batch or two, agrees with scoring each alone to within sampling noise (about 10 nats here), far
    below what a log-mean-exp pooled over sequences or over misaligned rows of the K copies would give
    (either pulls the loud sequence's tens of thousands of nats toward the quiet one's)."""
    m = _model("vrnn-i-gauss", seed=2)
    rng = np.random.default_rng(2)
    quiet, loud = (rng.standard_normal((2, 8000)) * np.array([[0.05], [0.6]])).astype(np.float32)
    alone = [score_sequences(m, c[None], samples=8, seed=0).loglik_per_sequence for c in (quiet, loud)]
    gap = abs(alone[1] - alone[0])
    assert gap > 10_000, alone
    for batch_size in (8, 64):  # one sequence x 8 samples per pass, then both in one pass
        both = score_sequences(m, np.stack([quiet, loud]), samples=8, batch_size=batch_size, seed=0)
        assert both.loglik_per_sequence == pytest.approx(np.mean(alone), abs=0.005 * gap), (batch_size, alone)


def test_results_are_deterministic_and_no_input_is_refused():
    m = _model("vrnn-i-gauss")
    chunks = np.random.default_rng(2).standard_normal((3, 8000)).astype(np.float32) * 0.3
    assert score_sequences(m, chunks, samples=4, seed=7) == score_sequences(m, chunks, samples=4, seed=7)
    with pytest.raises(ValueError, match="No 0.5 s sequences"):
        score_sequences(m, np.zeros((0, 8000), np.float32))


# -- issue 12, Table 1: per-sequence scores, the loudness split, paired intervals --------------------------

def test_per_frame_terms_are_the_elbo_of_the_readable_model_and_sum_to_it():
    """K = 1: one posterior path per sequence; the per-frame terms are log p(x_t | z_t, h_{t-1}) - KL_t of
    `model.forward` driven by the same generator, and their sum per sequence is the reported ELBO."""
    from vrnn.evaluate import score_each_sequence

    m = _model("vrnn-gauss", seed=4)
    chunks = np.random.default_rng(4).standard_normal((3, 1600)).astype(np.float32) * 0.3
    s = score_each_sequence(m, chunks, samples=1, batch_size=64, seed=5, fast=False)
    with torch.no_grad():
        x = m.normalize(torch.from_numpy(chunks).view(3, 8, 200))
        out = m(x, sample=True, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(s.frame_elbo, (out.log_px - out.kl).double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(s.elbo, out.elbo.double().numpy(), rtol=1e-5)
    assert s.frame_elbo.shape == (3, 8) and s.samples == 1
    assert s.summary().elbo_per_sequence == pytest.approx(out.elbo.double().mean().item(), rel=1e-5)


def test_per_sequence_loglik_is_the_log_mean_exp_of_each_sequences_own_weights():
    """K = 4, two sequences per pass: recompute L_K per sequence from the K paths' importance weights of a
    forward pass with the same generator (rows k * b + i), and the per-frame terms as the mean over the K paths."""
    from vrnn.evaluate import score_each_sequence

    m = _model("vrnn-i-gauss", seed=6)
    chunks = np.random.default_rng(6).standard_normal((2, 1200)).astype(np.float32) * np.array([[0.05], [0.5]],
                                                                                             np.float32)
    K = 4
    s = score_each_sequence(m, chunks, samples=K, batch_size=2 * K, seed=9, fast=False)
    with torch.no_grad():
        x = m.normalize(torch.from_numpy(chunks).view(2, 6, 200)).repeat(K, 1, 1)
        out = m(x, sample=True, generator=torch.Generator().manual_seed(9))
    lw = out.log_weight.double().view(K, 2).numpy()  # [K, 2]
    expect = np.log(np.mean(np.exp(lw - lw.max(0)), axis=0)) + lw.max(0)
    np.testing.assert_allclose(s.loglik, expect, rtol=1e-6)
    np.testing.assert_allclose(s.frame_elbo, (out.log_px - out.kl).double().view(K, 2, 6).mean(0).numpy(), rtol=1e-6)


def test_rnn_per_frame_terms_sum_to_the_exact_loglik():
    from vrnn.evaluate import score_each_sequence

    m = _model("rnn-gmm")
    chunks = np.random.default_rng(7).standard_normal((4, 1600)).astype(np.float32) * 0.3
    s = score_each_sequence(m, chunks, samples=40)
    assert s.samples == 1
    np.testing.assert_allclose(s.frame_elbo.sum(1), s.loglik, rtol=1e-6)


def test_frame_rms_dbfs_on_a_hand_made_waveform():
    from vrnn.audio import frame_rms_dbfs

    n = np.arange(200)
    frames = [np.full(200, 0.1), np.sin(2 * np.pi * n / 20),  # 10 whole periods: RMS 1/sqrt(2)
              np.zeros(200), np.full(200, -1e-4), np.where(n % 2 == 0, 0.5, -0.5)]
    db = frame_rms_dbfs(np.concatenate(frames).astype(np.float32))
    np.testing.assert_allclose(db, [-20.0, -10 * np.log10(2), -200.0, -80.0, 20 * np.log10(0.5)], atol=1e-4)
    assert frame_rms_dbfs(np.zeros((3, 450))).shape == (3, 2)  # a tail shorter than a frame is dropped


def test_loudness_split_on_a_hand_made_waveform():
    """Two sequences of four 200-sample frames at known levels; the scores of each class averaged by hand."""
    from vrnn.evaluate import loudness_split

    levels = np.array([[0.1, 1e-4, 0.3, 0.0], [1.2e-3, 2e-4, 0.05, 0.02]])  # constant frames: RMS = |level|
    # dBFS: [[-20, -80, -10.5, floor], [-58.4, -74, -26, -34]]
    chunks = np.repeat(levels, 200, axis=1).astype(np.float32)
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    got = loudness_split(scores, chunks, threshold_db=-60.0)
    quiet = [2.0, 4.0, 6.0]  # -80 dB, digital silence, -74 dB
    speech = [1.0, 3.0, 5.0, 7.0, 8.0]
    assert got["near_silent"]["frames"] == 3 and got["speech"]["frames"] == 5
    assert got["near_silent"]["mean_per_frame"] == pytest.approx(np.mean(quiet))
    assert got["speech"]["mean_per_frame"] == pytest.approx(np.mean(speech))
    assert got["speech"]["share"] == pytest.approx(5 / 8)
    assert got["speech"]["per_sequence"] + got["near_silent"]["per_sequence"] == pytest.approx(scores.sum(1).mean())
    assert got["near_silent"]["per_sequence"] == pytest.approx(sum(quiet) / 2)
    louder = loudness_split(scores, chunks, threshold_db=-25.0)  # -34 and -26 become near-silent too
    assert louder["near_silent"]["frames"] == 6 and louder["speech"]["mean_per_frame"] == pytest.approx(np.mean([1.0, 3.0]))
    empty = loudness_split(scores, np.ones_like(chunks), threshold_db=-60.0)
    assert empty["near_silent"] == {"frames": 0, "share": 0.0, "mean_per_frame": None, "per_sequence": 0.0}
    with pytest.raises(ValueError, match="same S"):
        loudness_split(scores, chunks[:1])


def test_loudness_bands_on_a_hand_made_waveform_and_agree_with_the_split():
    from vrnn.evaluate import loudness_bands, loudness_split

    levels = np.array([[0.1, 1e-4, 0.3, 0.0], [1.2e-3, 2e-4, 0.05, 0.02]])  # dBFS [[-20, -80, -10.5, -200], [-58.4, -74, -26, -34]]
    chunks = np.repeat(levels, 200, axis=1).astype(np.float32)
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    bands = loudness_bands(scores, chunks, [-75.0, -40.0, -15.0])
    assert [(b["lo_db"], b["hi_db"]) for b in bands] == [(None, -75.0), (-75.0, -40.0), (-40.0, -15.0), (-15.0, None)]
    assert [b["frames"] for b in bands] == [2, 2, 3, 1]  # {-80, -200}, {-58.4, -74}, {-20, -26, -34}, {-10.5}
    assert [b["mean_per_frame"] for b in bands] == pytest.approx([3.0, 5.5, (1 + 7 + 8) / 3, 3.0])
    assert sum(b["per_sequence"] for b in bands) == pytest.approx(scores.sum(1).mean())
    two = loudness_bands(scores, chunks, [-60.0])
    split = loudness_split(scores, chunks, -60.0)
    assert (two[0]["frames"], two[0]["mean_per_frame"]) == (split["near_silent"]["frames"],
                                                            pytest.approx(split["near_silent"]["mean_per_frame"]))
    assert two[1]["mean_per_frame"] == pytest.approx(split["speech"]["mean_per_frame"])
    with pytest.raises(ValueError, match="increase"):
        loudness_bands(scores, chunks, [-40.0, -60.0])


def test_paired_difference_is_the_paired_t_interval():
    """Against scipy.stats.ttest_rel's interval and a t quantile from a printed table (n - 1 = 4: 2.7764),
    so a normal quantile (1.96) or a population sd (ddof 0) would fail."""
    from scipy import stats

    from vrnn.evaluate import paired_difference

    rng = np.random.default_rng(0)
    a = rng.normal(10, 3, 100)
    b = a - rng.normal(0.8, 2, 100)
    got = paired_difference(a, b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (got.lo, got.hi) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert got.mean == pytest.approx(np.mean(a - b)) and got.n == 100

    a5, b5 = np.array([3.0, 5.0, 4.0, 6.0, 2.0]), np.array([1.0, 2.0, 2.0, 5.0, 2.0])
    d = a5 - b5  # [2, 3, 2, 1, 0]: mean 1.6, sd (ddof 1) sqrt(1.3)
    g = paired_difference(a5, b5)
    assert g.t == pytest.approx(2.7764, abs=1e-4)
    assert g.se == pytest.approx(np.sqrt(1.3 / 5))
    assert (g.lo, g.hi) == pytest.approx((1.6 - 2.7764 * np.sqrt(1.3 / 5), 1.6 + 2.7764 * np.sqrt(1.3 / 5)), abs=1e-3)
    assert g.excludes_zero and d.mean() == pytest.approx(g.mean)
    assert not paired_difference(a5, a5 + np.array([1.0, -1.0, 0.5, -0.5, 0.2])).excludes_zero
    assert paired_difference(b5, a5).hi < 0 and paired_difference(b5, a5).excludes_zero
    for bad in ((a5, b5[:4]), (a5[:1], b5[:1]), (a5[None], b5[None])):
        with pytest.raises(ValueError):
            paired_difference(*bad)
