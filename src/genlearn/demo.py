"""`genlearn demo`: the framework's story in one run on the embedded data, with a report folder.

(a) a coin: the MLE p^ and D_KL(Q||P_p^) as the number of flips N grows;
(b) a fair die: p^_k -> 1/6 and E[D_KL(Q||P^)] ~ (K-1)/(2N) (the chi-square asymptotics of the MLE);
(c) gradient descent theta <- theta - eps dD_KL(Q^||P_theta)/dtheta on the coin and the die converges to the
    closed-form MLE, D_KL(Q^||P_theta) falling to 0 (its minimum for these saturated models);
(d) a product of Bernoullis on the 8x8 digits: test NLL, samples and learning curve;
(e) a Boltzmann machine learned from samples of a known teacher machine by the exact KL gradient (a difference
    of moments): the exact KL to the teacher falls with the sample size M, roughly like d/(2M);
(f) which divergence covers the modes and which seeks them: the `gan` generator (2-D latent z, P(x|theta) exact by
    quadrature over z) fitted adversarially to 3x3 bars-and-stripes with D_KL(Q||P) (kl) and with Jensen-Shannon
    (js), and by maximum likelihood, each scored exactly over the 512 states;
(g) a latent-variable model checked against its exact likelihood: a VAE with a 2-D latent on the digits, its test
    NLL by quadrature over z against the -ELBO, importance sampling with k samples and AIS (genlearn.demo_latent)."""
from __future__ import annotations

import dataclasses
import math
import textwrap
import time
from pathlib import Path

import torch

from genlearn.data.registry import load_dataset
from genlearn.demo_latent import LATENT_SETTINGS, latent_report, latent_section, latent_table_text
from genlearn.divergence import empirical_kl, kl_divergence
from genlearn.errors import RunError
from genlearn.learning.checkpoint import write_json
from genlearn.learning.trainer import TrainConfig, Trainer
from genlearn.models import Bernoulli, Categorical, ProductBernoulli


def coin_section(ns, p_true=0.3, seeds=range(20)) -> list[dict]:
    """For each N: the mean over seeds of p^ and of D_KL(Q||P_p^) in nats, closed form."""
    rows = []
    truth = Bernoulli(p_true)
    for n in ns:
        ests, kls = [], []
        for seed in seeds:
            ds = load_dataset(f"coin:p={p_true},n={n},seed={seed}")
            model = Bernoulli().fit_closed_form(ds.train)
            ests.append(float(ds.train.mean()))
            kls.append(kl_divergence(truth, model).value)
        rows.append({"n": n, "p_hat_mean": sum(ests) / len(ests), "p_hat_seed0": ests[0],
                     "kl_true_mean": sum(kls) / len(kls), "asymptotic_kl": 1 / (2 * n)})
    return rows


def die_section(ns, k=6, seeds=range(20)) -> list[dict]:
    rows = []
    for n in ns:
        kls, probs0 = [], None
        for seed in seeds:
            ds = load_dataset(f"die:k={k},n={n},seed={seed}")
            model = Categorical(k).fit_closed_form(ds.train)
            kls.append(kl_divergence(ds.truth, model).value)
            if probs0 is None:
                probs0 = model.probs.detach().tolist()
        rows.append({"n": n, "probs_seed0": probs0, "kl_true_mean": sum(kls) / len(kls),
                     "asymptotic_kl": (k - 1) / (2 * n)})
    return rows


def gradient_descent_section(epochs: int) -> dict:
    """Full-batch gradient descent from theta = 0 on the coin and the die; returns learning curves."""
    out = {}
    for name, spec, model, lr in (("coin", "coin:p=0.3,n=1000", Bernoulli(), 2.0),
                                  ("die", "die:k=6,n=600,probs=0.3/0.2/0.2/0.1/0.1/0.1", Categorical(6), 5.0)):
        ds = load_dataset(spec)
        trainer = Trainer(model, ds, TrainConfig(epochs=epochs, lr=lr, optimizer="gd", progress=False))
        trainer.fit()
        mle = type(model)(**model.config()).fit_closed_form(ds.train)
        gap = float((model.probs - mle.probs).detach().abs().max())
        out[name] = {"history": [{"epoch": r["epoch"], "train_kl": r["train_kl"], "kl_true": r.get("kl_true")}
                                 for r in trainer.state.history],
                     "final_probs": model.probs.detach().tolist(), "mle_probs": mle.probs.detach().tolist(),
                     "max_abs_gap_to_mle": gap, "lr": lr, "epochs": epochs}
    return out


