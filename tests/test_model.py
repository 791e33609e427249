"""Model shapes, the ELBO's parts, gradients through the whole recurrence, sampling."""

import dataclasses

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vrnn import FAMILIES, VRNN, preset


def _model(family, seed=0):
    torch.manual_seed(seed)
    return VRNN(preset("tiny", family), 0.0, 0.1)


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes(family):
    m = _model(family)
    B, T, X, Z = 3, 7, 200, m.config.z_dim
    x = torch.randn(B, T, X)
    out = m(x, generator=torch.Generator().manual_seed(0))  # a sampled path: z != the posterior mean
    assert out.log_px.shape == (B, T) and out.kl.shape == (B, T) and out.elbo.shape == (B,)
    if m.config.has_latent:
        for t in (out.posterior_mean, out.posterior_std, out.prior_mean, out.prior_std, out.z):
            assert t.shape == (B, T, Z)
        assert (out.kl >= 0).all()
        assert (out.posterior_std >= m.config.sigma_min).all()
        # KL_t is KL(q || p) (not p || q) summed over z, and the importance weight's log-densities are the
        # Gaussians' at the z used: each against torch.distributions, from the returned parameters
        q = Independent(Normal(out.posterior_mean, out.posterior_std), 1)
        p = Independent(Normal(out.prior_mean, out.prior_std), 1)
        torch.testing.assert_close(out.kl, kl_divergence(q, p), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.log_qz, q.log_prob(out.z), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.log_pz, p.log_prob(out.z), rtol=1e-4, atol=1e-4)
    else:
        assert out.posterior_mean is None and torch.count_nonzero(out.kl) == 0
    # causal and per sequence: frames after t and the other sequences in the batch change nothing at step t
    eps = (out.z - out.posterior_mean) / out.posterior_std if m.config.has_latent else None  # the draws used
    part = m(x[1:2, :4], noise=None if eps is None else eps[1:2, :4])
    torch.testing.assert_close(part.log_px, out.log_px[1:2, :4], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(part.kl, out.kl[1:2, :4], rtol=1e-4, atol=1e-5)
    assert m.sample(5, batch_size=2).shape == (2, 5, X)


def test_independent_prior_is_standard_normal():
    out = _model("vrnn-i-gauss")(torch.randn(2, 4, 200))
    assert torch.all(out.prior_mean == 0) and torch.all(out.prior_std == 1)


def test_learned_prior_depends_on_history():
    out = _model("vrnn-gauss")(torch.randn(2, 6, 200))
    assert not torch.allclose(out.prior_mean[:, 1], out.prior_mean[:, 5])


def test_mean_path_is_deterministic_and_noise_is_used():
    m = _model("vrnn-gauss")
    x = torch.randn(2, 5, 200)
    a, b = m(x, sample=False), m(x, sample=False)
    torch.testing.assert_close(a.elbo, b.elbo)
    torch.testing.assert_close(a.z, a.posterior_mean)
    noise = torch.randn(2, 5, m.config.z_dim)
    c, d = m(x, noise=noise), m(x, noise=noise)
    torch.testing.assert_close(c.elbo, d.elbo)
    torch.testing.assert_close(c.z, c.posterior_mean + c.posterior_std * noise)
    assert not torch.allclose(c.elbo, a.elbo)


@pytest.mark.parametrize("family", ["vrnn-gauss", "rnn-gmm"])
def test_gradients_reach_every_parameter_through_time(family):
    """No detached h: the last step's loss depends on the first frame, and every weight gets a gradient."""
    m = _model(family)
    x = torch.randn(2, 6, 200, requires_grad=True)
    out = m(x)
    out.log_px[:, -1].sum().backward()
    assert x.grad[:, 0].abs().sum() > 0
    m.zero_grad()
    (-m(x).elbo.mean()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_normalisation_round_trip():
    m = VRNN(preset("tiny"), 0.01, 0.2)
    w = torch.randn(100)
    torch.testing.assert_close(m.denormalize(m.normalize(w)), w)
    torch.testing.assert_close(m.normalize(torch.tensor(0.21)), torch.tensor(1.0))


def test_init_follows_the_authors():
    m = _model("vrnn-gauss")
    H = m.config.h_dim
    assert m.phi_x[0].weight.abs().max() <= 0.08
    w = m.rnn.weight_hh[:H]
    torch.testing.assert_close(w @ w.T, torch.eye(H), atol=1e-5, rtol=0)


def test_config_validation():
    with pytest.raises(ValueError, match="Unknown model family"):
        preset("tiny", "vrnn-foo")
    with pytest.raises(ValueError, match="Unknown preset"):
        preset("huge")
    cfg = preset("paper")
    assert (cfg.h_dim, cfg.z_dim, cfg.phi_x, cfg.decoder) == (4000, 200, (600,) * 4, (600,) * 4)


def test_gumbel_noise_draws_the_mixture_component_with_softmax_probabilities():
    """The component k_t = argmax_k (logits_k + g_k) of `generation_noise` must be a draw from softmax(logits)."""
    from vrnn.model import generation_noise

    logits = torch.tensor([2.0, 0.0, -1.0, 1.0, 0.5])
    n = 40_000
    cfg = dataclasses.replace(preset("tiny", "vrnn-gmm"), n_components=len(logits))
    g = generation_noise(cfg, n, 1, torch.Generator().manual_seed(0)).gumbel[:, 0]  # [n, K]
    freq = torch.bincount((logits + g).argmax(-1), minlength=len(logits)).double() / n
    p = torch.softmax(logits.double(), -1)
    se = (p * (1 - p) / n).sqrt()
    assert torch.all((freq - p).abs() < 4 * se), (freq, p)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_uses_the_given_noise(family):
    """`sample(noise=...)` equals `sample(generator=...)` for the noise that generator draws."""
    from vrnn.model import generation_noise

    m = _model(family)
    noise = generation_noise(m.config, 9, 2, torch.Generator().manual_seed(3))
    a = m.sample(9, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(m.sample(9, 2, noise=noise), a, rtol=0, atol=0)
    assert not torch.allclose(m.sample(9, 2, generator=torch.Generator().manual_seed(4)), a)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_starts_from_a_given_state(family):
    """`sample(state=...)`: zeros are the default; another state changes the frames; the state is not modified."""
    from vrnn.model import generation_noise

    m = _model(family)
    H = m.config.h_dim
    noise = lambda: generation_noise(m.config, 7, 2, torch.Generator().manual_seed(1))  # noqa: E731
    zeros = (torch.zeros(2, H), torch.zeros(2, H))
    torch.testing.assert_close(m.sample(7, 2, noise=noise(), state=zeros), m.sample(7, 2, noise=noise()),
                               rtol=0, atol=0)
    state = (torch.full((2, H), 0.5), torch.full((2, H), -0.5))
    x = m.sample(7, 2, noise=noise(), state=state)
    assert x.shape == (2, 7, m.config.x_dim) and not torch.allclose(x, m.sample(7, 2, noise=noise()))
    assert torch.all(state[0] == 0.5) and torch.all(state[1] == -0.5)
    with pytest.raises(ValueError, match="shape"):
        m.sample(7, 2, noise=noise(), state=(state[0][:1], state[1][:1]))  # one state for a batch of two
