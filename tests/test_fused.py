"""The fast path (vrnn/fused.py) against the readable model (vrnn/model.py), same weights.

`FusedVRNN` batches, fuses and reorders work for speed; `VRNN` is the model as the paper writes it. On
random weights and inputs, for every family, both must give the same per-step KL_t, log p(x_t | .),
delta_t and ELBO (float32: 1e-4 of each quantity's scale; float64: 1e-9), the same gradients, and the
same generated audio for the same seed; and on every bundled checkpoint the same `analyze` output on
an example clip (float64, 1e-9). So no speed-up can silently change a number. No timing here:
benchmarks/engine.py measures speed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vrnn.fused as fused_module
from vrnn import FAMILIES, VRNN, FusedVRNN, ModelConfig, analyze, generate, load_audio, load_checkpoint, preset
from vrnn.model import generation_noise

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-4
RTOL64 = 1e-9


def two_layer(family: str) -> ModelConfig:
    """Small, with two layers per network and every width different, so a wrong slice cannot hide."""
    return ModelConfig(family=family, h_dim=24, z_dim=6, phi_x=(20, 16), phi_z=(12, 10), encoder=(18, 14),
                       prior=(16, 12), decoder=(22, 18), n_components=3)


CONFIGS = {"tiny": lambda family: preset("tiny", family), "two-layer": two_layer}


def random_model(config: ModelConfig, seed: int = 0) -> VRNN:
    """Weights and biases ~ U(-0.3, 0.3): larger than the initialisation, so every term matters."""
    model = VRNN(config, x_mean=0.01, x_std=0.2)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 0.6 - 0.3)
    return model.eval()


def close(actual, expected, what: str, rtol: float = RTOL) -> None:
    """Equal within rtol relative to the quantity's own scale (its largest magnitude)."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-6), msg=lambda m: f"{what}: {m}")


@pytest.fixture(params=[1, 2], ids=["whole", "split"])
def threads(request):
    """2: the fast path's large products run as 2 column blocks (as for batch-1 inference on 2 threads)."""
    return request.param


def fast(model: VRNN, threads: int = 1, **kw) -> FusedVRNN:
    """The fast path; with threads > 1 every loop weight is split, however small (split_min_bytes=0)."""
    return FusedVRNN(model, threads=threads, split_min_bytes=0 if threads > 1 else fused_module.SPLIT_MIN_BYTES, **kw)


@pytest.fixture(params=[(f, c) for f in FAMILIES for c in CONFIGS], ids=lambda p: f"{p[0]}-{p[1]}")
def model(request):
    family, cfg = request.param
    return random_model(CONFIGS[cfg](family))


def test_split_products_are_used_and_exact(threads):
    """With threads=2 the loop weights really are column blocks, and a blocked product equals addmm."""
    m = fast(random_model(two_layer("vrnn-gauss")), threads)
    with torch.no_grad():
        w = m._recurrence_weights()
        assert w["W_h"].dim() == (3 if threads > 1 else 2)
        gen = torch.Generator().manual_seed(4)
        x, c, W = (torch.randn(*s, generator=gen) for s in ((2, 24), (2, 96), (24, 96)))
        blocked = fused_module._split_cols(W.t(), threads, 0)  # takes nn.Linear's [out, in]
        torch.testing.assert_close(fused_module._addmm(c, x, blocked), torch.addmm(c, x, W), rtol=1e-6, atol=1e-6)


def test_the_caller_picks_the_thread_split():
    """`inference_threads`: 1 (or VRNN_THREADS) for small CPU batches, 1 for large ones and other devices."""
    assert fused_module.inference_threads(1, "cpu") == 1
    assert fused_module.inference_threads(64, "cpu") == 1
    assert fused_module.inference_threads(1, "meta") == 1


