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