def digits_section(epochs: int, out: Path) -> dict:
    from genlearn.plots import learning_curve, sample_grid

    ds = load_dataset("digits")
    model = ProductBernoulli(ds.n_features)
    trainer = Trainer(model, ds, TrainConfig(epochs=epochs, lr=0.05, optimizer="adam", batch_size=100,
                                             progress=False))
    trainer.fit()
    from genlearn.evaluation import evaluate

    metrics = evaluate(model, ds)
    mle = ProductBernoulli(ds.n_features).fit_closed_form(ds.train)
    mle_metrics = evaluate(mle, ds, splits=("test",))
    learning_curve(trainer.state.history, out / "digits_learning_curve.png", "product of Bernoullis on digits")
    sample_grid(model.sample(64, torch.Generator().manual_seed(0)), ds.image_shape, out / "digits_samples.png",
                "product of Bernoullis: 64 samples")
    sample_grid(ds.test[:64], ds.image_shape, out / "digits_data.png", "test data")
    return {"test_nll": metrics["test_nll"], "train_nll": metrics["train_nll"], "valid_nll": metrics["valid_nll"],
            "kl_empirical": metrics["kl_empirical"], "entropy_empirical": metrics["entropy_empirical"],
            "closed_form_test_nll": mle_metrics["test_nll"], "epochs": epochs,
            "sizes": ds.sizes(), "history": trainer.state.history}


def boltzmann_section(sizes, epochs: int, n: int = 10) -> list[dict]:
    """Teacher-student: fit BoltzmannMachine(n) with the exact gradient to M samples of a random teacher."""
    from genlearn.learning.rules import make_rule
    from genlearn.models.boltzmann import BoltzmannMachine

    rows = []
    d = n + n * (n - 1) // 2
    for m in sizes:
        ds = load_dataset(f"boltzmann-teacher:n={n},samples={m},scale=0.5,seed=0")
        model = BoltzmannMachine(n)
        t0 = time.perf_counter()
        Trainer(model, ds, TrainConfig(epochs=epochs, lr=0.1, optimizer="adam", schedule="cosine",
                                       progress=False, eval_every=epochs),
                rule=make_rule("boltzmann-moments", {"estimator": "exact"})).fit()
        rows.append({"m": m, "kl_true": kl_divergence(ds.truth, model).value,
                     "kl_empirical": empirical_kl(model, ds.train)["kl"], "asymptotic_kl": d / (2 * m),
                     "n_units": n, "n_parameters": d, "seconds": time.perf_counter() - t0})
    return rows


#: section (f): 3x3 bars-and-stripes, Q uniform over its 14 patterns of the 2^9 = 512 states
GAN_DATA = "bars-and-stripes:size=3,n=1000,seed=0"
#: the f-GAN fits' Adam rate: 3x the family's default 2e-3, so that a few hundred generator steps get somewhere
#: (at 2e-3 the kl fit still has 3/4 of its mass outside the patterns after 200 epochs; at 1e-2 it collapses)
GAN_LR = 6e-3
#: (f-GAN epochs, maximum-likelihood epochs) of section (f) in normal and in fast mode: 26-32 s and 5-8 s of one
#: loaded CPU thread (10 steps per epoch)
GAN_EPOCHS = {False: (125, 40), True: (2, 12)}


