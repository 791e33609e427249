"""vrnn.latent: the frame-by-frame pass equals VRNN.forward, reconstruction, continuation (same seed, same audio;
from t = 0 it is `generate`), PCA projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import speechlike

import vrnn
from vrnn.latent import Projection, continue_clip, fit_checkpoint_projection, fit_pca, listen, reconstruct

FAMILIES = ["vrnn-gauss", "vrnn-gmm", "vrnn-i-gauss", "rnn-gauss", "rnn-gmm"]


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    torch.manual_seed(3)
    return vrnn.VRNN(vrnn.preset("tiny", request.param), 0.0, 0.1).eval()


def test_listen_equals_forward_along_the_posterior_mean(model):
    w = speechlike(0.6)
    heard = listen(model, w)
    x = model.normalize(torch.from_numpy(vrnn.audio.frame(w)))[None]
    with torch.no_grad():
        out = model(x, sample=False)
    np.testing.assert_allclose(heard.log_px.numpy(), out.log_px[0].numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(heard.kl.numpy(), out.kl[0].numpy(), rtol=1e-4, atol=1e-4)
    if model.config.has_latent:
        np.testing.assert_allclose(heard.z_mean.numpy(), out.posterior_mean[0].numpy(), rtol=1e-4, atol=1e-5)
    assert heard.x_mean.shape == (48, 200)


def test_reconstruction_is_the_decoder_mean_denormalised(model):
    w = speechlike(0.5)
    r = reconstruct(model, w)
    assert r.dtype == np.float32 and r.shape == (8000,) and np.isfinite(r).all()
    heard = listen(model, w)
    np.testing.assert_allclose(r, (heard.x_mean * model.x_std + model.x_mean).reshape(-1).numpy(), rtol=1e-6)


def test_continuation_from_zero_is_generate_and_a_seed_gives_the_same_audio(model):
    w = speechlike(1.0)
    for fast in (True, False):
        ref = vrnn.generate(model, seconds=0.25, seed=7, fast=fast)
        got = continue_clip(model, w, at=0.0, seconds=0.25, seed=7, fast=fast)
        assert got.shape == ref.shape == (4000,)
        np.testing.assert_array_equal(got, ref)  # the same loop, the same noise
    a = continue_clip(model, w, at=0.5, seconds=0.25, seed=1)
    b = continue_clip(model, w, at=0.5, seconds=0.25, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, continue_clip(model, w, at=0.5, seconds=0.25, seed=2))
    assert not np.allclose(a, continue_clip(model, w, at=0.25, seconds=0.25, seed=1))  # the clip conditions it
    # the fused loop and the readable model give the same audio
    np.testing.assert_allclose(a, continue_clip(model, w, at=0.5, seconds=0.25, seed=1, fast=False),
                               rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))


def test_continuation_is_listen_then_the_prior_frame_by_frame(model):
    """The readable path written out: condition with `listen`, then each frame z_t ~ p(z_t | h_{t-1}),
    x_t ~ p(x_t | z_t, h_{t-1}), h_t = LSTM([phi_x(x_t), phi_z(z_t)], h_{t-1}) from that state, with
    `generate`'s noise for the seed (this was `continue_clip`'s own loop before `VRNN.sample(state=...)`;
    it gives the same audio to the bit)."""
    from vrnn.model import generation_noise

    w, at, n_new, seed = speechlike(1.0), 0.6, 24, 3
    state = listen(model, w, 48).state  # the whole frames before 0.6 s
    noise = generation_noise(model.config, n_new, 1, torch.Generator().manual_seed(seed))
    out = []
    with torch.no_grad():
        for t in range(n_new):
            h, _ = state
            phi_z_t = None
            if model.config.has_latent:
                mu_0, sigma_0 = model.prior_params(h)
                phi_z_t = model.phi_z(mu_0 + sigma_0 * noise.eps_z[t])
            x_t = model.draw_frame(model.decoder_params(phi_z_t, h), None if noise.gumbel is None else noise.gumbel[t],
                                   noise.eps_x[t])
            out.append(x_t)
            phi_x_t = model.phi_x(x_t)
            state = model.rnn(phi_x_t if phi_z_t is None else torch.cat([phi_x_t, phi_z_t], -1), state)
    ref = model.denormalize(torch.cat(out)).reshape(-1).numpy()
    got = continue_clip(model, w, at=at, seconds=n_new * 0.0125, seed=seed, fast=False)
    np.testing.assert_array_equal(got, ref)


def test_continuation_rejects_bad_arguments(model):
    with pytest.raises(ValueError):
        continue_clip(model, speechlike(0.5), at=0.1, seconds=0)
    with pytest.raises(ValueError):
        continue_clip(model, speechlike(0.5), at=-1, seconds=1)
    with pytest.raises(vrnn.AudioError):
        continue_clip(model, np.zeros(100, np.float32), at=0.0, seconds=1)


def test_progress_is_reported_until_the_end():
    torch.manual_seed(0)
    m = vrnn.VRNN(vrnn.preset("tiny"), 0.0, 0.1).eval()
    calls = []
    listen(m, speechlike(8.0), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (640, 640) and [c[0] for c in calls] == sorted(c[0] for c in calls) and len(calls) >= 3


def test_pca_finds_the_axes_and_is_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((6, 6)))[0][:, :2].T  # two orthonormal directions in 6-D
    z = 5 + rng.standard_normal((500, 2)) * [3.0, 1.0] @ basis + 0.01 * rng.standard_normal((500, 6))
    p = fit_pca(z, k=3)
    assert p.components.shape == (3, 6) and p.explained[0] > p.explained[1] > p.explained[2]
    assert abs(abs(p.components[0] @ basis[0]) - 1) < 1e-3 and abs(abs(p.components[1] @ basis[1]) - 1) < 1e-3
    q = fit_pca(z[::-1] * 1.0, k=3)  # same data, other order: the same axes, signs included
    np.testing.assert_allclose(q.components, p.components, atol=1e-8)
    y = p(z)
    assert y.shape == (500, 3) and abs(y.mean()) < 1e-6
    p.save(tmp_path / "p.json", checkpoint_sha256="abc")
    back, meta = Projection.load(tmp_path / "p.json")
    np.testing.assert_allclose(back(z), y, rtol=1e-6)
    assert meta["checkpoint_sha256"] == "abc"


def test_checkpoint_projection_from_windows():
    torch.manual_seed(0)
    m = vrnn.VRNN(vrnn.preset("tiny"), 0.0, 0.1).eval()
    windows = np.stack([speechlike(0.5, seed=i, f0=100 + 10 * i) for i in range(6)])
    p = fit_checkpoint_projection(m, windows, "six synthetic windows")
    assert p.components.shape == (3, m.config.z_dim) and p.source == "six synthetic windows"
    rnn = vrnn.VRNN(vrnn.preset("tiny", "rnn-gauss"), 0.0, 0.1).eval()
    with pytest.raises(ValueError, match="no latent"):
        fit_checkpoint_projection(rnn, windows, "")
