"""Issue 12's training options: mixed precision (bf16 products, fp32 weights, Adam state and densities),
`auto`'s choice, and the recipe options (sigma-head bias, per-frame loss, weight-row max-norm, LSTM state
carried over consecutive windows, learning-rate schedule)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vrnn import VRNN, FusedVRNN, load_checkpoint, preset
from vrnn.__main__ import build_parser
from vrnn.config import FAMILIES, TrainConfig
from vrnn.data import WindowBatches
from vrnn.distributions import gaussian_kl, gaussian_log_prob, gmm_log_prob, std_from_raw
from vrnn.train import _train_step, clip_weight_rows_, init_sigma_bias, lr_at, resolve_precision, train


def _batch(c, B=4, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, c.x_dim, generator=g), torch.randn(B, T, c.z_dim, generator=g)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_step_is_finite_and_keeps_weights_and_adam_state_fp32(family):
    torch.manual_seed(0)
    model = VRNN(preset("tiny", family))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, noise = _batch(model.config)
    before = [p.detach().clone() for p in model.parameters()]
    s, _ = _train_step(FusedVRNN(model), model, opt, x, noise, TrainConfig(precision="bf16"), False, "bf16")
    assert s.finite and math.isfinite(s.loss) and s.grad_norm > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(v.dtype == torch.float32 for st in opt.state.values() for k, v in st.items() if k != "step")
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))  # it stepped


@pytest.mark.parametrize("family", ["vrnn-gauss", "vrnn-gmm", "rnn-gauss"])
def test_bf16_pass_computes_densities_in_fp32_close_to_fp32(family):
    torch.manual_seed(0)
    model = VRNN(preset("tiny", family))
    x, noise = _batch(model.config)
    ref = FusedVRNN(model)(x, noise=noise)
    for net in (model, FusedVRNN(model)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x, noise=noise)
        assert out.log_px.dtype == out.kl.dtype == out.elbo.dtype == torch.float32
        # bf16 products: about 3 significant digits, so the ELBO moves by well under 1 %
        assert torch.allclose(out.elbo, ref.elbo, rtol=1e-2)
        assert not torch.equal(out.elbo, ref.elbo)  # the products did run in bf16


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_pass_of_a_trained_model_scores_like_fp32(family):
    """A trained decoder predicts sigma_x far below the signal's scale in quiet frames, so mu_x needs more
    than bf16's 8-bit mantissa: the decoder runs in fp32 under autocast. Without that, the bundled
    VRNN-Gauss scored about 48 nats per frame lower in bf16 on the valid split (and bf16 training moved
    the fp32 model away from its optimum)."""
    from vrnn import load_audio

    root = Path(__file__).resolve().parents[1] / "assets"
    model = load_checkpoint(root / "checkpoints" / f"{family}.safetensors")
    wave, _ = load_audio(root / "examples" / "allison-vm-nobodyavail.wav")
    x = model.normalize(torch.from_numpy(wave[: 200 * 160]).reshape(1, 160, 200))
    noise = torch.randn(1, 160, model.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = FusedVRNN(model)(x, noise=noise)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = FusedVRNN(model)(x, noise=noise)
            params = model.decoder_params(None if ref.z is None else model.phi_z(ref.z), torch.zeros(1, 160, model.config.h_dim))
    assert all(p.dtype == torch.float32 for p in params)
    per_frame = (out.elbo - ref.elbo).abs().item() / 160
    assert per_frame < 1.0, f"bf16 moved the ELBO by {per_frame:.2f} nats per frame"


def test_distributions_upcast_bf16_and_keep_fp64():
    x, mu = torch.randn(3, 5), torch.randn(3, 5)
    sigma = torch.rand(3, 5) + 0.5
    bf = [t.bfloat16() for t in (x, mu, sigma)]
    assert gaussian_log_prob(*bf).dtype == torch.float32
    assert gaussian_kl(bf[1], bf[2], bf[0], bf[2]).dtype == torch.float32
    assert std_from_raw(bf[0]).dtype == torch.float32
    assert gmm_log_prob(bf[0], torch.zeros(3, 2).bfloat16(), bf[1][:, None].expand(3, 2, 5),
                        bf[2][:, None].expand(3, 2, 5)).dtype == torch.float32
    assert gaussian_log_prob(x.double(), mu.double(), sigma.double()).dtype == torch.float64
    # upcasting first: the same number as the fp32 formula on the bf16 values
    assert torch.equal(gaussian_log_prob(*bf), gaussian_log_prob(*(t.float() for t in bf)))


def test_lstm_pointwise_keeps_the_cell_fp32_under_autocast():
    from vrnn.fused import _lstm_pointwise

    gates, cell = torch.randn(2, 16).bfloat16(), torch.randn(2, 4)
    h, c = _lstm_pointwise(gates, cell)
    assert h.dtype == c.dtype == torch.float32


@pytest.mark.parametrize(("flags", "want"), [({"avx2", "fma"}, "fp32"), ({"avx512f", "avx512_bf16"}, "bf16"),
                                             ({"amx_tile", "amx_bf16"}, "bf16"), (set(), "fp32")])
def test_auto_precision_follows_the_cpu_flags(flags, want):
    assert resolve_precision("auto", "cpu", cpu_flags=flags) == want
    assert resolve_precision("fp32", "cpu", cpu_flags=flags) == "fp32"
    assert resolve_precision("bf16", "cpu", cpu_flags=flags) == "bf16"


def test_auto_precision_on_cuda_asks_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") == "fp32"


def test_auto_precision_reads_proc_cpuinfo(monkeypatch):
    import vrnn.train as t

    monkeypatch.setattr(t, "_cpu_flags", lambda: {"sse2", "avx512_bf16"})
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(t, "_cpu_flags", lambda: set())
    assert resolve_precision("auto", "cpu") == "fp32"


def test_precision_and_recipe_flags_come_from_trainconfig():
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--precision", "bf16", "--loss-scale", "frame",
                                      "--max-norm", "1.9365", "--carry-state", "4", "--lr-schedule", "cosine",
                                      "--warmup-steps", "10", "--sigma-bias", "0.6"])
    assert (args.precision, args.loss_scale, args.max_norm, args.carry_state, args.lr_schedule, args.warmup_steps,
            args.sigma_bias) == ("bf16", "frame", 1.9365, 4, "cosine", 10, 0.6)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "o", "--precision", "fp16"])
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half")


def test_checkpoint_records_the_precision(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    train(tiny_corpus, run, preset("tiny"), TrainConfig(steps=3, batch_size=4, precision="bf16", snapshot_every=0),
          progress=False, log=lambda s: None)
    info = load_checkpoint(run / "last.safetensors").info["training"]
    assert info["precision"] == "bf16" and info["train_config"]["precision"] == "bf16"


@pytest.mark.parametrize("family", FAMILIES)
def test_sigma_bias_sets_every_sigma_to_softplus_of_it(family):
    torch.manual_seed(0)
    model = VRNN(preset("tiny", family))
    for p in model.parameters():  # weights 0: each head outputs its bias
        torch.nn.init.zeros_(p)
    init_sigma_bias(model, 0.6)
    out = model(torch.randn(2, 3, model.config.x_dim), sample=False)
    h = torch.zeros(1, model.config.h_dim)
    dec = model.decoder_params(torch.zeros(1, model.config.phi_z[-1]) if model.config.has_latent else None, h)
    want = torch.nn.functional.softplus(torch.tensor(0.6)) + model.config.sigma_min  # 1.0375
    assert torch.allclose(dec[-1], want.expand_as(dec[-1]))
    assert torch.allclose(dec[0], torch.zeros_like(dec[0]))  # means (or GMM logits) untouched
    if model.config.has_latent:
        assert torch.allclose(out.posterior_std, want.expand_as(out.posterior_std))
    if model.config.learned_prior:
        assert torch.allclose(out.prior_std, want.expand_as(out.prior_std))


def test_clip_weight_rows_limits_feedforward_and_lstm_input_rows_only():
    torch.manual_seed(0)
    model = VRNN(preset("tiny", "vrnn-gauss"))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50)
    hh = model.rnn.weight_hh.detach().clone()
    clip_weight_rows_(model, 1.9365)
    for m in [m for m in model.modules() if isinstance(m, torch.nn.Linear)] + [model.rnn]:
        w = m.weight if isinstance(m, torch.nn.Linear) else m.weight_ih
        assert w.norm(dim=1).max() <= 1.9365 + 1e-5
    assert torch.equal(model.rnn.weight_hh, hh)


def test_frame_loss_divides_the_gradient_by_frames_and_batch():
    torch.manual_seed(0)
    model = VRNN(preset("tiny", "vrnn-gauss"))
    x, noise = _batch(model.config, B=4, T=10)
    norms = {}
    for scale in ("sequence", "frame"):
        m = VRNN(model.config)
        m.load_state_dict(model.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=0.0)
        s, _ = _train_step(FusedVRNN(m), m, opt, x, noise, TrainConfig(loss_scale=scale, batch_size=4, clip_norm=1e9),
                           False)
        norms[scale] = s.grad_norm
    assert norms["frame"] == pytest.approx(norms["sequence"] / (10 * 4), rel=1e-4)


def test_forward_from_a_carried_state_equals_one_long_pass():
    torch.manual_seed(0)
    model = VRNN(preset("tiny", "vrnn-gauss"))
    x, noise = _batch(model.config, B=2, T=12)
    whole = FusedVRNN(model)(x, noise=noise)
    first = model(x[:, :5], noise=noise[:, :5])
    second = FusedVRNN(model)(x[:, 5:], noise=noise[:, 5:], state=first.state)
    assert torch.allclose(torch.cat([first.elbo[:, None], second.elbo[:, None]], 1).sum(1), whole.elbo, atol=1e-3)
    assert torch.allclose(second.kl, whole.kl[:, 5:], atol=1e-5)


def test_window_batches_give_consecutive_windows_in_groups(tiny_corpus):
    w = 800
    b = WindowBatches(tiny_corpus, "train", 4, epoch=0, seed=0, window=w, consecutive=3)
    offs = b.offsets
    for g in range(0, b.n_batches - 2, 3):
        assert np.array_equal(offs[g + 1], offs[g] + w) and np.array_equal(offs[g + 2], offs[g] + 2 * w)
    # the first window's end runs into the second's start: one stream
    both = WindowBatches(tiny_corpus, "train", 4, epoch=0, seed=0, window=2 * w, consecutive=1)
    both.offsets = offs[:1]
    assert torch.equal(torch.cat([b[0], b[1]], 1), both[0])


def test_carry_state_run_trains_and_resumes(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    c = TrainConfig(steps=8, batch_size=4, carry_state=4, loss_scale="frame", max_norm=1.9365, sigma_bias=0.6,
                    lr_schedule="cosine", warmup_steps=2, lr=1e-3, snapshot_every=0)
    s = train(tiny_corpus, run, preset("tiny"), c, progress=False, log=lambda s: None)
    assert s["steps"] == 8 and s["skipped_steps"] == 0 and math.isfinite(s["best_valid_elbo_per_sequence"])


def test_lr_schedule_warms_up_then_decays_to_a_tenth():
    c = TrainConfig(lr=1e-3, steps=100, lr_schedule="cosine", warmup_steps=10)
    assert lr_at(c, 0) == pytest.approx(1e-4) and lr_at(c, 9) == pytest.approx(1e-3)
    assert lr_at(c, 10) == pytest.approx(1e-3) and lr_at(c, 100) == pytest.approx(1e-4)
    assert lr_at(c, 55) == pytest.approx(0.55e-3)
    assert all(lr_at(c, i) >= lr_at(c, i + 1) for i in range(10, 100))
    assert lr_at(TrainConfig(lr=3e-4), 50) == 3e-4


def test_bf16_quality_check_runs_and_compares(tiny_corpus, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bf16_quality", "benchmarks/bf16_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--data", str(tiny_corpus), "--out", str(tmp_path), "--steps", "4", "--preset", "tiny",
                    "--batch-size", "4", "--force-bf16", "--slack", "1e9"])
    assert res["rows"] and res["all_within"]
    tight = mod.compare({"fp32-s0": {1: -10.0}, "fp32-s1": {1: -12.0}, "bf16-s0": {1: -13.0}})
    assert tight["max_outside_by"] == pytest.approx(1.0)
    assert not tight["all_within"] and mod.compare({"fp32-s0": {1: -10.0}, "fp32-s1": {1: -12.0},
                                                    "bf16-s0": {1: -11.0}})["all_within"]