def pattern_scores(model, patterns) -> dict:
    """Exact figures of a generator with D <= 2 latent dimensions against Q uniform on the K binary `patterns`:
    log P(x) of all 2^n states by quadrature over z (genlearn.likelihood.quadrature), then D_KL(Q||P) (nats),
    D_KL(P||Q) (None when infinite: P puts mass on a state outside the patterns, where Q = 0), D_KL(P(.|patterns)||Q)
    (P restricted to the patterns: how evenly it spreads over them), the mass outside, the probability of each
    pattern (in the order of `patterns`) and how many have P >= 1/(2K) (half their share under Q): "covered"."""
    from genlearn.enumeration import all_states
    from genlearn.likelihood import quadrature
    from genlearn.models.table import pattern_codes

    k, n = patterns.shape
    with torch.no_grad():
        log_p = quadrature(model, all_states(n)).double()  # state index = its code sum_i x_i 2^i
    p = log_p.exp()
    codes = pattern_codes(patterns)
    inside = torch.zeros(p.shape[0], dtype=torch.bool)
    inside[codes] = True
    p_pat, mass_in = p[codes], float(p[codes].sum())
    p_cond = p_pat / mass_in
    kl_pq_on_patterns = float((p_cond * (p_cond.log() + math.log(k))).sum())
    return {"kl_qp": float((-math.log(k) - log_p[codes]).mean()),
            "kl_pq": None if bool((p[~inside] > 0).any()) else kl_pq_on_patterns,
            "kl_pq_on_patterns": kl_pq_on_patterns, "mass_outside": float(p[~inside].sum()),
            "pattern_probabilities": p_pat.tolist(), "patterns_covered": int((p_pat >= 1 / (2 * k)).sum()),
            "patterns": k, "total_probability": float(p.sum())}


def gan_section(epochs: int, ml_epochs: int) -> dict:
    """The `gan` family with its default options (from the model registry: 2-D latent, the f-GAN rule with the
    score-function estimator, Adam, batches of 100) fitted to GAN_DATA with the divergence kl and with js (same seed,
    `epochs` each, rate GAN_LR), and the same generator by maximum likelihood (rule "quadrature-likelihood", rate
    1e-2, `ml_epochs`); each scored exactly by pattern_scores."""
    from genlearn.data.synthetic import bars_and_stripes_patterns
    from genlearn.learning.rules import make_rule
    from genlearn.models.registry import build_model, get_spec, rule_for

    ds = load_dataset(GAN_DATA)
    patterns = bars_and_stripes_patterns(3)
    # the fits see the training samples only: with the truth attached the trainer would also compute the exact KL
    # to it (a quadrature over all 512 states, about a second) at each monitoring, and with the valid rows their NLL
    # (another quadrature); each fit is scored once, exactly, below
    samples = dataclasses.replace(ds, truth=None, valid=None)
    fits = (("kl", rule_for("gan", divergence="kl"), GAN_LR, epochs),
            ("js", rule_for("gan", divergence="js"), GAN_LR, epochs),
            ("maximum likelihood", ("quadrature-likelihood", {"points": 32}), 1e-2, ml_epochs))
    rows = []
    for name, (rule, settings), lr, n_epochs in fits:
        t0 = time.perf_counter()
        model = build_model("gan", samples)
        cfg = TrainConfig.from_dict({**get_spec("gan").train_defaults, "lr": lr, "epochs": n_epochs, "seed": 0,
                                     "progress": False, "eval_every": n_epochs})
        Trainer(model, samples, cfg, rule=make_rule(rule, settings)).fit()
        scores = pattern_scores(model, patterns)
        rows.append({"fit": name, "rule": rule, "rule_settings": settings, "epochs": n_epochs, "lr": lr, **scores,
                     "seconds": time.perf_counter() - t0})
    return {"data": GAN_DATA, "n_states": 2 ** patterns.shape[1], "patterns": patterns.tolist(),
            "covered_threshold": 1 / (2 * patterns.shape[0]), "fits": rows}