def test_batch1_passes_default_to_one_thread_and_restore_torchs_setting(monkeypatch):
    """analyze/generate run a batch-1 pass on `default_threads()` (1 unless VRNN_THREADS) and put torch's
    thread count back afterwards."""
    seen = []
    real = FusedVRNN.sample

    def spy(self, *a, **k):
        seen.append((self.threads, torch.get_num_threads()))
        return real(self, *a, **k)

    monkeypatch.setattr(FusedVRNN, "sample", spy)
    before = torch.get_num_threads()
    m = random_model(preset("tiny", "vrnn-gauss"))
    generate(m, seconds=0.1)
    monkeypatch.setenv("VRNN_THREADS", "2")
    assert fused_module.default_threads() == 2
    generate(m, seconds=0.1)
    generate(m, seconds=0.1, threads=1)
    assert seen == [(1, 1), (2, 2), (1, 1)] and torch.get_num_threads() == before
    monkeypatch.setenv("VRNN_THREADS", "x")
    assert fused_module.default_threads() == 1


def test_fast_path_shares_the_models_parameters():
    """Built from the model's own tensors, not copies: a change to the model shows in the fast path."""
    m = random_model(preset("tiny", "vrnn-gauss"))
    f = FusedVRNN(m)
    assert {id(p) for p in f.parameters()} == {id(p) for p in m.parameters()}
    x = torch.randn(1, 5, 200)
    before = f(x, sample=False).elbo
    with torch.no_grad():
        m.decoder_head.bias.add_(0.1)
    assert not torch.allclose(f(x, sample=False).elbo, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("block", [fused_module.BLOCK_FRAMES, 7], ids=["one-block", "blocks-of-7"])
@pytest.mark.parametrize("sample", [True, False], ids=["sampled", "mean-path"])
def test_teacher_forced_pass_matches_readable_model(model, sample, block, dtype, threads):
    """Float32 within 1e-4 (the issue's bar); float64 to 1e-9, i.e. the same function, only rounded."""
    model = model.to(dtype)
    rtol = RTOL if dtype == torch.float32 else RTOL64
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 23, model.config.x_dim, generator=gen, dtype=dtype)
    noise = torch.randn(3, 23, model.config.z_dim, generator=gen, dtype=dtype)
    with torch.no_grad():  # blocks of 7: the LSTM state is carried over block boundaries inside the clip
        a, b = fast(model, threads, block_frames=block)(x, sample=sample, noise=noise), model(x, sample=sample, noise=noise)
    close(a.log_px, b.log_px, "log p(x_t | .)", rtol)
    close(a.kl, b.kl, "KL_t", rtol)
    close(a.elbo, b.elbo, "ELBO", rtol)
    if model.config.has_latent:
        assert float(b.kl.abs().max()) > 1e-3  # the check is not vacuous
        for name in ("log_pz", "log_qz", "posterior_mean", "posterior_std", "prior_mean", "prior_std", "z"):
            close(getattr(a, name), getattr(b, name), name, rtol)
        close(a.log_weight, b.log_weight, "log importance weight", rtol)
        if not sample:
            torch.testing.assert_close(b.z, b.posterior_mean, rtol=0, atol=0)
    else:
        assert a.posterior_mean is None and b.posterior_mean is None and float(a.kl.abs().max()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_gradients_match_readable_model(model, dtype):
    """Training uses the fast path: its loss and gradients equal the readable model's. In float64 the two
    are the same function to 1e-9; in float32 within RTOL at these sizes (at larger ones two float32
    formulations can differ by more, where a ReLU input lies within rounding of 0: see
    benchmarks/README.md)."""
    model = model.to(dtype).train()
    rtol = RTOL if dtype == torch.float32 else RTOL64
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 11, model.config.x_dim, generator=gen, dtype=dtype)
    noise = torch.randn(4, 11, model.config.z_dim, generator=gen, dtype=dtype)
    losses, grads = [], []
    for net in (FusedVRNN(model), model):
        model.zero_grad()
        loss = -net(x, noise=noise).elbo.mean()
        loss.backward()
        losses.append(loss.detach())
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    close(losses[0], losses[1], "loss", rtol)
    for name, g in grads[1].items():
        close(grads[0][name], g, f"d loss / d {name}", rtol)


