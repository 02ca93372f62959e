"""Section (g) of `genlearn demo`: a latent-variable model whose likelihood can be checked exactly.

P(x|theta) = integral N(z; 0, I) prod_i Bern(x_i | sigmoid(l_i(z))) dz with a 2-D latent z (the `vae` family,
Gaussian encoder q(z|x)), fitted to the 8x8 digits by maximising the ELBO. With two latent dimensions log P(x)
is exact up to the grid by quadrature over z (genlearn.likelihood.quadrature), so every estimate a larger model
has to rely on can be set against it on the test rows, in nats per example:

    -ELBO = -E_q[log w]  >=  -E[log (1/k) sum_j w_j]  (IWAE / importance sampling, k samples of q)  >=  NLL,

w = p(z) P(x|z) / q(z|x); the first gap is the mean KL(q(z|x) || P(z|x)); the IS estimate falls towards the NLL
as k grows, in expectation. Forward AIS over z (prior to posterior, HMC transitions) is a third stochastic upper
bound of the NLL, which needs no encoder. On the training rows the ELBO bounds the KL the model minimises:
D_KL(Q^||P_theta) = NLL_train - H(Q^) <= mean(-ELBO_train) - H(Q^)."""
from __future__ import annotations

import textwrap
import time
from pathlib import Path

import torch

#: (ELBO epochs, AIS intermediate distributions, IS sample sizes k) in normal and in fast mode
LATENT_SETTINGS = {False: (300, 500, (1, 10, 100, 1000, 10000)), True: (30, 50, (1, 10, 100))}
#: the model: 2-D latent, MLP 64-64 (tanh) encoder and decoder, Adam at this rate, batches of 100
LATENT_OPTIONS = {"latent": "2", "hidden": "64,64"}
LATENT_LR = 3e-3
#: samples of q per row for the ELBO itself (E_q[log w], to a Monte Carlo error well below 0.01 nats)
ELBO_SAMPLES = 1000
AIS_CHAINS, AIS_LEAPFROG = 4, 10


def latent_section(epochs: int, ais_steps: int, is_samples, out: Path) -> dict:
    """Fit the 2-D-latent VAE to the digits by the ELBO (`epochs`, seed 0) and score its test rows by every method
    of the module docstring; write its manifold, the test encodings coloured by digit and the bounds against k."""
    from genlearn import plots
    from genlearn.data.empirical import empirical_entropy
    from genlearn.data.registry import load_dataset
    from genlearn.estimators.latent_ais import ais_estimate
    from genlearn.learning.rules import make_rule
    from genlearn.learning.trainer import TrainConfig, Trainer
    from genlearn.likelihood import QUADRATURE_POINTS, importance_sampling, quadrature
    from genlearn.models.registry import build_model

    t0 = time.perf_counter()
    ds = load_dataset("digits")
    model = build_model("vae", ds, **LATENT_OPTIONS)
    cfg = TrainConfig(epochs=epochs, lr=LATENT_LR, optimizer="adam", batch_size=100, progress=False,
                      eval_every=epochs, seed=0)
    Trainer(model, ds, cfg, rule=make_rule("elbo", {"iw_samples": 1, "warmup_epochs": 0})).fit()
    train_seconds = time.perf_counter() - t0
    model.eval()
    x, xt = ds.test, ds.train
    with torch.no_grad():
        nll = -float(quadrature(model, x).mean())
        nll_train = -float(quadrature(model, xt).mean())
        neg_elbo = -float(importance_sampling(model, x, ELBO_SAMPLES, seed=1)["elbo"].mean())
        neg_elbo_train = -float(importance_sampling(model, xt, ELBO_SAMPLES, seed=1)["elbo"].mean())
        ladder = [{"k": k, "nll_estimate": -float(importance_sampling(model, x, k, seed=0)["log_p"].mean())}
                  for k in is_samples]
    t_ais = time.perf_counter()
    with torch.enable_grad(), model.frozen():
        ais, _ = ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, x, steps=ais_steps,
                              chains=AIS_CHAINS, leapfrog=AIS_LEAPFROG, seed=0)
    ais_seconds = time.perf_counter() - t_ais
    entropy = empirical_entropy(xt, ds.kind)
    plots.latent_manifold(model, ds.image_shape, out / "vae_manifold.png",
                          title="2-D VAE on the digits: decoder means over z")
    plots.latent_encodings(model, x, ds.split_labels("test"), out / "vae_encodings.png",
                           title="test digits: posterior means E_q[z|x]")
    result = {"model": "vae", "options": LATENT_OPTIONS, "lr": LATENT_LR, "epochs": epochs,
              "quadrature_points": QUADRATURE_POINTS, "test_nll_exact": nll, "test_neg_elbo": neg_elbo,
              "variational_gap": neg_elbo - nll, "is_ladder": ladder, "ais_nll": ais.value, "ais_steps": ais_steps,
              "ais_chains": AIS_CHAINS, "ais_seconds": ais_seconds, "train_nll_exact": nll_train,
              "entropy_empirical": entropy, "kl_empirical": nll_train - entropy,
              "kl_empirical_upper": neg_elbo_train - entropy, "train_seconds": train_seconds,
              "seconds": time.perf_counter() - t0}
    plot_bounds(result, out / "vae_bounds.png")
    return result