def plot_convergence(coin, die, k, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, rows, title, theory in ((axes[0], coin, "coin (p = 0.3)", "1/(2N)"),
                                    (axes[1], die, f"fair die (K = {k})", "(K-1)/(2N)")):
        ns = [r["n"] for r in rows]
        ax.loglog(ns, [r["kl_true_mean"] for r in rows], "o-", label="mean D_KL(Q||P^) over 20 seeds")
        ax.loglog(ns, [r["asymptotic_kl"] for r in rows], "k--", label=theory)
        ax.set_xlabel("number of samples N")
        ax.set_ylabel("nats")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_gradient_descent(gd: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, res in gd.items():
        pts = [(r["epoch"], r["train_kl"]) for r in res["history"] if r["train_kl"] is not None]
        ax.semilogy([p[0] for p in pts], [max(p[1], 1e-16) for p in pts], label=name)
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel("D_KL(Q^||P_theta) [nats]")
    ax.set_title("learning equation on the empirical KL", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_gan_patterns(gan: dict, path: Path) -> None:
    """P(x) of each bars-and-stripes pattern (and the mass outside them) for each fit of section (f), grouped bars
    over the patterns, which are drawn below their bars; Q's 1/K and the covered threshold 1/(2K) dashed."""
    import matplotlib.pyplot as plt

    fits, patterns = gan["fits"], gan["patterns"]
    k, side = len(patterns), math.isqrt(len(patterns[0]))
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    width = 0.8 / len(fits)
    for j, f in enumerate(fits):
        xs = [i - 0.4 + (j + 0.5) * width for i in range(k + 1)]
        ax.bar(xs, f["pattern_probabilities"] + [f["mass_outside"]], width,
               label=f"{f['fit']}: {f['patterns_covered']}/{k} covered, {f['mass_outside']:.0%} outside")
    ax.axhline(1 / k, color="k", ls="--", lw=1, label=f"Q = 1/{k} on each pattern")
    ax.axhline(gan["covered_threshold"], color="grey", ls=":", lw=1, label=f"covered: P >= 1/{2 * k}")
    ax.set_ylabel("P(x), exact (quadrature over z)")
    ax.set_ylim(0, 1.4 * max(max(f["pattern_probabilities"] + [f["mass_outside"]]) for f in fits))
    ax.set_title(f"GAN generators on {side}x{side} bars-and-stripes: P of each pattern, and of the "
                 f"{gan['n_states'] - k} other states", fontsize=10)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    for i, pattern in enumerate(patterns):
        strip.imshow(torch.tensor(pattern).reshape(side, side).numpy(), cmap="gray_r", vmin=0, vmax=1,
                     extent=(i - 0.3, i + 0.3, 0.05, 0.95), aspect="auto")
        strip.add_patch(plt.Rectangle((i - 0.3, 0.05), 0.6, 0.9, fill=False, lw=0.8))
    strip.text(k, 0.5, "outside", ha="center", va="center", fontsize=8)
    strip.set_xlim(-0.6, k + 0.6)
    strip.set_ylim(0, 1)
    strip.set_xticks([])
    strip.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: every file the demo writes into its folder; a previous demo report there is replaced, nothing else is touched
DEMO_FILES = frozenset({"summary.json", "report.md", "index.html", "kl_vs_n.png", "gradient_descent.png",
                        "gan_patterns.png", "digits_learning_curve.png", "digits_samples.png", "digits_data.png",
                        "vae_manifold.png", "vae_encodings.png", "vae_bounds.png"})


def check_report_folder(out: Path) -> None:
    """The demo writes into `out` only if it is new, empty or holds a previous demo report (only DEMO_FILES, and a
    summary.json with the demo's sections): RunError naming what is there otherwise, before anything is run."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder; give a folder for the demo's report")
    others = sorted(p.name for p in out.iterdir() if p.name not in DEMO_FILES)
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise RunError(f"--out {out} holds files that are not the demo's report ({shown}); the demo replaces only "
                       "a report of its own: give a new or empty folder")
    summary = out / "summary.json"
    if summary.exists():
        import json

        try:
            sections = json.loads(summary.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            sections = None
        if not isinstance(sections, dict) or not {"coin", "die", "digits"} <= set(sections):
            raise RunError(f"--out {out}: its summary.json is not a demo report's; the demo replaces only a report of "
                           "its own: give a new or empty folder")


def run_demo(out: Path, fast: bool = False, verbose: bool = True) -> dict:
    """The demo's sections, plots, summary.json, report.md and index.html in `out` (check_report_folder first)."""
    t0 = time.perf_counter()
    out = Path(out)
    check_report_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    ns = [10, 100, 1000] if fast else [10, 30, 100, 300, 1000, 3000, 10000]
    seeds = range(5) if fast else range(20)
    coin = coin_section(ns, seeds=seeds)
    die = die_section(ns, seeds=seeds)
    gd = gradient_descent_section(60 if fast else 300)
    digits = digits_section(10 if fast else 100, out)
    boltzmann = boltzmann_section([100, 1000] if fast else [100, 1000, 10000], 100 if fast else 400)
    gan = gan_section(*GAN_EPOCHS[fast])
    latent = latent_section(*LATENT_SETTINGS[fast], out)
    plot_convergence(coin, die, 6, out / "kl_vs_n.png")
    plot_gradient_descent(gd, out / "gradient_descent.png")
    plot_gan_patterns(gan, out / "gan_patterns.png")
    summary = {"coin": coin, "die": die, "gradient_descent": gd, "digits": digits, "boltzmann": boltzmann,
               "gan": gan, "latent": latent,
               "units": "nats; KL to the truth is D_KL(Q||P^), closed form (in gan: exact by quadrature over z; "
               "kl_pq null = infinite; in latent: NLLs per test row, exact by quadrature over z)", "fast": fast,
               "wall_seconds": time.perf_counter() - t0}
    write_summary(out / "summary.json", summary)
    (out / "report.md").write_text(report_markdown(summary))
    from genlearn.report.markdown import markdown_page

    markdown_page(out / "report.md", out / "index.html", "genlearn demo report")  # the same, images embedded
    if verbose:
        print(table_text(summary))
        print(f"\nreport: {out / 'report.md'} and {out / 'index.html'}  ({summary['wall_seconds']:.1f} s)")
    return summary


def write_summary(path: Path, summary: dict) -> None:
    """summary.json: valid JSON, a NaN or infinity written as null (as in metrics.json, runs._finite)."""
    from genlearn.runs import _finite

    write_json(path, _finite(summary))


def table_text(s: dict) -> str:
    lines = ["(a) coin p=0.3: N, p^ (seed 0), mean KL(Q||P^), 1/(2N)"]
    lines += [f"    {r['n']:>6d}  {r['p_hat_seed0']:.4f}  {r['kl_true_mean']:.2e}  {r['asymptotic_kl']:.2e}"
              for r in s["coin"]]
    lines.append("(b) fair die K=6: N, max |p^_k - 1/6| (seed 0), mean KL(Q||P^), (K-1)/(2N)")
    lines += [f"    {r['n']:>6d}  {max(abs(p - 1 / 6) for p in r['probs_seed0']):.4f}  {r['kl_true_mean']:.2e}  "
              f"{r['asymptotic_kl']:.2e}" for r in s["die"]]
    lines.append("(c) gradient descent -> closed-form MLE: final D_KL(Q^||P_theta), max |p - p_MLE|")
    for name, res in s["gradient_descent"].items():
        lines.append(f"    {name:6s}  {res['history'][-1]['train_kl']:.2e}  {res['max_abs_gap_to_mle']:.2e}")
    d = s["digits"]
    lines.append(f"(d) product of Bernoullis on digits: test NLL {d['test_nll']:.3f} nats "
                 f"(closed-form MLE {d['closed_form_test_nll']:.3f}), train KL(Q^||P) {d['kl_empirical']:.3f}")
    lines.append("(e) Boltzmann machine, exact KL gradient, teacher n=10: M, KL(Q||P_theta), d/(2M)")
    lines += [f"    {r['m']:>6d}  {r['kl_true']:.2e}  {r['asymptotic_kl']:.2e}" for r in s["boltzmann"]]
    lines.append("(f) GAN generator on 3x3 bars-and-stripes: fit, KL(Q||P), KL(P||Q), mass outside, patterns "
                 "covered, seconds")
    lines += [f"    {r['fit']:18s}  {r['kl_qp']:.3f}  {_kl_text(r['kl_pq'])}  {r['mass_outside']:.3f}  "
              f"{r['patterns_covered']:>2d}/{r['patterns']}  {r['seconds']:.1f}" for r in s["gan"]["fits"]]
    lines += latent_table_text(s["latent"])
    return "\n".join(lines)


def _kl_text(kl) -> str:
    """A KL for a table: None (infinite: JSON has no inf) as "inf"."""
    return "inf" if kl is None else f"{kl:.3f}"


def report_markdown(s: dict) -> str:
    d = s["digits"]
    coin_rows = "\n".join(f"| {r['n']} | {r['p_hat_seed0']:.4f} | {r['kl_true_mean']:.3e} | {r['asymptotic_kl']:.3e} |"
                          for r in s["coin"])
    die_rows = "\n".join(f"| {r['n']} | {', '.join(f'{p:.3f}' for p in r['probs_seed0'])} | {r['kl_true_mean']:.3e} "
                         f"| {r['asymptotic_kl']:.3e} |" for r in s["die"])
    gd_rows = "\n".join(f"| {name} | {res['epochs']} | {res['lr']} | {res['history'][-1]['train_kl']:.2e} | "
                        f"{res['max_abs_gap_to_mle']:.2e} |" for name, res in s["gradient_descent"].items())
    gan = s["gan"]
    gan_rows = "\n".join(f"| {r['fit']} | {r['rule']}, rate {r['lr']:g} | {r['epochs']} | {r['kl_qp']:.3f} | "
                          f"{_kl_text(r['kl_pq'])} | {r['kl_pq_on_patterns']:.3f} | {r['mass_outside']:.3f} | "
                          f"{r['patterns_covered']} of {r['patterns']} | {r['seconds']:.1f} |" for r in gan["fits"])
    bm_rows = "\n".join(f"| {r['m']} | {r['kl_true']:.3e} | {r['kl_empirical']:.4f} | {r['asymptotic_kl']:.3e} | "
                         f"{r['seconds']:.1f} |" for r in s["boltzmann"])
    return f"""# genlearn demo report

Learning P(X|theta) by minimising D_KL(Q^||P_theta) = NLL(theta) - H(Q^) (nats). Made by `genlearn demo`
in {s['wall_seconds']:.1f} s{' (fast mode)' if s['fast'] else ''}. Figures are in this folder; numbers in summary.json.

## (a) A coin, p = 0.3: the maximum-likelihood estimate p^ = (heads)/N

| N | p^ (seed 0) | mean D_KL(Q‖P^) over seeds | 1/(2N) |
|---|---|---|---|
{coin_rows}

## (b) A fair die: p^_k approaches 1/6 and the KL to the truth shrinks like (K-1)/(2N)

| N | p^ (seed 0) | mean D_KL(Q‖P^) | (K-1)/(2N) |
|---|---|---|---|
{die_rows}

![KL to the truth against N](kl_vs_n.png)

At small N a face (or a side of the coin) may never be seen: the MLE gives it probability 0 and D_KL(Q||P^) is
infinite. genlearn clips estimated probabilities to 1e-12 (1e-6 for Bernoulli units), so those seeds add a large
finite KL and the first points lie above the asymptote; the asymptote holds once every outcome is seen.

## (c) Gradient descent on the empirical KL reaches the closed-form MLE

theta <- theta - eps * dD_KL(Q^||P_theta)/dtheta from theta = 0 (full batch).

| data | steps | eps | final D_KL(Q^‖P_theta) | max abs(p - p_MLE) |
|---|---|---|---|---|
{gd_rows}

![learning curves](gradient_descent.png)

## (d) A product of Bernoullis on the 8x8 digits (binarized at half intensity)

Split: {', '.join(f'{k} {v:,}' for k, v in d['sizes'].items())} rows. Adam, batch 100, {d['epochs']} epochs.
Test NLL **{d['test_nll']:.3f}** nats
(closed-form MLE: {d['closed_form_test_nll']:.3f}); train D_KL(Q^||P) = {d['kl_empirical']:.3f} nats with
H(Q^) = {d['entropy_empirical']:.3f} nats: independent pixels cannot capture the strokes, which is what the
richer models (mixtures, Boltzmann machines, RBMs, NADE/MADE) are for.

![learning curve](digits_learning_curve.png) ![samples](digits_samples.png) ![data](digits_data.png)

## (e) A Boltzmann machine learned from a teacher Boltzmann machine

P(x) = exp(b.x + 1/2 x.W.x)/Z on {{0,1}}^10; the data are M exact samples of a random teacher
(`boltzmann-teacher:n=10,scale=0.5`). The KL gradient is a difference of moments,
`dD_KL/dW_ij = <x_i x_j>_P - <x_i x_j>_Q^`, here with the model moments by exact enumeration (Adam, cosine
schedule). The exact KL to the teacher falls with M roughly like d/(2M), d = 55 parameters.

| M | D_KL(Q‖P_theta) to the teacher | D_KL(Q^‖P_theta) to the data | d/(2M) | seconds |
|---|---|---|---|---|
{bm_rows}

## (f) Which divergence covers the modes and which seeks them: a GAN generator on 3x3 bars-and-stripes

Q is uniform on the 14 bars-and-stripes patterns of the 512 states of 3x3 pixels; the data are 1,000 draws
(`{gan['data']}`). The model is the `gan` family's generator with a 2-D latent z ~ N(0, I),
P(x|theta) = integral N(z; 0, I) prod_i Bern(x_i | sigmoid(l_i(z))) dz, whose P(x) is exact (up to the grid) by
quadrature over z for all 512 states. It is trained adversarially (a critic estimates log Q(x)/P(x); the family's
default options, Adam at rate {GAN_LR:g}) with two f-divergences from the same seed: kl = D_KL(Q||P), the
maximum-likelihood direction, and js, Jensen-Shannon, the original GAN's; and, as the reference for what the
generator can represent, by maximum likelihood. A pattern is covered when P(x) >= 1/28, half its share under Q.

| fit | rule | epochs | D_KL(Q‖P) | D_KL(P‖Q) | D_KL(P(·∣patterns)‖Q) | mass outside | patterns covered | seconds |
|---|---|---|---|---|---|---|---|---|
{gan_rows}

{_gan_reading(gan["fits"])}

![P(x) of each pattern per fit](gan_patterns.png)

{latent_report(s["latent"], d["test_nll"])}"""


def _gan_reading(fits: list[dict]) -> str:
    """What section (f) shows, read off this run's numbers (not what theory predicts), as a wrapped paragraph."""
    by = {f["fit"]: f for f in fits}
    kl, js, ml = by["kl"], by["js"], by["maximum likelihood"]
    k = kl["patterns"]
    text = (f"In this run kl covers {kl['patterns_covered']} of the {k} patterns with {kl['mass_outside']:.0%} of "
            f"its mass outside them; js covers {js['patterns_covered']} with {js['mass_outside']:.0%} outside. ")
    if kl["patterns_covered"] > js["patterns_covered"] and kl["mass_outside"] > js["mass_outside"]:
        text += ("kl is mode covering: it spreads its mass over the patterns, and beyond them (D_KL(Q||P) is "
                 "infinite if P leaves out a pattern); js is mode seeking: it keeps fewer patterns, with little mass "
                 "outside them, and lets the others go. ")
    else:
        text += ("This run does not show that separation: one seed and a short adversarial fit, whose critic "
                 "estimate of the divergence is noisy. ")
    ml_covered = "all" if ml["patterns_covered"] == k else f"{ml['patterns_covered']} of the"
    text += (f"Maximum likelihood of the same generator reaches D_KL(Q||P) = {ml['kl_qp']:.3f} nats with "
             f"{ml_covered} {k} patterns covered: the adversarial fits' gap comes from learning through a critic "
             "(and, here, from short training), not from what the generator can represent. D_KL(P||Q) is infinite "
             "for every fit: a Bernoulli generator gives every state some probability, and Q is 0 off the patterns; "
             "the column after it is the KL of P restricted to the patterns (how evenly it spreads over the ones it "
             "keeps). benchmarks/gan_bars_and_stripes.py runs the same comparison for longer, over seeds and "
             "divergences.")
    return textwrap.fill(text, 115)
