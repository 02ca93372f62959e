"""The VAE family and its ELBO / IWAE rule, checked against oracles:

- a VAE small enough to integrate (2-D latent, 4 pixels): log P(x) by dense quadrature over z sums to 1 over the
  16 states, the ELBO lies below it for every x, the IWAE bound L_k rises with k towards it in expectation, and
  the importance-sampling estimate agrees with it within its stated standard error;
- gradients of the ELBO/IWAE objective against central finite differences in float64 (same random numbers);
- the VampPrior's matrix-product log-density against the mixture computed term by term;
- the two-layer hierarchy's densities against their definitions;
- CLI fit / eval / sample end to end, bad options as one-line errors, dynamic binarization."""
from __future__ import annotations

import json
import math

import pytest
import torch

import genlearn
from genlearn.cli import main
from genlearn.enumeration import all_states
from genlearn.estimators.latent_ais import quadrature_log_marginal
from genlearn.learning.rules import make_rule
from genlearn.likelihood import QUADRATURE_MAX_POINTS, QUADRATURE_POINTS, importance_sampling, latent_nll, quadrature
from genlearn.models.vae import VAE, gaussian_log_density


def _tiny(latent=2, prior="standard", seed=3, n=4, hidden=(8,), scale=2.0) -> VAE:
    """A float64 VAE whose weights are scaled up so that P(x) is far from uniform and q(z|x) from p(z)."""
    torch.manual_seed(seed)
    model = VAE(n, latent=latent, hidden=list(hidden), prior=prior, pseudo_inputs=3, seed=seed).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
        if prior == "vampprior":
            model.pseudo.copy_(torch.rand(model.pseudo.shape, dtype=torch.float64))
    return model


def _exact(model, x) -> torch.Tensor:
    return quadrature_log_marginal(model.log_prior, model.log_likelihood, x, dim=model.latent_dim, points=401)


@pytest.mark.parametrize("latent,prior,scale", [(2, "standard", 2.0), (2, "vampprior", 1.0), ([1, 1], "standard", 1.0)])
def test_quadrature_normalises_and_bounds_hold(latent, prior, scale):
    model = _tiny(latent, prior, scale=scale)
    states = all_states(4).double()
    with torch.no_grad():
        log_p = _exact(model, states)
        assert abs(torch.logsumexp(log_p, 0).item()) < 1e-6, "P(x) by quadrature does not sum to 1"
        # the likelihood policy's quadrature (one decoder pass per grid point, genlearn.likelihood.quadrature)
        # gives the per-row kernel's numbers
        # on its box (prior_box: a VampPrior's reaches beyond [-8, 8]) at the spacing of 401 points on [-8, 8]
        by_policy = quadrature(model, states)
        limit = model.prior_box()
        points = min(QUADRATURE_MAX_POINTS, max(QUADRATURE_POINTS, math.ceil(400 * limit / 8) + 1))
        assert (limit > 8) == (prior == "vampprior")
        per_row = quadrature_log_marginal(model.log_prior, model.log_likelihood, states, dim=model.latent_dim,
                                          points=points, limit=limit)
        assert torch.allclose(by_policy, per_row, atol=1e-10, rtol=0)
        assert abs(torch.logsumexp(by_policy, 0).item()) < 1e-9
        g = torch.Generator().manual_seed(0)
        elbo = model.log_weights(states, 20000, g).mean(0)  # E_q[log w] to ~1e-2
        assert (elbo < log_p + 1e-2).all(), f"ELBO above log P(x): {elbo - log_p}"
        assert (log_p - elbo).mean() > 0.05, "the tiny model is too easy: q equals the posterior"
        # IWAE bound non-decreasing in k in expectation (averaged over 400 repetitions), and below log P(x)
        bounds, errors = [], []
        for k in (1, 5, 50):
            lw = model.log_weights(states.repeat(400, 1), k, g)
            draws = (torch.logsumexp(lw, 0) - math.log(k)).reshape(400, 16)
            bounds.append(draws.mean(0))
            errors.append(draws.std(0) / math.sqrt(400))
        for a in range(2):  # L_k <= L_(k') for k < k', within 4 standard errors of the difference
            noise = 4 * (errors[a].pow(2) + errors[a + 1].pow(2)).sqrt()
            assert (bounds[a] <= bounds[a + 1] + noise).all(), f"L_k decreased: {bounds[a] - bounds[a + 1]}"
        assert (bounds[2] <= log_p + 4 * errors[2]).all()
        assert (bounds[2] - bounds[0]).mean() > 0.02, "the bound does not tighten with k"
        # importance sampling with 5,000 samples agrees with the quadrature within its stated error
        res = importance_sampling(model, states, iw_samples=5000, seed=1)
        err = (res["log_p"] - log_p).abs()
        assert (err <= 4 * res["variance"].sqrt() + 1e-4).all(), f"IS off by {err.max():.2e}"
        est = latent_nll(model, states, iw_samples=5000, seed=1)
        assert est.method == "importance-sampling"
        assert abs(est.value + log_p.mean().item()) <= 4 * est.stderr + 1e-4
        assert est.details["elbo"] < -est.value


