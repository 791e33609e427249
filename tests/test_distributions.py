"""The log-densities and KL against torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from vrnn.distributions import gaussian_kl, gaussian_log_prob, gmm_log_prob, log_mean_exp, std_from_raw


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def test_gaussian_log_prob_matches_torch():
    x, mu = _rand(4, 7, 200, seed=1), _rand(4, 7, 200, seed=2)
    sigma = std_from_raw(_rand(4, 7, 200, seed=3))
    ref = Independent(Normal(mu, sigma), 1).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, mu, sigma), ref)


def test_gaussian_kl_matches_torch_and_is_nonnegative():
    mq, mp = _rand(5, 11, 16, seed=4), _rand(5, 11, 16, seed=5)
    sq, sp = std_from_raw(_rand(5, 11, 16, seed=6)), std_from_raw(_rand(5, 11, 16, seed=7))
    ref = kl_divergence(Normal(mq, sq), Normal(mp, sp)).sum(-1)
    got = gaussian_kl(mq, sq, mp, sp)
    torch.testing.assert_close(got, ref)
    assert (got >= 0).all()
    assert torch.allclose(gaussian_kl(mq, sq, mq, sq), torch.zeros(5, 11, dtype=torch.float64))


def test_gmm_log_prob_matches_mixture_same_family():
    K, D = 20, 200
    x = _rand(3, 5, D, seed=8)
    logits, mu = _rand(3, 5, K, seed=9), _rand(3, 5, K, D, seed=10)
    sigma = std_from_raw(_rand(3, 5, K, D, seed=11))
    ref = MixtureSameFamily(Categorical(logits=logits), Independent(Normal(mu, sigma), 1)).log_prob(x)
    torch.testing.assert_close(gmm_log_prob(x, logits, mu, sigma), ref)


def test_gmm_with_one_component_is_a_gaussian():
    x, mu = _rand(6, 10, seed=12), _rand(6, 1, 10, seed=13)
    sigma = std_from_raw(_rand(6, 1, 10, seed=14))
    torch.testing.assert_close(gmm_log_prob(x, torch.zeros(6, 1, dtype=torch.float64), mu, sigma),
                               gaussian_log_prob(x, mu[:, 0], sigma[:, 0]))


def test_sigma_floor():
    assert std_from_raw(torch.tensor([-1e4])).item() == pytest.approx(1e-4)


def test_log_mean_exp():
    w = _rand(40, 3, seed=15)
    torch.testing.assert_close(log_mean_exp(w, 0), torch.log(torch.exp(w).mean(0)))
    big = torch.full((4,), 1000.0, dtype=torch.float64)
    assert log_mean_exp(big).item() == pytest.approx(1000.0)
    assert math.isfinite(log_mean_exp(big).item())
