"""scikit-learn estimator wrappers.

`BernoulliRBM`: a drop-in for `sklearn.neural_network.BernoulliRBM` (same constructor arguments n_components,
learning_rate, batch_size, n_iter, verbose, random_state; same fitted attributes components_,
intercept_hidden_, intercept_visible_, h_samples_, in scikit-learn's dtypes; fit, partial_fit, transform, gibbs
(boolean rows), get_feature_names_out / set_output; dense or scipy.sparse CSR input) backed by
`genlearn.models.rbm.RBM`, with what scikit-learn's lacks:

- `score_samples(X)` returns the real per-example log-likelihood log P(x) = -F(x) - log Z in nats (not the
  pseudo-likelihood). log Z comes from the likelihood policy (`genlearn.likelihood`): exact (enumerating the
  smaller layer, float64) when it has at most 25 units and n 2^m <= 2^35 terms, else estimated by AIS from the
  data base rate (14,500 temperatures, 100 chains by default; `ais_steps`, `ais_chains`) with reverse AIS; the
  estimate used is in `log_z_` after the first scoring call (value, stderr, lower, upper, method). `score(X)`
  is the mean of score_samples (nats per example).
- `sample(n_samples)` draws from the model by Gibbs sampling from random states (scikit-learn cannot).

Training matches scikit-learn's algorithm: PCD-k (k=1 by default) with `batch_size` persistent chains and plain
SGD steps of `learning_rate` times the mean gradient over the minibatch. Inputs are binary or in [0, 1] for
fitting and transform (as in scikit-learn); likelihoods are only defined for binary rows, so score_samples on a
non-binary row raises ValueError.

`DensityEstimator`: any genlearn family as a density estimator. `VariationalAutoencoder` (alias `VAE`): the `vae`
family as a density estimator and transformer of binary rows, whose score_samples are importance-sampling
ESTIMATES of log P(x) (the likelihood of a VAE is intractable), recorded in `score_method_`.

Every fit (fit, partial_fit) leaves torch's global random number generator as it found it
(genlearn.learning.devices.keeps_torch_rng): the estimators draw from generators of their own, seeded from
random_state.
"""
from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from genlearn.errors import ConfigError
from genlearn.learning.devices import keeps_torch_rng
from genlearn.models.rbm import RBM
from genlearn.numerics import sample_bernoulli


class BernoulliRBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Bernoulli RBM with honest likelihoods (see the module docstring).

    Parameters (the first six as in sklearn.neural_network.BernoulliRBM)
    ----------
    n_components : number of hidden units H.
    learning_rate : SGD step on the mean minibatch gradient.
    batch_size : examples per minibatch (and number of persistent chains).
    n_iter : passes over the training set.
    verbose : after each pass of fit, print its time and, when the exact log Z is cheap (the trainer's monitoring
        threshold, genlearn.likelihood.monitors_exactly: u <= 25 enumerated units, n 2^u <= 2^29 terms) and X is
        binary, the exact mean log-likelihood of X in nats (score(X) after that pass, with log_z "auto" or "exact").
    random_state : None, int or numpy RandomState; seeds weights, minibatch order and sampling.
    k : Gibbs sweeps per update.
    gradient : "pcd" (scikit-learn's choice), "cd" or "exact" (small models).
    log_z : "auto" (the likelihood policy, genlearn.likelihood: exact when the smaller layer has at most 25 units
        and n 2^m <= 2^35 terms, else AIS), "exact" or "ais".
    ais_steps, ais_chains : AIS settings (None = the published 14,500 temperatures).
    matmul_precision : "auto" (default), "full" or "bfloat16": precision of the training's matrix products
        (bfloat16: operands rounded to 8 significant bits, including gray-level inputs, with float32
        accumulation; faster only on CPUs with AVX512-BF16 or AMX). "auto" picks bfloat16 only where this machine
        runs it faster (genlearn.precision; the choice is in `matmul_precision_` after fit); an explicit
        "bfloat16" where it is emulated warns once. Likelihoods are always computed in full precision.

    Fitted attributes (as scikit-learn's): components_ (n_components x n_features), intercept_hidden_,
    intercept_visible_, and with gradient="pcd" h_samples_ (batch_size x n_components, 0/1 values): hidden states
    h ~ P(h | v) of the persistent chains v, drawn from the probabilities the next PCD step samples from (by a
    generator of their own, so that reading them changes nothing); all in X's float dtype after fit, float64 after
    partial_fit. X may be a dense array or a scipy.sparse matrix (densified: its dense size is checked first).
    """

    def __init__(self, n_components=256, *, learning_rate=0.1, batch_size=10, n_iter=10, verbose=0,
                 random_state=None, k=1, gradient="pcd", log_z="auto", ais_steps=None, ais_chains=100,
                 matmul_precision="auto"):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.k = k
        self.gradient = gradient
        self.log_z = log_z
        self.ais_steps = ais_steps
        self.ais_chains = ais_chains
        self.matmul_precision = matmul_precision

    # -- helpers --------------------------------------------------------------------------------------
    def _check_params(self):
        for name in ("n_components", "batch_size", "k", "ais_chains"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, (int, np.integer)) or self.n_iter < 0:
            raise ValueError(f"n_iter must be a non-negative integer, got {self.n_iter!r}")
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"learning_rate must be a positive finite number, got {rate!r}")
        if self.gradient not in ("pcd", "cd", "exact"):
            raise ValueError(f"gradient must be 'pcd', 'cd' or 'exact', got {self.gradient!r}")
        if self.log_z not in ("auto", "exact", "ais"):
            raise ValueError(f"log_z must be 'auto', 'exact' or 'ais', got {self.log_z!r}")
        # settings the others make moot, off their default: refused as the command line refuses them
        if self.gradient == "exact" and self.k != 1:
            raise ValueError(f"k={self.k} applies to CD-k / PCD-k (gradient 'cd' or 'pcd'); the exact gradient runs "
                             "no Gibbs sweeps: drop k or choose another gradient")
        if self.log_z == "exact" and (self.ais_steps is not None or self.ais_chains != 100):
            raise ValueError("ais_steps and ais_chains apply to log_z 'ais' or 'auto' (AIS where log Z is too costly "
                             "to enumerate); log_z 'exact' enumerates: drop them")
        if self.matmul_precision not in ("auto", "full", "bfloat16"):
            raise ValueError(f"matmul_precision must be 'auto', 'full' or 'bfloat16', got {self.matmul_precision!r}")

    def _validate(self, X, reset: bool):
        return _finite_rows(self, X, reset, accept_sparse=True)

    @property
    def _n_features_out(self):
        """The number of outputs of transform (ClassNamePrefixFeaturesOutMixin: names bernoullirbm0, ...)."""
        return self.components_.shape[0]

    def _check_memory(self, n_rows: int, n_features: int) -> None:
        """Refuse, before allocating, an RBM whose training cannot fit in memory. Measured peaks (maximum resident
        size, less an empty fit's, on 6 and 200 features) stay under 32 bytes per weight (the weights, their
        gradient, the kernels' copies) plus 48 bytes per unit and row of the batch_size persistent chains and of
        the minibatch (states, probabilities, uniforms, products), which is what is checked."""
        from genlearn.validate import check_memory

        n, h, chains = int(n_features), int(self.n_components), int(self.batch_size)
        rows = chains + min(chains, int(n_rows))
        nbytes = 32 * (n * h + n + h) + 48 * rows * (n + h)
        check_memory(nbytes, f"an RBM of {n} visible x {h:,} hidden units (n_components) trained with {chains:,} "
                     "persistent chains (batch_size)", "choose a smaller n_components or batch_size")

    def _new_model(self, n_features: int, rng) -> None:
        self._torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        from genlearn.learning.rules import make_rule

        self.model_ = RBM(n_features, int(self.n_components), init_std=0.01, seed=self._torch_seed)
        if self.gradient == "exact":
            self._rule = make_rule("rbm-exact-gradient")
        else:
            self._rule = make_rule("contrastive-divergence", {
                "k": int(self.k), "persistent": self.gradient == "pcd", "n_chains": int(self.batch_size),
                "matmul_precision": self.matmul_precision})
        self._rule.check(self.model_)
        self._generator = torch.Generator().manual_seed(self._torch_seed)
        # h_samples_'s draws: a generator apart from the training's, which they must not advance
        self._h_generator = torch.Generator().manual_seed((self._torch_seed + 1) % (2**31 - 1))
        self._log_z_cache = []

    def _sgd_pass(self, x: torch.Tensor, order: torch.Tensor | None) -> None:
        """One pass of plain SGD, theta <- theta - learning_rate * g, with g the learning rule's estimate of the KL
        gradient on each minibatch (PCD-k / CD-k, or the exact gradient)."""
        model, lr, rule = self.model_, float(self.learning_rate), self._rule
        params = (model.weight, model.visible_bias, model.hidden_bias)
        bs = int(self.batch_size)
        n = x.shape[0]
        with torch.no_grad():
            if hasattr(rule, "sgd_pass"):  # CD/PCD: each step and its update in one (rules.ContrastiveDivergence)
                rule.sgd_pass(model, x, torch.arange(n) if order is None else order, lr, bs, self._generator,
                              with_value=False)
                return
            for start in range(0, n, bs):
                batch = x.index_select(0, order[start:start + bs]) if order is not None else x[start:start + bs]
                for p in params:
                    p.grad = None
                rule.compute_gradient(model, batch, self._generator)
                for p in params:
                    p.sub_(p.grad, alpha=lr)  # gradient of the KL estimate: step downhill
                    p.grad = None

    def _sync(self) -> None:
        """The fitted attributes from the model in scikit-learn's dtypes: X's (float32 or float64) after fit,
        float64 after a first partial_fit (kept by later partial_fit calls)."""
        m = self.model_
        dtype = getattr(self, "_fit_dtype", np.float64)
        self.components_ = np.array(m.weight.detach().T.numpy(), dtype=dtype, order="C")
        self.intercept_hidden_ = np.array(m.hidden_bias.detach().numpy(), dtype=dtype)
        self.intercept_visible_ = np.array(m.visible_bias.detach().numpy(), dtype=dtype)
        if getattr(self._rule, "_precision", None) is not None:  # what "auto" resolved to (CD/PCD)
            self.matmul_precision_ = self._rule._precision[2]
        if self.gradient == "pcd":
            self.h_samples_ = self._hidden_chain_states().numpy().astype(dtype)
        self._log_z_cache = []

    def _hidden_chain_states(self) -> torch.Tensor:
        """h ~ Bernoulli(P(h | v)) for the rule's persistent chains v (batch_size x n_components, 0/1), from the
        hidden probabilities the next PCD step draws its own sample from; zeros before the first step (as
        scikit-learn's initial h_samples_)."""
        from genlearn.learning.rules import fresh_chain_probs

        rule, m = self._rule, self.model_
        if rule.chains is None:
            return torch.zeros(int(self.batch_size), int(self.n_components))
        probs = rule.chain_probs
        if probs is None or probs.shape != (rule.chains.shape[0], m.n_hidden):
            probs = fresh_chain_probs(rule.chains.float(), m.weight.detach(), m.hidden_bias.detach())
        probs = probs.detach().float()
        return (torch.rand(probs.shape, generator=self._h_generator) < probs).float()

    def _verbose_log_likelihood(self, X) -> str:
        """", exact mean log-likelihood = L nats" for the binary rows X when the exact log Z is cheap
        (genlearn.likelihood.monitors_exactly), else ""."""
        from genlearn.likelihood import log_partition, mean_free_energy, monitors_exactly

        if not monitors_exactly(self.model_) or not np.isin(X, (0.0, 1.0)).all():
            return ""
        with torch.no_grad():
            log_z = log_partition(self.model_, "exact").value
            mean_f = mean_free_energy(self.model_, torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        return f", exact mean log-likelihood = {-(mean_f + log_z):.6f} nats"

    # -- scikit-learn API -------------------------------------------------------------------------------
    @keeps_torch_rng
    def fit(self, X, y=None):
        """Fit by PCD-k (or the chosen gradient) for n_iter passes over X (n_samples x n_features)."""
        self._check_params()
        X = _unit_interval_rows(self, X, reset=True)
        self._fit_dtype = X.dtype
        rng = check_random_state(self.random_state)
        self._check_memory(X.shape[0], X.shape[1])
        self._new_model(X.shape[1], rng)
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        self.model_.set_training_statistics(x)
        for it in range(int(self.n_iter)):
            t0 = time.perf_counter()
            order = torch.randperm(x.shape[0], generator=self._generator)
            self._sgd_pass(x, order)
            if self.verbose:
                seconds = time.perf_counter() - t0
                print(f"[BernoulliRBM] Iteration {it + 1}, time = {seconds:.2f}s{self._verbose_log_likelihood(X)}")
        self._sync()
        return self

    @keeps_torch_rng
    def partial_fit(self, X, y=None):
        """One SGD pass over X in minibatches of batch_size (the first call initialises the model)."""
        self._check_params()
        first = not hasattr(self, "model_")
        X = _unit_interval_rows(self, X, reset=first)
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if first:
            self._fit_dtype = np.dtype(np.float64)  # as scikit-learn's partial_fit, whatever X's dtype
            self._check_memory(X.shape[0], X.shape[1])
            self._new_model(X.shape[1], check_random_state(self.random_state))
            self.model_.set_training_statistics(x)
        self._sgd_pass(x, None)
        self._sync()
        return self

    def transform(self, X):
        """P(h = 1 | X) = sigmoid(X W + c), shape (n_samples, n_components), in scikit-learn's dtype: that of
        X @ components_.T (float32 only when both are: X float32 after a fit on float32 rows)."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        with torch.no_grad():
            h = self.model_.hidden_probs(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        return h.numpy().astype(np.result_type(X.dtype, self.components_.dtype), copy=False)

    def gibbs(self, v):
        """One Gibbs sweep from the rows v: h ~ P(h|v), then v ~ P(v|h); returns the new v as a boolean array
        (n_samples x n_features), as scikit-learn's."""
        check_is_fitted(self)
        v = self._validate(v, reset=False)
        with torch.no_grad():
            out = self.model_.gibbs(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)), 1, self._generator)
        return out.numpy() != 0

    def log_partition(self):
        """The log Z estimate used by score_samples (an Estimate; cached until the next fit)."""
        check_is_fitted(self)
        if not self._log_z_cache:
            from genlearn.likelihood import log_partition

            est = log_partition(self.model_, self.log_z, steps=self.ais_steps, chains=int(self.ais_chains),
                                seed=self._torch_seed)
            self._log_z_cache.append(est)
        return self._log_z_cache[0]

    @property
    def log_z_(self):
        return self.log_partition()

    def score_samples(self, X):
        """log P(x) = -F(x) - log Z per row, in nats (exact or AIS log Z: see log_z_). Rows must be binary."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        if not np.isin(X, (0.0, 1.0)).all():
            bad = np.argwhere(~np.isin(X, (0.0, 1.0)))[0]
            raise ValueError(f"score_samples needs binary (0/1) rows: X[{bad[0]}, {bad[1]}] = {X[tuple(bad)]!r}; "
                             "the likelihood of an RBM is defined on {0,1}^n")
        log_z = self.log_partition().value
        with torch.no_grad():
            f = self.model_.free_energy(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64)).float())
        return -f.double().numpy() - log_z

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of X, nats per example."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, steps=1000, random_state=None):
        """n_samples binary rows drawn by `steps` Gibbs sweeps from uniformly random states."""
        check_is_fitted(self)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        _check_sample_memory(self.model_, n_samples)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        with torch.no_grad():
            v = self.model_.sample(int(n_samples), torch.Generator().manual_seed(seed), steps=int(steps))
        return v.double().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags




class DensityEstimator(BaseEstimator):
    """Any genlearn family as a scikit-learn density estimator, fitted by minimising D_KL(Q^||P_theta).

    Parameters
    ----------
    model : a family name from `genlearn models` ("product-bernoulli", "mixture", "made", "gaussian", ...).
    options : dict of the family's options (e.g. {"components": 20}), checked against the family's typed config
        (`genlearn fit FAMILY --help` lists them); None for its defaults.
    epochs, learning_rate, optimizer : the learning equation's settings (TrainConfig's epochs, lr, optimizer); None
        takes the family's own training (ModelSpec.training_defaults, as genlearn.fit(FAMILY, X) and `genlearn fit
        FAMILY`): e.g. full-batch L-BFGS until max_i |dD_KL/dtheta_i| <= 1e-7 nats (at most 1000 iterations) for
        product-bernoulli, gaussian, boltzmann with the exact gradient; EM until the NLL changes by <= 1e-7
        relative for mixture with {"em": True}; the family's optimizer, rate and batch size otherwise.
    batch_size : "auto" (default): the family's own; None: the whole training set per step; an int: minibatches of
        that many rows. As in genlearn.fit, choosing another optimizer or a batch size gives up the family's fit to
        convergence for its plain training defaults, and a setting the training would ignore is a ConfigError
        (a ValueError): a batch size with a full-batch optimizer (gd, lbfgs), an optimizer or learning_rate with
        a rule that takes no optimizer steps (options {"em": True}, {"closed_form": True}).
    random_state : None or int; seeds the initialisation (the family's init_seed option too, unless `options` set
        it), minibatches and sampling.

    `score_samples(X)` is log P(x|theta) in nats per row (exact for normalised families; for energy models
    -F(x) - log Z with log Z exact when enumerable, else AIS; for a latent-variable family the policy of
    genlearn.likelihood.choose_method: importance sampling with q(z|x) (vae), quadrature over z (gan, latent <= 2)
    or forward AIS over z (gan, larger latent spaces; an estimate that is low in expectation)); `score(X)` its
    mean; `sample(n)` draws rows.
    """

    def __init__(self, model="product-bernoulli", *, options=None, epochs=None, learning_rate=None,
                 optimizer=None, batch_size="auto", random_state=None, verbose=0):
        self.model = model
        self.options = options
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _tensor(self, X, reset: bool) -> torch.Tensor:
        X = _finite_rows(self, X, reset)
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))

    def _given_training(self) -> dict:
        """The training settings chosen here, as genlearn.fit's keyword arguments (TrainConfig names; None and
        batch_size "auto" left out: the family's own)."""
        bs = self.batch_size
        if not (bs is None or (isinstance(bs, str) and bs == "auto")
                or (isinstance(bs, (int, np.integer)) and not isinstance(bs, bool) and bs >= 1)):
            raise ConfigError(f"batch_size must be 'auto' (the family's own), None (the whole training set per step) "
                              f"or a positive integer, got {bs!r}"[:300])
        given = {"epochs": self.epochs, "lr": self.learning_rate, "optimizer": self.optimizer,
                 "batch_size": None if isinstance(bs, str) else bs}
        for name in ("epochs", "batch_size"):  # numpy integers (a parameter grid's) as TrainConfig's int
            if isinstance(given[name], np.integer):
                given[name] = int(given[name])
        if isinstance(given["lr"], np.floating):
            given["lr"] = float(given["lr"])
        return {k: v for k, v in given.items() if v is not None}

    @keeps_torch_rng
    def fit(self, X, y=None):
        """Fit the family to the rows of X (n_samples x n_features) with the settings of genlearn.fit(FAMILY, X):
        the family's training defaults (ModelSpec.training_defaults) under the settings given here, refused by
        the same checks (genlearn.checks.check_dependent_options, check_training), by genlearn's Trainer."""
        from genlearn import checks
        from genlearn.data.dataset import Dataset
        from genlearn.learning import TrainConfig, Trainer
        from genlearn.learning.rules import make_rule
        from genlearn.models.registry import build_model, get_spec, rule_for

        x = self._tensor(X, reset=True)
        if not isinstance(self.model, str):
            raise ConfigError(f"model must be a family name (e.g. 'product-bernoulli'; see `genlearn models`), got "
                              f"{type(self.model).__name__} {self.model!r}"[:300])
        spec = get_spec(self.model)
        if self.options is not None and not isinstance(self.options, dict):
            raise ConfigError(f"options must be a dict of the family's options (e.g. {{'components': 20}}) or None, "
                              f"got {type(self.options).__name__} {self.options!r}"[:300])
        options = dict(self.options or {})
        given = self._given_training()
        checks.check_dependent_options(self.model, options)  # as genlearn.fit: options the others make moot
        kind = "real" if "real" in spec.data_kinds else spec.data_kinds[0]
        if kind == "categorical":
            raise ValueError("DensityEstimator models rows of features; use genlearn.Categorical for one die")
        dataset = Dataset(name="array", kind=kind, train=x)
        # genlearn.fit's settings: the family's defaults (its fit to convergence unless the optimizer or a batch
        # size is chosen) under the given ones; batch_size None is a value here: the whole training set per step
        settings = {**spec.training_defaults(options, given), **given}
        if self.batch_size is None:
            settings["batch_size"] = None
        checks.check_model_memory(self.model, dataset, options, settings)  # sized before it is allocated
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        torch.manual_seed(seed)  # any initialisation that draws from the global generator (restored after fit)
        # random_state seeds the initial parameters of the families that seed their own (their init_seed option),
        # unless the options set it; given after the checks, which refuse an init_seed the options make moot
        seeded = {"init_seed": seed} if "init_seed" in spec.options and "init_seed" not in options else {}
        model = build_model(self.model, dataset, **options, **seeded)
        model.check_input(x)
        config = TrainConfig.from_dict({**settings, "seed": seed, "progress": bool(self.verbose)})
        rule = make_rule(*rule_for(self.model, **options))  # e.g. {"em": True}: the EM rule
        # as genlearn.fit: epochs >= 1, and every given setting the training would ignore (a batch size with gd,
        # the optimizer's settings with EM); the Trainer refuses a batch size with L-BFGS
        checks.check_training(config, given, model, rule=rule)
        Trainer(model, dataset, config, rule=rule).fit()
        self.model_ = model.eval()
        self._seed = seed
        return self

    def score_samples(self, X):
        """log P(x|theta) per row, nats: exact for normalised families, -F(x) - log Z for energy models with log Z
        from the likelihood policy (exact when enumerable, else AIS), the likelihood policy's estimate for a
        latent-variable family (class docstring)."""
        from genlearn.likelihood import log_likelihoods

        check_is_fitted(self, "model_")
        log_p, _ = log_likelihoods(self.model_, self._tensor(X, reset=False))
        return log_p.numpy()

    def score(self, X, y=None):
        """Mean log-likelihood per row, nats (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """n_samples rows drawn from the fitted model: fresh rows on every call unless seeded (by `random_state`
        here, else by the estimator's own random_state, as scikit-learn's GaussianMixture.sample does)."""
        check_is_fitted(self, "model_")
        seed = _sample_seed(n_samples, self.random_state if random_state is None else random_state)
        _check_sample_memory(self.model_, n_samples)
        with torch.no_grad():
            return self.model_.sample(int(n_samples), generator=torch.Generator().manual_seed(seed)).double().numpy()


class VariationalAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A variational autoencoder (genlearn's `vae` family: Bernoulli decoder, Gaussian encoder q(z|x)) as a
    scikit-learn density estimator and transformer of binary rows, trained by maximising the ELBO (k = 1) or the
    IWAE bound (k > 1) with Adam, through genlearn's Trainer and the "elbo" learning rule.

    log P(x) of a VAE is intractable: `score_samples(X)` returns ESTIMATES of log P(x) per row in nats, by
    importance sampling with q(z|x) as proposal and `eval_iw_samples` samples per row (genlearn.likelihood;
    E[log P^(x)] <= log P(x): they under-estimate in expectation, less as the number of samples grows); how they
    were computed is recorded in `score_method_` = {"method": "importance-sampling", "iw_samples": k, "seed": s}.
    `score(X)` is their mean. The random numbers are seeded (the same call gives the same numbers) and drawn
    for the rows in order, so a row's estimate varies, within its Monte Carlo error, with the other rows scored
    alongside it. `elbo(X)` gives the per-row ELBO (<= the estimates), `transform(X)` the posterior
    means E_q[z|x], `sample(n)` binary rows drawn from the model. Every method takes binary (0/1) rows only and
    raises ValueError for any other value.

    Parameters
    ----------
    latent : size of the latent space D (int), or two sizes (d1, d2) for a two-layer hierarchy.
    hidden : sizes of the deterministic layers of every MLP (int or tuple).
    activation : "tanh", "relu", "softplus" or "gated".
    prior : "standard" (N(0, I)) or "vampprior" (a mixture of the encoder's posteriors at learned pseudo-inputs).
    pseudo_inputs : number of VampPrior pseudo-inputs (at most the number of training rows).
    iw_samples : importance samples per row in training: 1 = the ELBO, k > 1 = the IWAE bound.
    warmup_epochs : KL warm-up over this many epochs (0 = off).
    epochs, learning_rate, batch_size : Adam's passes over the data, step size and minibatch size (None = the
        whole training set per step).
    eval_iw_samples : importance samples per row of score_samples / score (5000, the literature's protocol).
    random_state : None or int; seeds the initial weights, minibatches, evaluation and sampling.
    verbose : a progress bar while training.

    Fitted attributes: `model_` (the genlearn VAE), `latent_dim_`, `n_features_in_`, `score_method_`;
    get_feature_names_out() names transform's columns variationalautoencoder0, ... (scikit-learn's convention).
    """

    def __init__(self, latent=50, *, hidden=(200, 200), activation="tanh", prior="standard", pseudo_inputs=500,
                 iw_samples=1, warmup_epochs=0, epochs=100, learning_rate=1e-3, batch_size=100,
                 eval_iw_samples=5000, random_state=None, verbose=0):
        self.latent = latent
        self.hidden = hidden
        self.activation = activation
        self.prior = prior
        self.pseudo_inputs = pseudo_inputs
        self.iw_samples = iw_samples
        self.warmup_epochs = warmup_epochs
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.eval_iw_samples = eval_iw_samples
        self.random_state = random_state
        self.verbose = verbose

    # -- helpers --------------------------------------------------------------------------------------------
    def _check_params(self):
        def count(name, minimum):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
                kind = "positive" if minimum == 1 else "non-negative"
                raise ValueError(f"{name} must be a {kind} integer, got {v!r}")

        for name in ("pseudo_inputs", "iw_samples", "eval_iw_samples"):
            count(name, 1)
        for name in ("warmup_epochs", "epochs"):
            count(name, 0)
        if self.batch_size is not None:
            count("batch_size", 1)
        if not (isinstance(self.learning_rate, (int, float, np.floating)) and not isinstance(self.learning_rate, bool)
                and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")

    def _sizes(self, value):
        """An int or a sequence of ints as the list the VAE takes (numpy integers included)."""
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return [int(value)]
        if isinstance(value, (list, tuple, np.ndarray)):
            return [int(v) if isinstance(v, np.integer) else v for v in value]
        return value

    def _binary(self, X, reset: bool, what: str) -> torch.Tensor:
        X = _finite_rows(self, X, reset)
        bad = (X != 0) & (X != 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{what} needs binary (0/1) rows: X[{r}, {c}] = {X[r, c]!r} ({int(bad.sum())} such "
                             "values); a VAE with a Bernoulli decoder models {0,1}^n: binarize the data first "
                             "(e.g. X > 0.5)")
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))

    @property
    def _n_features_out(self):
        """The number of outputs of transform: the latent dimension (ClassNamePrefixFeaturesOutMixin)."""
        return self.latent_dim_

    def _record_score_method(self) -> dict:
        self.score_method_ = {"method": "importance-sampling", "iw_samples": int(self.eval_iw_samples),
                              "seed": self._seed}
        return self.score_method_

    # -- scikit-learn API -------------------------------------------------------------------------------------
    @keeps_torch_rng
    def fit(self, X, y=None):
        """Fit to the binary rows of X (n_samples x n_features) by Adam on -ELBO (or -IWAE bound), `epochs` passes
        in minibatches of batch_size, through genlearn's Trainer and the "elbo" learning rule."""
        from genlearn.data.dataset import Dataset
        from genlearn.learning import TrainConfig, Trainer
        from genlearn.learning.rules import make_rule
        from genlearn.models.registry import build_model, rule_for

        self._check_params()
        x = self._binary(X, reset=True, what="fit")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        torch.manual_seed(seed)
        options = {"latent": self._sizes(self.latent), "hidden": self._sizes(self.hidden),
                   "activation": self.activation, "prior": self.prior, "pseudo_inputs": int(self.pseudo_inputs),
                   "iw_samples": int(self.iw_samples), "warmup_epochs": int(self.warmup_epochs), "init_seed": seed}
        dataset = Dataset(name="array", kind="binary", train=x)
        from genlearn.checks import check_model_memory  # sized before it is allocated

        check_model_memory("vae", dataset, options, {"optimizer": "adam"})
        model = build_model("vae", dataset, **options)  # ConfigError (a ValueError) for an impossible setting
        rule = make_rule(*rule_for("vae", **options))
        config = TrainConfig.from_dict({"epochs": int(self.epochs), "lr": float(self.learning_rate),
                                        "optimizer": "adam",
                                        "batch_size": None if self.batch_size is None else int(self.batch_size),
                                        "seed": seed, "progress": bool(self.verbose)})
        Trainer(model, dataset, config, rule=rule).fit()
        self.model_ = model.eval()
        self.latent_dim_ = int(model.latent_dim)
        self._seed = seed
        self._record_score_method()
        return self

    def score_samples(self, X):
        """ESTIMATES of log P(x) per binary row, nats (float64): importance sampling with q(z|x) as proposal,
        eval_iw_samples samples per row from a generator seeded at fit (score_method_ says how). They
        under-estimate log P(x) in expectation (the IWAE bound L_k, k = eval_iw_samples)."""
        from genlearn.likelihood import log_likelihoods

        check_is_fitted(self, "model_")
        x = self._binary(X, reset=False, what="score_samples")
        how = self._record_score_method()
        log_p, _ = log_likelihoods(self.model_, x, iw_samples=how["iw_samples"], seed=how["seed"])
        return log_p.numpy()

    def score(self, X, y=None):
        """Mean of score_samples: the importance-sampling estimate of the mean log-likelihood, nats per row."""
        return float(np.mean(self.score_samples(X)))

    def elbo(self, X, n_samples=100):
        """The ELBO E_q[log P(x|z) + log p(z) - log q(z|x)] per binary row, nats (float64), estimated by the mean
        over n_samples draws z ~ q(z|x) (seeded at fit); a lower bound of log P(x), below score_samples."""
        from genlearn.likelihood import importance_sampling

        check_is_fitted(self, "model_")
        x = self._binary(X, reset=False, what="elbo")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        return importance_sampling(self.model_, x, int(n_samples), self._seed)["elbo"].numpy()

    def transform(self, X):
        """The posterior means E_q[z|x] of the binary rows of X, shape (n_samples, latent_dim_), float64."""
        check_is_fitted(self, "model_")
        x = self._binary(X, reset=False, what="transform")
        with torch.no_grad():
            return self.model_.posterior_mean(x).double().numpy()

    def sample(self, n_samples=1, random_state=None):
        """n_samples binary rows drawn from the model: z ~ p(z), then x ~ Bernoulli(sigmoid(decoder(z)))."""
        check_is_fitted(self, "model_")
        seed = _sample_seed(n_samples, self.random_state if random_state is None else random_state)
        _check_sample_memory(self.model_, n_samples)
        with torch.no_grad():
            return self.model_.sample(int(n_samples), generator=torch.Generator().manual_seed(seed)).double().numpy()


def _unit_interval_rows(estimator, X, reset: bool) -> np.ndarray:
    """`_finite_rows` (sparse accepted) of a Bernoulli model's training rows, and one UserWarning naming the first
    value outside [0, 1] (0/1 pixels, or probabilities as scikit-learn's BernoulliRBM takes them), checked in the
    one pass that replaces the finiteness check. A warning, not an error: scikit-learn's BernoulliRBM fits any
    finite values, and its estimator checks (check_estimator) feed them."""
    import warnings

    from genlearn.binary_kernels import count_outside_unit

    X = _finite_rows(estimator, X, reset, accept_sparse=True, check_finite=False)
    if count_outside_unit(X) == 0:
        return X
    _check_finite(X)
    r, c = np.argwhere((X < 0) | (X > 1))[0]
    warnings.warn(f"X holds {X[r, c]:g} at row {r}, column {c}: a Bernoulli RBM models values in [0, 1] (0/1 "
                  "pixels, or probabilities), and fits others as if they were such means; binarize or rescale X "
                  "first", UserWarning, stacklevel=4)  # the caller of fit / partial_fit (through keeps_torch_rng)
    return X


def _finite_rows(estimator, X, reset: bool, accept_sparse: bool = False, check_finite: bool = True) -> np.ndarray:
    """X as a float (n_samples, n_features) array checked by scikit-learn's validate_data (shape, the number of
    features seen in fit; float32 kept, other types to float64), then for NaN and infinity with a message for
    density models: one ValueError naming the first bad entry (scikit-learn's own points to classifiers that accept
    missing values). With `accept_sparse`, a scipy.sparse matrix is densified once its dense size (n_samples x
    n_features x 4 or 8 bytes) is checked against the machine's memory (genlearn.validate.check_memory)."""
    X = validate_data(estimator, X, reset=reset, dtype=(np.float64, np.float32),
                      accept_sparse="csr" if accept_sparse else False, ensure_all_finite=False)
    if accept_sparse and sp.issparse(X):
        from genlearn.validate import check_memory

        n, d = X.shape
        check_memory(float(n) * d * X.dtype.itemsize, f"the sparse X as a dense array of {n:,} x {d:,} {X.dtype} "
                     "values", "pass fewer rows at a time (partial_fit) or fewer features")
        X = X.toarray()
    if check_finite:
        _check_finite(X)
    return X


def _check_finite(X: np.ndarray) -> None:
    """One ValueError naming the first NaN or infinite entry of X, if any."""
    if np.isfinite(np.sum(X)):  # the common case in one pass without a mask (scikit-learn's own fast path)
        return
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"X holds {X[r, c]} at row {r}, column {c} ({int(bad.sum())} NaN or inf values); a density "
                         "model needs finite values: remove or impute those rows first")


def _sample_seed(n_samples, random_state) -> int:
    """The seed of a sample() call: drawn from `random_state` (None: numpy's global generator, so fresh rows on
    every call; an int: the same rows every call); n_samples must be a positive integer (ValueError)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return int(check_random_state(random_state).randint(2**31 - 1))


def _check_sample_memory(model, n_samples) -> None:
    """Refuse, before allocating, n_samples rows that cannot fit in memory: the float32 rows, their float64 copy
    returned, and one activation per row and unit of the model's widest layer (checks.check_sample_count)."""
    from genlearn.checks import check_sample_count, layer_width

    check_sample_count(int(n_samples), model.n_features, what="n_samples", width=layer_width(model))


#: the scikit-learn VAE wrapper under its short name
VAE = VariationalAutoencoder


__all__ = ["BernoulliRBM", "DensityEstimator", "VAE", "VariationalAutoencoder", "sample_bernoulli"]