def test_ais_estimate_brackets_the_quadrature():
    model = _tiny(2, "standard")
    x = all_states(4).double()
    exact = _exact(model, x).mean().item()
    with torch.enable_grad():
        est = latent_nll(model, x, "ais", ais_steps=200, ais_chains=16, ais_leapfrog=5, seed=0)
    assert est.method == "ais"
    assert abs(est.value + exact) < 0.02, f"AIS NLL {est.value:.4f} vs quadrature {-exact:.4f}"


def test_bdmc_brackets_the_quadrature_on_simulated_rows():
    """BDMC on a tiny VAE: forward AIS <= the quadrature log P of the simulated rows <= reverse AIS (noise 0.05)."""
    from genlearn.estimators.latent_ais import bdmc

    model = _tiny(2, "standard")
    seen = []

    def sample_data(z, generator):
        x = torch.bernoulli(torch.sigmoid(model.decoder_logits(z)), generator=generator)
        seen.append(x)
        return x

    with torch.enable_grad():
        out = bdmc(model.log_prior, model.log_likelihood, model.sample_prior, sample_data, rows=32, steps=100,
                   chains=8, leapfrog=5, seed=0)
    truth = _exact(model, seen[0]).mean().item()
    assert out["forward_log_p"] - 0.05 <= truth <= out["reverse_log_p"] + 0.05
    assert -0.05 < out["gap"] < 0.5


@pytest.mark.parametrize("k,latent,prior", [(1, 2, "standard"), (3, [2, 2], "vampprior")])
def test_bound_gradient_matches_finite_differences(k, latent, prior):
    model = _tiny(latent, prior, scale=1.0)
    x = all_states(4).double()[[1, 6, 13]]
    rule = make_rule("elbo", {"iw_samples": k})

    def objective() -> torch.Tensor:
        g = torch.Generator().manual_seed(7)
        if k == 1:
            return -model.elbo(x, g).mean()
        return -(torch.logsumexp(model.log_weights(x, k, g), 0) - math.log(k)).mean()

    model.zero_grad(set_to_none=True)
    value = rule.compute_gradient(model, x, torch.Generator().manual_seed(7))
    assert value.item() == pytest.approx(objective().item(), abs=1e-12)
    h = 1e-6
    for name, p in model.named_parameters():
        grad = p.grad.reshape(-1)
        for i in torch.randperm(p.numel(), generator=torch.Generator().manual_seed(0))[:3].tolist():
            at = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), p.shape))  # (p may be stored transposed)
            with torch.no_grad():
                old = p[at].item()
                p[at] = old + h
                up = objective().item()
                p[at] = old - h
                down = objective().item()
                p[at] = old
            fd = (up - down) / (2 * h)
            assert grad[i].item() == pytest.approx(fd, rel=1e-5, abs=1e-7), f"{name}[{i}]"