def test_analysis_matches_readable_model(model, threads, monkeypatch):
    """analyze() (mean path, numpy out): fast=True (the default) against fast=False."""
    if threads > 1:  # what analyze builds: FusedVRNN(model, threads=inference_threads(1, device)), here 2 threads
        monkeypatch.setattr(fused_module, "SPLIT_MIN_BYTES", 0)
        monkeypatch.setenv("VRNN_THREADS", str(threads))
    rng = np.random.default_rng(3)
    wave = (0.2 * rng.standard_normal(200 * 29 + 57)).astype(np.float32)
    a, b = analyze(model, wave), analyze(model, wave, fast=False)
    close(a.log_px, b.log_px, "log p(x_t | .)")
    close(a.elbo, b.elbo, "ELBO")
    if model.config.has_latent:
        close(a.kl, b.kl, "KL_t")
        close(a.delta, b.delta, "delta_t")
        close(a.z_mean, b.z_mean, "posterior mean")
        assert a.delta[0] == 0.0 and float(np.abs(b.delta).max()) > 1e-4


@pytest.mark.parametrize("output_noise", [True, False], ids=["noise", "mean"])
def test_generation_matches_readable_model_for_the_same_seed(model, output_noise, threads):
    a = fast(model, threads).sample(19, batch_size=2, generator=torch.Generator().manual_seed(5),
                                    output_noise=output_noise)
    b = model.sample(19, batch_size=2, generator=torch.Generator().manual_seed(5), output_noise=output_noise)
    assert a.shape == b.shape == (2, 19, model.config.x_dim)
    for t in range(19):  # frame by frame, each against its own scale
        close(a[:, t], b[:, t], f"generated frame {t}")
    other = model.sample(19, batch_size=2, generator=torch.Generator().manual_seed(6), output_noise=output_noise)
    if output_noise or model.config.has_latent or model.config.gmm_output:
        assert not torch.allclose(other, b)  # the seed matters, so equality above is not trivial
    close(generate(model, seconds=0.2, seed=7, output_noise=output_noise),
          generate(model, seconds=0.2, seed=7, output_noise=output_noise, fast=False), "generate() audio")


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_uses_the_given_noise_and_the_unfused_linear_relu_agrees(family, monkeypatch):
    """`sample(noise=...)` equals `sample(generator=...)` for the noise that generator draws, and the
    fallback of the fused Linear + ReLU (addmm + relu_) gives the same frames."""
    m = FusedVRNN(random_model(preset("tiny", family)))
    noise = generation_noise(m.config, 9, 2, torch.Generator().manual_seed(3))
    a = m.sample(9, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(m.sample(9, 2, noise=noise), a, rtol=0, atol=0)
    monkeypatch.setattr(fused_module, "_ADDMM_RELU", None)
    torch.testing.assert_close(m.sample(9, 2, noise=noise), a, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(m.sample(9, 2, generator=torch.Generator().manual_seed(4)), a)


CHECKPOINTS = sorted((ROOT / "assets" / "checkpoints").glob("*.safetensors"))
CLIP = ROOT / "assets" / "examples" / "allison-cannot-complete-as-dialed.wav"  # the shortest example, 2.64 s


@pytest.mark.skipif(not CHECKPOINTS or not CLIP.is_file(), reason="no bundled checkpoints or example clip")
@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.stem)
def test_bundled_checkpoint_analysis_is_the_readable_models(path):
    """The issue's bar on trained weights: in float64, analyze's fast path equals the readable model to 1e-9
    (absolute, in nats and units of z); benchmarks/bundled.py does every example clip and float32 too."""
    model = load_checkpoint(path).double()
    wave, _ = load_audio(CLIP)
    a, b = analyze(model, wave), analyze(model, wave, fast=False)
    for name in ("log_px", "kl", "delta", "z_mean", "z_std", "prior_mean", "prior_std"):
        if getattr(b, name) is not None:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-9, err_msg=name)
    assert abs(a.elbo - b.elbo) <= 1e-9, (a.elbo, b.elbo)


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_from_a_given_state_matches_readable_model(family, threads):
    """`sample(state=...)`: both paths start from the same (h_0, c_0) and give the same frames; the state
    matters, and zeros are the default."""
    m = random_model(two_layer(family))
    gen = torch.Generator().manual_seed(8)
    state = (torch.randn(2, m.config.h_dim, generator=gen), torch.randn(2, m.config.h_dim, generator=gen))
    noise = generation_noise(m.config, 11, 2, torch.Generator().manual_seed(5))
    b = m.sample(11, 2, noise=noise, state=state)
    a = fast(m, threads).sample(11, 2, noise=noise, state=state)
    for t in range(11):
        close(a[:, t], b[:, t], f"generated frame {t} from a state")
    assert not torch.allclose(b, m.sample(11, 2, noise=noise))
    zeros = tuple(torch.zeros(2, m.config.h_dim) for _ in range(2))
    torch.testing.assert_close(m.sample(11, 2, noise=noise, state=zeros), m.sample(11, 2, noise=noise), rtol=0, atol=0)
    with pytest.raises(ValueError, match="shape"):
        fast(m, threads).sample(11, 2, noise=noise, state=(state[0][:1], state[1][:1]))