def plot_bounds(r: dict, path: Path) -> None:
    """The test NLL estimates against k (log axis): importance sampling with k samples of q, the -ELBO above them,
    forward AIS, and the exact NLL by quadrature below them all."""
    import matplotlib.pyplot as plt

    ks = [row["k"] for row in r["is_ladder"]]
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    ax.plot(ks, [row["nll_estimate"] for row in r["is_ladder"]], "o-", label="importance sampling, k samples of q")
    ax.axhline(r["test_neg_elbo"], color="C1", ls="--", label="-ELBO (E_q log w)")
    ax.axhline(r["ais_nll"], color="C2", ls="-.", label=f"forward AIS over z, {r['ais_steps']} steps")
    ax.axhline(r["test_nll_exact"], color="k", lw=1.5, label="exact NLL (quadrature over z)")
    values = [row["nll_estimate"] for row in r["is_ladder"]] + [r["test_neg_elbo"], r["ais_nll"], r["test_nll_exact"]]
    span = max(values) - min(values) or 1.0
    ax.set_ylim(min(values) - 0.08 * span, max(values) + 0.08 * span)  # horizontal lines do not autoscale
    ax.set_xscale("log")
    ax.set_xlabel("k (samples per test row)")
    ax.set_ylabel("test NLL estimate (nats)")
    ax.set_title("Bounds on -log P(x) of a 2-D VAE, digits test set", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latent_table_text(r: dict) -> list[str]:
    """The lines of section (g) in the demo's console table."""
    ladder = ", ".join(f"k={row['k']} {row['nll_estimate']:.3f}" for row in r["is_ladder"])
    return ["(g) VAE, 2-D latent, on digits: test NLL exact (quadrature), -ELBO, IS with k samples, AIS",
            f"    exact {r['test_nll_exact']:.3f}  -ELBO {r['test_neg_elbo']:.3f}  IS {ladder}  "
            f"AIS({r['ais_steps']}) {r['ais_nll']:.3f}"]


def latent_report(r: dict, product_nll: float) -> str:
    """Section (g) of report.md; `product_nll` is section (d)'s test NLL (independent pixels) for comparison."""
    rows = "\n".join(f"| importance sampling, k = {row['k']} | {row['nll_estimate']:.3f} | "
                     f"{row['nll_estimate'] - r['test_nll_exact']:+.3f} |" for row in r["is_ladder"])
    ais_gap = r["ais_nll"] - r["test_nll_exact"]
    ais_what = f"{r['ais_steps']} intermediate distributions x {r['ais_chains']} chains, HMC"
    return f"""## (g) A latent-variable model: the bounds a VAE lives by, checked against its exact likelihood

P(x|theta) = integral N(z; 0, I) prod_i Bern(x_i | sigmoid(l_i(z))) dz, the `vae` family with a 2-D latent z and
MLPs {r['options']['hidden']} (tanh), fitted to the digits by maximising the ELBO (Adam at rate {r['lr']:g},
{r['epochs']} epochs, {r['train_seconds']:.1f} s). Its latent space has two dimensions, so log P(x) is exact (up to
a grid of {r['quadrature_points']} x {r['quadrature_points']} points) by quadrature over z, and every estimate a
larger model must rely on can be checked on the test rows (nats per example):

| estimate of the test NLL | value | minus the exact NLL |
|---|---|---|
| -ELBO (E_q[log w] with {ELBO_SAMPLES} samples of q per row) | {r['test_neg_elbo']:.3f} | {r['variational_gap']:+.3f} |
{rows}
| forward AIS over z ({ais_what}) | {r['ais_nll']:.3f} | {ais_gap:+.3f} |
| **exact, quadrature over z** | **{r['test_nll_exact']:.3f}** | 0 |

{_reading(r, product_nll)}

On the training rows, D_KL(Q^||P_theta) = NLL - H(Q^) = {r['kl_empirical']:.3f} nats exactly, and the ELBO bounds it
by mean(-ELBO) - H(Q^) = {r['kl_empirical_upper']:.3f} (H(Q^) = {r['entropy_empirical']:.3f} nats): the ELBO's gap
there is {r['kl_empirical_upper'] - r['kl_empirical']:.2f} nats against {r['variational_gap']:.2f} on the test rows,
the encoder having been fitted to the training rows (the amortisation gap).

![bounds against k](vae_bounds.png) ![manifold](vae_manifold.png) ![encodings](vae_encodings.png)
"""


def _reading(r: dict, product_nll: float) -> str:
    """What the table of section (g) shows, read off this run's numbers, as a wrapped paragraph."""
    best = r["is_ladder"][-1]
    is_gap, ais_gap = best["nll_estimate"] - r["test_nll_exact"], r["ais_nll"] - r["test_nll_exact"]
    text = (f"The ELBO is {r['variational_gap']:.2f} nats below log P(x) on average: that gap is the mean "
            "KL(q(z|x) || P(z|x)), what the encoder's Gaussian misses of the true posterior. ")
    if is_gap > 0.05:
        text += (f"Importance sampling with q closes it as k grows, slowly: with k = {best['k']} it is still "
                 f"{is_gap:.2f} nats off: a sign that the posterior has mass where q has almost none. ")
    else:
        text += f"Importance sampling with q closes it: with k = {best['k']} it is within {is_gap:.2f} nats. "
    text += (f"Forward AIS from the prior is {ais_gap:.2f} nats off with {r['ais_steps']} intermediate "
             "distributions. Every row is an upper bound of the NLL in expectation, which is why genlearn reports "
             f"each figure with its method. For comparison, the product of Bernoullis of (d) gives {product_nll:.3f} "
             "nats: the latent variable captures the strokes that independent pixels cannot.")
    return textwrap.fill(text, 115)


__all__ = ["LATENT_SETTINGS", "latent_report", "latent_section", "latent_table_text", "plot_bounds"]