def test_closed_form_kl_elbo_equals_the_sampled_elbo_in_expectation():
    """One layer, standard prior: E_q[log P(x|z)] - KL in closed form == E_q[log w] (Monte Carlo, 4 std errors)."""
    model = _tiny(2, "standard")
    x = all_states(4).double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        closed = torch.stack([model.elbo(x, g) for _ in range(4000)])
        sampled = model.log_weights(x, 4000, g)
    diff = closed.mean(0) - sampled.mean(0)
    noise = 4 * (closed.var(0) / 4000 + sampled.var(0) / 4000).sqrt()
    assert (diff.abs() <= noise).all(), diff
    assert closed.var(0).mean() < sampled.var(0).mean(), "the closed-form KL should lower the variance"


def test_vampprior_density_is_the_mixture_of_encoder_posteriors():
    model = _tiny(2, "vampprior")
    z = torch.randn(3, 5, 2, dtype=torch.float64)
    with torch.no_grad():
        mu, logvar = model.encode_top(model.pseudo_input_values())
        comps = torch.stack([gaussian_log_density(z, mu[j], logvar[j]) for j in range(model.pseudo_inputs)], -1)
        expected = torch.logsumexp(comps, -1) - math.log(model.pseudo_inputs)
        torch.testing.assert_close(model.log_prior(z), expected, atol=1e-10, rtol=0)


def test_frozen_tracks_no_parameter_and_caches_the_vampprior_exactly():
    """Inside frozen() no parameter is tracked (AIS's gradients in z compute no parameter gradient), the VampPrior's
    cached components give the same log p(z) and gradient in z, and everything is restored on exit, also after an
    error; a parameter frozen by the user stays frozen."""
    model = _tiny([2, 2], "vampprior")
    model.dec_out.bias.requires_grad_(False)
    z = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    before = model.log_prior(z)
    (grad_before,) = torch.autograd.grad(before.sum(), z)
    with model.frozen():
        assert not any(p.requires_grad for p in model.parameters())
        assert model._vamp_cache is not None
        inside = model.log_prior(z)
        (grad_inside,) = torch.autograd.grad(inside.sum(), z)
    torch.testing.assert_close(inside, before, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_inside, grad_before, atol=1e-12, rtol=0)
    assert model._vamp_cache is None
    assert model.pseudo.requires_grad and not model.dec_out.bias.requires_grad
    with pytest.raises(RuntimeError, match="inside"):
        with model.frozen():
            raise RuntimeError("inside")
    assert model._vamp_cache is None and model.pseudo.requires_grad
    with torch.no_grad():
        model.pseudo.add_(0.3)  # after the context the prior follows the parameters again
    assert (model.log_prior(z) - before).abs().max() > 1e-3


def test_two_layer_densities_follow_their_definitions():
    model = _tiny([2, 3], "standard")
    x = all_states(4).double()[:6]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z, log_q = model.sample_posterior(x, 4, g)
        assert z.shape == (4, 6, 5) and log_q.shape == (4, 6)
        z1, z2 = z[..., :2], z[..., 2:]
        mu2, lv2 = model.encode_top(x)
        mu1, lv1 = model.enc_bottom_head(model.enc_bottom(x, z2))
        torch.testing.assert_close(log_q, gaussian_log_density(z2, mu2, lv2) + gaussian_log_density(z1, mu1, lv1))
        pm, plv = model.prior_bottom_head(model.prior_bottom(z2))
        std = -0.5 * (math.log(2 * math.pi) * 3 + z2.pow(2).sum(-1))
        torch.testing.assert_close(model.log_prior(z), std + gaussian_log_density(z1, pm, plv))
        s = model.sample(50, torch.Generator().manual_seed(1))
        assert s.shape == (50, 4) and set(s.unique().tolist()) <= {0.0, 1.0}


def test_log_prob_says_it_is_intractable():
    with pytest.raises(genlearn.IntractableError, match="latent-variable model"):
        _tiny().log_prob(torch.zeros(1, 4, dtype=torch.float64))