def _mixture_inputs(dtype, gen):
    """A small mixture: x [3, 4, 7], logits [3, 4, 5], mu and sigma [3, 4, 5, 7], all requiring grad."""
    x = torch.randn(3, 4, 7, generator=gen, dtype=dtype)
    logits = torch.randn(3, 4, 5, generator=gen, dtype=dtype)
    mu = torch.randn(3, 4, 5, 7, generator=gen, dtype=dtype)
    sigma = torch.rand(3, 4, 5, 7, generator=gen, dtype=dtype) + 0.3
    return [t.requires_grad_() for t in (x, logits, mu, sigma)]


def test_fast_mixture_log_density_is_the_readable_one_with_its_gradient():
    """`gmm_log_prob_fast` writes the mixture's gradient out by hand: autograd's numerical check in
    float64 (central differences), and the same value and gradients as `distributions.gmm_log_prob`
    (which tests/test_distributions.py checks against torch.distributions.MixtureSameFamily)."""
    from vrnn.distributions import gmm_log_prob

    gen = torch.Generator().manual_seed(5)
    inputs = _mixture_inputs(torch.float64, gen)
    assert torch.autograd.gradcheck(fused_module.gmm_log_prob_fast, inputs)
    weight = torch.randn(3, 4, generator=gen, dtype=torch.float64)  # a non-uniform incoming gradient
    results = []
    for f in (fused_module.gmm_log_prob_fast, gmm_log_prob):
        out = f(*inputs)
        results.append((out.detach(), torch.autograd.grad((out * weight).sum(), inputs)))
    (a, grads_a), (b, grads_b) = results
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for name, ga, gb in zip(("x", "logits", "mu", "sigma"), grads_a, grads_b, strict=True):
        assert float(gb.abs().max()) > 1e-3, name  # the comparison is not vacuous
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12, msg=f"d / d {name}")


def test_fast_mixture_log_density_upcasts_bf16_and_skips_unneeded_gradients():
    """bf16 inputs (autocast's products) give a float32 log-density, as the readable one does; inputs
    that need no gradient get none."""
    from vrnn.distributions import gmm_log_prob

    gen = torch.Generator().manual_seed(6)
    x, logits, mu, sigma = (t.detach().to(torch.bfloat16) for t in _mixture_inputs(torch.float32, gen))
    out = fused_module.gmm_log_prob_fast(x, logits, mu, sigma)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, gmm_log_prob(x, logits, mu, sigma), rtol=1e-5, atol=1e-4)
    mu.requires_grad_()
    out = fused_module.gmm_log_prob_fast(x, logits, mu, sigma)
    (g,) = torch.autograd.grad(out.sum(), [mu])
    assert g.dtype == torch.bfloat16 and torch.isfinite(g.float()).all()