def test_warmup_weight_grows_to_one_and_rule_rejects_other_families():
    rule = make_rule("elbo", {"warmup_epochs": 4})
    weights = []
    for _ in range(6):
        weights.append(rule.kl_weight())
        rule.end_epoch(None, None)
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert rule.state_tensors()["epochs_done"].item() == 6
    with pytest.raises(genlearn.ConfigError, match="latent-variable"):
        rule.check(genlearn.ProductBernoulli(3))


def test_fit_records_bounds_and_monitoring(tmp_path):
    run = genlearn.fit("vae", "bars-and-stripes:size=2,n=400", out=tmp_path / "r", epochs=3, latent="2",
                       hidden="8", monitor_is_samples=20, patience=5, progress=False, plots=False,
                       partition_options={"iw_samples": 200})
    m = run.metrics
    assert m["test_nll_method"] == "importance-sampling" and m["test_iw_samples"] == 200
    assert m["train_iw_samples"] == 100
    for split in ("train", "valid", "test"):
        assert -m[f"{split}_elbo"] >= m[f"{split}_nll"] - 1e-9, "the IS NLL must be below -ELBO"
        assert m[f"{split}_nll_stderr"] > 0
    assert m["kl_empirical_upper"] == pytest.approx(-m["train_elbo"] - m["entropy_empirical"])
    assert m["kl_empirical_upper_is"] <= m["kl_empirical_upper"]
    assert m["rule"] == {"name": "elbo", "settings": {"iw_samples": 1, "warmup_epochs": 0,
                                                       "kl_estimator": "closed-form"}}
    last = m["history"][-1]
    assert {"train_neg_elbo", "valid_neg_elbo", "valid_nll_is", "train_kl_upper"} <= set(last)
    assert last["valid_nll_is"] <= last["valid_neg_elbo"] + 1e-9


def test_cli_fit_eval_sample_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["fit", "vae", "--data", "bars-and-stripes:size=2,n=300", "--out", str(out), "--epochs", "2",
            "--latent", "2", "--hidden", "8", "--iw-samples", "2", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--iw-samples", "300"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_nll_method"] == "importance-sampling" and metrics["test_iw_samples"] == 300
    assert main(["sample", str(out), "-n", "5", "--seed", "1"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 5 and all(len(r) == 4 and set(r) <= {"0", "1"} for r in rows)


@pytest.mark.parametrize("flag,value,needle", [("--iw-samples", "0", "iw"), ("--latent", "0", "latent"),
                                               ("--pseudo-inputs", "5000", "pseudo-inputs"),
                                               ("--latent", "2,2,2", "latent")])
def test_bad_options_give_one_line_errors(tmp_path, capsys, flag, value, needle):
    argv = ["fit", "vae", "--data", "bars-and-stripes:size=2,n=300", "--out", str(tmp_path / "r"), "--epochs", "1",
            "--prior", "vampprior", flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genlearn: error:") and needle in err[0], err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_dynamic_binarization_redraws_and_reports_no_entropy():
    run = genlearn.fit("vae", "digits:binarize=dynamic", epochs=1, latent="2", hidden="16", progress=False,
                       plots=False, partition_options={"iw_samples": 10})
    assert run.dataset.train_intensity is not None
    assert "kl_empirical_upper" not in run.metrics and math.isfinite(run.metrics["test_nll"])


def test_a_run_recorded_before_the_closed_form_kl_resumes_with_the_sampled_kl():
    from genlearn.learning.legacy import rule_record

    old = {"rule": {"name": "elbo", "settings": {"iw_samples": 1, "warmup_epochs": 0}}}
    assert rule_record(old)["settings"]["kl_estimator"] == "sampled"
    new = {"rule": {"name": "elbo", "settings": {"iw_samples": 1, "warmup_epochs": 0, "kl_estimator": "closed-form"}}}
    assert rule_record(new) == new["rule"]


def test_bfloat16_training_products_give_the_same_bound_to_bfloat16_rounding():
    x = all_states(6)[::3].float()
    full = VAE(6, latent=3, hidden=[16], seed=1)
    half = VAE(6, latent=3, hidden=[16], seed=1, matmul_precision="bfloat16")
    half.load_state_dict(full.state_dict())
    for k in (1, 4):
        rule = make_rule("elbo", {"iw_samples": k})
        a = rule.compute_gradient(full, x, torch.Generator().manual_seed(0))
        b = rule.compute_gradient(half, x, torch.Generator().manual_seed(0))
        assert a.dtype == b.dtype == torch.float32
        assert abs(a.item() - b.item()) < 0.02 * abs(a.item()), (a, b)
        assert all(p.grad.dtype == torch.float32 for p in half.parameters())
    assert VAE.from_config({k: v for k, v in half.config().items() if k != "matmul_precision"}).matmul_precision \
        == "full"


def test_log_likelihood_equals_the_bernoulli_sum_over_pixels():
    """log P(x|z) computed through h . (W^T x) equals sum_i x_i l_i - softplus(l_i) of the decoder's logits."""
    from genlearn.models.vae import bernoulli_log_likelihood

    from genlearn.models.vae import SHARED_DATA_TERM_SAMPLES

    model = _tiny([2, 1], "standard", scale=1.5)
    x = all_states(4).double()
    for k in (1, 7, SHARED_DATA_TERM_SAMPLES, 40):  # below the threshold the elementwise form, from it h . (W^T x)
        z = torch.randn(k, 16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
        with torch.no_grad():
            logits = model.decoder_logits(z)
            direct = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
            torch.testing.assert_close(model.log_likelihood(x, z), direct, atol=1e-12, rtol=0)
            torch.testing.assert_close(bernoulli_log_likelihood(logits, x), direct, atol=1e-12, rtol=0)
    z = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)  # and the gradient in z, as HMC uses it
    logits = model.decoder_logits(z)
    (g_direct,) = torch.autograd.grad((x * logits - torch.nn.functional.softplus(logits)).sum(), z)
    (g_model,) = torch.autograd.grad(model.log_likelihood(x, z).sum(), z)
    torch.testing.assert_close(g_model, g_direct, atol=1e-12, rtol=0)


def test_softplus_sum_in_row_blocks_equals_the_one_piece_sum():
    """Without autograd sum_i softplus(l_i) goes through in row blocks (the last one partial); with autograd in one
    piece: the same numbers, and the gradient still flows."""
    from genlearn.models.vae import softplus_sum

    g = torch.Generator().manual_seed(3)
    h, W, b = (torch.randn(7, 16, 5, dtype=torch.float64, generator=g), torch.randn(9, 5, dtype=torch.float64,
               generator=g), torch.randn(9, dtype=torch.float64, generator=g))
    direct = torch.nn.functional.softplus(h @ W.T + b).sum(-1)
    with torch.no_grad():
        blocked = softplus_sum(h, W, b, block_rows=5)  # 112 rows: 22 full blocks and one of 2
    assert blocked.shape == (7, 16)
    torch.testing.assert_close(blocked, direct, atol=1e-12, rtol=0)
    W.requires_grad_(True)
    softplus_sum(h, W, b, block_rows=5).sum().backward()
    torch.testing.assert_close(W.grad, (torch.sigmoid(h @ W.detach().T + b)[..., None] * h[..., None, :]).sum((0, 1)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_softplus_sum_with_autograd_in_blocks(dtype):
    """With autograd the output layer's softplus sums are made block by block (the logits never stored whole) and
    differentiated through the stored sigmoids: value and the gradients in h, W and b against F.softplus (float64
    oracle), for several block sizes; gradcheck by finite differences in float64."""
    from genlearn.models.vae import softplus_sum

    g = torch.Generator().manual_seed(5)
    h0, W0, b0 = (torch.randn(3, 37, 6, generator=g), torch.randn(56, 6, generator=g),
                  torch.randn(56, generator=g))
    weights = torch.randn(3, 37, generator=g, dtype=torch.float64)
    ref = [t.double().requires_grad_(True) for t in (h0, W0, b0)]
    value = torch.nn.functional.softplus(ref[0] @ ref[1].T + ref[2]).sum(-1)
    (value * weights).sum().backward()
    tol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-4, rtol=1e-5)
    for block_rows in (1, 16, 111, 512):
        h, W, b = (t.to(dtype).clone().requires_grad_(True) for t in (h0, W0, b0))
        got = softplus_sum(h, W, b, block_rows=block_rows)
        torch.testing.assert_close(got.double(), value.detach(), **tol)
        (got * weights.to(dtype)).sum().backward()
        for mine, oracle in zip((h, W, b), ref):
            torch.testing.assert_close(mine.grad.double(), oracle.grad, **tol)
    small = [torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True),
             torch.randn(9, 3, dtype=torch.float64, generator=g, requires_grad=True),
             torch.randn(9, dtype=torch.float64, generator=g, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda h, W, b: softplus_sum(h, W, b, block_rows=3), small)


@pytest.mark.parametrize("latent", [[2], [2, 1]])
def test_iwae_gradient_through_the_blocked_softplus_sums(latent):
    """The IWAE bound with k >= SHARED_DATA_TERM_SAMPLES (the decoder's softplus sums made block by block under
    autograd): its value and its gradient in every parameter equal those of the same bound written with the
    decoder's logits and F.softplus (same samples, float64)."""
    from genlearn.models.vae import SHARED_DATA_TERM_SAMPLES

    model = _tiny(latent, "standard", scale=1.5, n=8)
    x = torch.bernoulli(torch.full((5, 8), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    k = 2 * SHARED_DATA_TERM_SAMPLES

    def bound(direct: bool) -> torch.Tensor:
        z, log_q = model.sample_posterior(x, k, torch.Generator().manual_seed(7))
        if direct:
            logits = model.decoder_logits(z)
            log_px = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
        else:
            log_px = model.log_likelihood(x, z)
        log_w = log_px + model.log_prior(z) - log_q
        return (torch.logsumexp(log_w, 0) - math.log(k)).mean()

    grads = []
    for direct in (False, True):
        model.zero_grad()
        value = bound(direct)
        value.backward()
        grads.append((value.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-12, rtol=0)
    for mine, oracle in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(mine, oracle, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("activation", ["gated", "tanh", "relu"])
def test_mlp_without_autograd_equals_the_mlp_with_it(activation):
    """Without autograd the MLP's activations run in place on its fresh pre-activations (tanh_, and the gated
    a sigmoid(g) into a's half of the pre-activations): the same outputs as with autograd, for one and two inputs,
    and from_first_layer leaves the pre-activation it is given as it is."""
    from genlearn.models.vae import MLP

    torch.manual_seed(0)
    mlp = MLP([9, 4], [7, 5, 3], activation)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(6, 9, generator=g), torch.randn(6, 4, generator=g)
    with torch.enable_grad():
        reference = mlp(x1, x2)
    assert reference.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(mlp(x1, x2), reference.detach(), atol=1e-6, rtol=0)
        pre = mlp.first_layer(x1, x2)
        kept = pre.clone()
        torch.testing.assert_close(mlp.from_first_layer(pre), reference.detach(), atol=1e-6, rtol=0)
        assert torch.equal(pre, kept)


def test_the_density_from_the_noise_is_the_gaussian_density_of_the_draws():
    """sample_posterior's log q from the noise, -(1/2)(D log 2 pi + sum logvar + sum eps^2), equals
    gaussian_log_density(z, mu, logvar) of the same draws (float64, 1e-12), and so do its gradients in mu and
    logvar (the same function of the parameters); standard_normal_log_density against the sum over dimensions."""
    from genlearn.models.vae import _reparameterise_with_density, gaussian_log_density, standard_normal_log_density

    g = torch.Generator().manual_seed(4)
    mu = torch.randn(6, 3, dtype=torch.float64, generator=g).requires_grad_()
    logvar = torch.randn(6, 3, dtype=torch.float64, generator=g).requires_grad_()
    for k in (None, 5):
        z, log_q = _reparameterise_with_density(mu, logvar, k, torch.Generator().manual_seed(7))
        direct = gaussian_log_density(z, mu, logvar)
        torch.testing.assert_close(log_q, direct, atol=1e-12, rtol=0)
        grads = torch.autograd.grad(log_q.sum(), (mu, logvar), allow_unused=True)  # mu: unused (derivative 0)
        direct_grads = torch.autograd.grad(gaussian_log_density(z, mu, logvar).sum(), (mu, logvar))
        for a, b in zip(grads, direct_grads):
            torch.testing.assert_close(torch.zeros_like(b) if a is None else a, b, atol=1e-12, rtol=0)
    z = torch.randn(4, 6, 3, dtype=torch.float64, generator=g)
    expected = (-0.5 * math.log(2 * math.pi) - 0.5 * z**2).sum(-1)
    torch.testing.assert_close(standard_normal_log_density(z), expected, atol=1e-12, rtol=0)


def test_the_kept_logit_buffer_is_bounded_for_wide_data():
    """Without autograd softplus_sum keeps one block buffer between calls: at most KEPT_LOGITS entries (16 rows at
    least), so wide data do not pin hundreds of MB; the sums equal the one-piece sums."""
    from genlearn.models import vae as V

    n = 3 * V.KEPT_LOGITS // 64  # 64 rows fit the bound's entries / 3: blocks of 21 rows
    g = torch.Generator().manual_seed(5)
    h, W, b = torch.randn(100, 4, generator=g), torch.randn(n, 4, generator=g) * 0.5, torch.randn(n, generator=g)
    with torch.no_grad():
        got = V.softplus_sum(h, W, b)
        held = V._BUFFERS.held[1]
    assert held.numel() <= V.KEPT_LOGITS and held.shape == (V.KEPT_LOGITS // n, n)
    exact = torch.nn.functional.softplus(h.double() @ W.double().T + b.double()).sum(-1)
    torch.testing.assert_close(got.double(), exact, atol=1e-5 * n, rtol=1e-5)


def test_quadrature_covers_a_vampprior_far_from_the_origin():
    """Random VampPrior VAE (6 pixels, 2 latents) with a component at -1.6 and sd 2: the box [-8, 8]^2 cut off
    2.5e-4 of P (log sum_x P(x) = -2.46e-4); the box now holds 8 sds around every component, and the spacing of
    [-8, 8] is kept (more points), so P sums to 1."""
    from genlearn.enumeration import all_states
    from genlearn.likelihood import quadrature

    model = VAE(6, latent=2, hidden=[8], prior="vampprior", pseudo_inputs=3, matmul_precision="full").double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.7 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    assert model.prior_box() > 12
    assert abs(float(torch.logsumexp(quadrature(model, all_states(6, dtype=torch.float64)), 0))) < 1e-9
    assert VAE(6, latent=2, hidden=[8]).prior_box() == 8.0


def test_dynamically_binarized_data_say_why_there_is_no_empirical_kl(tmp_path):
    """digits:binarize=dynamic redraws the training rows every epoch: no fixed Q^, so no entropy and no KL bounds;
    the metrics said nothing of why (the same data binarized once have them)."""
    import genlearn
    from genlearn.evaluation import NO_EMPIRICAL_KL

    run = genlearn.fit("vae", "digits:binarize=dynamic", epochs=1, latent="2", hidden="16", progress=False,
                       plots=False, partition_options={"iw_samples": 10})
    assert run.metrics["entropy_empirical"] is None and run.metrics["kl_empirical_note"] == NO_EMPIRICAL_KL
    assert "kl_empirical_upper" not in run.metrics
    static = genlearn.fit("vae", "digits", epochs=1, latent="2", hidden="16", progress=False, plots=False,
                          partition_options={"iw_samples": 10})
    assert static.metrics["entropy_empirical"] > 0 and static.metrics["kl_empirical_upper"] is not None
