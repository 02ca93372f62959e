"""The `genlearn` command: fit, eval, sample, kl, recipes, datasets, models, demo, tune.

Every error a user can cause (GenlearnError, unreadable files) is printed as one line `genlearn: error: ...`
and exits with code 2, without a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from genlearn.errors import ConfigError, GenlearnError, RunError

EXIT_USAGE = 2


#: the command line being parsed (set by _main), for the hints of _Parser.error
_ARGV: list[str] = []


class _Parser(argparse.ArgumentParser):
    """argparse with the package's error format: one line `genlearn: error: ...` and exit code 2. Flags are matched
    whole (no abbreviations: `refit --data X` was read as --data-dir X and ignored)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.endswith("expected one argument"):
            message += _missing_value_hint(message, _ARGV)
        prog = self.prog
        if prog == "genlearn" and message.startswith("unrecognized arguments"):  # a command's unknown flags
            prog = " ".join(["genlearn", *_command_of(_ARGV)])
        self.exit(EXIT_USAGE, f"genlearn: error: {message} (see `{prog} --help`)\n")


def _command_of(argv: list[str]) -> list[str]:
    """The command words of a command line: [], ["eval"], or ["fit", FAMILY]."""
    words = []
    for arg in argv[:2]:
        if arg.startswith("-") or (words and words[0] != "fit"):
            break
        words.append(arg)
    return words


def _missing_value_hint(message: str, argv: list[str]) -> str:
    """The hint for argparse's "argument --flag: expected one argument": a flag followed by a negative number (e.g.
    --p -0.5,1.5, which argparse reads as a flag) is written --flag=VALUE; a flag followed by nothing or by another
    flag needs its value after it."""
    flag = message.removeprefix("argument ").split(":")[0].split("/")[0].strip()
    nxt = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag), None)
    if nxt is not None and nxt[:1] == "-" and nxt[1:2] in tuple("0123456789."):  # a negative number
        return f"; a value that starts with '-' is written {flag}=VALUE"
    return f"; write its value after it ({flag} VALUE)"


def _data_args(p: argparse.ArgumentParser, required: bool = False, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    p.add_argument("--data", required=required, metavar="DATASET", default=default,
                   help="NAME[:key=value,...] (see `genlearn datasets`) or a path to a file or folder")
    p.add_argument("--data-dir", metavar="DIR", default=default,
                   help="where named real data sets live (or env GENLEARN_DATA)")


def _partition_args(p: argparse.ArgumentParser, suppress: bool = False, fit: bool = False) -> None:
    """The evaluation flags; in `genlearn fit` the importance-sample count is --eval-iw-samples (--iw-samples is
    the training bound's k of the vae family there)."""
    from genlearn.likelihood import PARTITION_METHODS

    default = argparse.SUPPRESS if suppress else None
    p.add_argument("--partition", choices=PARTITION_METHODS, default=default,
                   help="log Z of energy models: exact enumeration, AIS with reverse-AIS bounds, the mean-field "
                        "lower bound (Boltzmann machines), or auto (the policy of genlearn.likelihood; default)")
    p.add_argument("--ais-steps", type=int, default=default,
                   help="AIS inverse temperatures (default: the published 14,500)")
    p.add_argument("--ais-chains", type=int, default=default, help="AIS chains (default 100; latent models 4)")
    g = p.add_argument_group("latent-variable models (vae): log P(x) = log integral p(z) P(x|z) dz")
    g.add_argument("--eval-iw-samples" if fit else "--iw-samples", dest="eval_iw_samples", type=int, default=default,
                   metavar="K",
                   help="importance samples per test row, q(z|x) as proposal (default 5000)")
    g.add_argument("--ais-rows", type=int, default=default, metavar="N",
                   help="also run AIS over z (HMC) on the first N test rows (with --partition ais: 1000)")
    g.add_argument("--ais-leapfrog", type=int, default=default, metavar="L", help="HMC leapfrog steps (10)")
    g.add_argument("--ais-start", choices=("prior", "encoder"), default=default,
                   help="where AIS over z (and BDMC) starts: the prior p(z) (default) or the encoder's q(z|x), a "
                        "start nearer the posterior (vae)")
    g.add_argument("--bdmc-rows", type=int, default=default, metavar="N",
                   help="BDMC: forward and reverse AIS on N rows simulated from the model (default 100)")


def _device_arg(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    from genlearn.learning.devices import DEVICE_HELP

    p.add_argument("--device", metavar="DEVICE", default=argparse.SUPPRESS if suppress else None, help=DEVICE_HELP)


def _threads_arg(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    p.add_argument("--threads", type=int, metavar="N", default=argparse.SUPPRESS if suppress else None,
                   help="CPU threads for torch and the compiled kernels (default: the cores that other work "
                        "leaves free when the command starts, at most one per core)")


def _fit_arguments(p: argparse.ArgumentParser, spec=None) -> None:
    """The flags of `genlearn fit [FAMILY]`: run and data flags, the training flags (from TrainConfig, with the
    family's own defaults in their help) and, for a family, its options (from its config dataclass). Every
    value stays unset unless given, so flags may come before or after the family name."""
    from genlearn import options
    from genlearn.learning.trainer import TrainConfig

    suppress = argparse.SUPPRESS
    _data_args(p, suppress=True)
    p.add_argument("--out", metavar="DIR", default=suppress, help="run folder (default runs/MODEL-DATASET)")
    p.add_argument("--overwrite", action="store_true", default=suppress, help="replace an existing run in --out")
    p.add_argument("--resume", metavar="DIR", default=suppress,
                   help="continue the interrupted run in DIR exactly where it stopped")
    p.add_argument("--init-from", metavar="DIR", default=suppress,
                   help="start from the parameters of the run in DIR (same family and architecture; e.g. IWAE "
                        "training continued from an ELBO-trained VAE) instead of a fresh initialisation")
    p.add_argument("--recipe", metavar="NAME", default=suppress,
                   help="a named configuration that reproduces a published figure (see `genlearn recipes`), or a "
                        "recipe file (e.g. the best.toml of `genlearn tune`); flags given beside it override its "
                        "settings and are recorded in the run")
    p.add_argument("--quiet", action="store_true", default=suppress,
                   help="no progress bar, no per-epoch lines, no note on the CPU load")
    p.add_argument("--tensorboard", metavar="DIR", default=suppress,
                   help="write TensorBoard logs to DIR during training (scalars, sample grids; the tensorboard "
                        "extra: pip install 'genlearn[tensorboard]')")
    _threads_arg(p, suppress=True)
    _device_arg(p, suppress=True)
    _partition_args(p, suppress=True, fit=True)
    g = p.add_argument_group("learning (theta <- theta - lr * dD_KL/dtheta)")
    if spec is not None:
        converged = spec.training_defaults()
        optimizer = converged.get("optimizer", TrainConfig.optimizer)
        options.add_arguments(g, TrainConfig, "train_", converged, spec.name,
                              otherwise={**spec.train_defaults, "optimizer": optimizer},
                              condition=f"with --optimizer {optimizer}")
    else:
        options.add_arguments(g, TrainConfig, "train_")
    if spec is not None and options.field_types(spec.config):
        g = p.add_argument_group(f"{spec.name} options")
        options.add_arguments(g, spec.config, "model_")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `genlearn` parser. `only`: populate that command alone (the others keep their name and help, all that
    `genlearn --help` shows), so that the top-level help imports neither torch nor the model families; None: all."""
    parser = _Parser(
        prog="genlearn",
        description="Learn generative models P(X|theta) by minimising D_KL(Q^||P_theta) = NLL - H(Q^).",
    )
    from genlearn import __version__

    parser.add_argument("--version", action="version", version=f"genlearn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a model to a data set; writes checkpoint, metrics.json and plots to --out",
                       description="Fit a model family (`genlearn fit FAMILY --help` lists its options), run a "
                                   "recipe (--recipe NAME) or continue a run (--resume DIR).")
    if only in (None, "fit"):
        from genlearn.models.registry import list_models

        _fit_arguments(p)
        families = p.add_subparsers(dest="family", metavar="FAMILY", required=False)
        for spec in list_models():
            fp = families.add_parser(spec.name, help=spec.summary, description=f"{spec.name}: {spec.summary}")
            _fit_arguments(fp, spec)

    p = sub.add_parser("eval", help="print the metrics of a fitted run as JSON (optionally on other data)")
    if only in (None, "eval"):
        _threads_arg(p)
        _device_arg(p)
        p.add_argument("run", metavar="DIR")
        _data_args(p)
        p.add_argument("--split", choices=("train", "valid", "test", "all"), default="all",
                       help="the split(s) to score (default all: the run's recorded figures unless a flag asks for "
                            "a new evaluation; a single split is always scored anew)")
        p.add_argument("--seed", type=int, default=0, help="seed of stochastic estimators (AIS)")
        _partition_args(p)

    p = sub.add_parser("sample", help="draw samples from a fitted run: a PNG grid for images, else CSV")
    if only in (None, "sample"):
        _threads_arg(p)
        _device_arg(p)
        p.add_argument("run", metavar="DIR")
        p.add_argument("-n", type=int, default=64, help="number of samples (64)")
        p.add_argument("--out", metavar="FILE", help=".png (image grid), .csv or .txt; default: CSV on standard "
                       "output")
        p.add_argument("--seed", type=int, default=0,
                       help="seed of the random numbers (default 0: the same samples every time; give others for "
                            "other samples)")
        p.add_argument("--steps", type=int, help="Gibbs sweeps for models sampled by MCMC")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    p = sub.add_parser("kl", help="D_KL(P||Q) between two tables (--p 0.5,0.5 --q 0.9,0.1) or two fitted runs")
    if only in (None, "kl"):
        _threads_arg(p)
        p.add_argument("--p", required=True, help="probabilities p1,p2,... or a run folder")
        p.add_argument("--q", required=True, help="probabilities q1,q2,... or a run folder")
        from genlearn.divergence import KL_METHODS

        p.add_argument("--method", default="auto", choices=KL_METHODS,
                       help="closed form, exact enumeration, quadrature or Monte Carlo (auto: the exact one that "
                            "applies)")

    sub.add_parser("recipes", help="list the recipes: named configurations, the figure each produced and its cost")
    sub.add_parser("datasets", help="list the named data sets")
    sub.add_parser("models", help="list the model families")

    p = sub.add_parser("bench", help="time genlearn's RBM against scikit-learn's, side by side (PCD-1 epochs)",
                       description="One PCD-1 epoch of genlearn.sklearn.BernoulliRBM against scikit-learn's "
                                   "BernoulliRBM with the same arguments, in interleaved pairs in one process; "
                                   "prints each pair, the median ratio with its 95% interval, the roofline "
                                   "fractions and the machine record. The rows are --data's training rows (0/1), "
                                   "by default 60,000 random rows of 784 pixels at density 0.13 (binarized MNIST's "
                                   "shape and density).")
    if only in (None, "bench"):
        _data_args(p)
        p.add_argument("--rows", type=int, default=None, metavar="N", help="the first N rows (default: all)")
        p.add_argument("--hidden", type=int, default=500, help="n_components of both (default 500)")
        p.add_argument("--batch-size", type=int, default=100, help="batch_size of both (default 100)")
        p.add_argument("--lr", type=float, default=0.01, help="learning_rate of both (default 0.01)")
        p.add_argument("--pairs", type=int, default=5, help="interleaved pairs of fits (default 5)")
        p.add_argument("--matmul-precision", choices=("auto", "full", "bfloat16"), default="auto",
                       help="genlearn's product precision (default auto: bfloat16 only where it runs faster here)")
        p.add_argument("--cli", action="store_true",
                       help="also time the same epoch through `genlearn fit rbm` in a child process")
        p.add_argument("--settle", type=float, default=0.5, metavar="SECONDS",
                       help="idle seconds before each fit, not timed (default 0.5)")
        p.add_argument("--threads", type=int, metavar="N", default=None,
                       help="threads for torch and for numpy's BLAS (scikit-learn) alike (default: the cores that "
                            "other work leaves free when the command starts, for both sides)")
        p.add_argument("--gemm-seconds", type=float, default=0.5, metavar="SECONDS",
                       help="timing of each GEMM shape for the float32 peak (the roofline; default 0.5)")
        p.add_argument("--pool", nargs="+", default=None, metavar="FILE",
                       help="time nothing: pool the pairs of earlier runs' --out files (median, interval, run medians)")
        p.add_argument("--out", default=None, metavar="FILE", help="also write the results as JSON to FILE")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    p = sub.add_parser("demo", help="the framework's story on the embedded data, with a report folder")
    if only in (None, "demo"):
        _threads_arg(p)
        p.add_argument("--out", default="reports/demo", metavar="DIR")
        p.add_argument("--fast", action="store_true", help="a smaller, quicker version (for tests)")
        p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("report", help="one self-contained HTML page of one run, or comparing several",
                       description="An HTML page (images embedded, no network needed) with each run's model, data, "
                                   "recipe, likelihoods with their methods and brackets, KL decomposition, learning "
                                   "curves, samples and filters; with several runs a sortable comparison table "
                                   "and overlaid learning curves. An unreadable folder gets a message of its own.")
    if only in (None, "report"):
        _threads_arg(p)
        p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `genlearn fit`")
        p.add_argument("--out", default="report.html", metavar="FILE", help="the page to write (default report.html)")
        p.add_argument("--data-dir", metavar="DIR", help="where real data sets live, for plots that need the data "
                                                         "(reconstructions of a run without them)")
        p.add_argument("--title", help="the page's title")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    p = sub.add_parser("refit", help="train a finished run again on its train + valid rows, for its best epoch count",
                       description="The run's family, options, seed and start (--init-from) trained on the train "
                                   "rows then the valid rows, for the epoch where its valid NLL was best, the rates "
                                   "of its plateau, cosine or geometric schedule replayed epoch by epoch; the test "
                                   "split scored as the run's evaluation settings say. The valid rows are training "
                                   "rows of the refit: it has no valid figures.")
    if only in (None, "refit"):
        _threads_arg(p)
        p.add_argument("run", metavar="RUN", help="a run folder finished by `genlearn fit`")
        p.add_argument("--out", required=True, metavar="DIR", help="the refitted run's folder")
        p.add_argument("--data-dir", metavar="DIR", help="where the run's data set lies (default: the folder the run "
                                                         "recorded)")
        p.add_argument("--init-from", metavar="DIR", help="start from the run in DIR instead of the start RUN recorded "
                                                         "(e.g. the refit of that start)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs to DIR during training")

    p = sub.add_parser("tune", help="search families and settings by the validation NLL (Optuna); test scored once",
                       description="Model selection by the validation NLL: Optuna's TPE over each family's search "
                                   "space, pruning poor learning curves; each trial a run folder in OUT/trials; the "
                                   "best scored once on the test split; OUT/summary.json and the recipe "
                                   "OUT/best.toml (`genlearn fit --recipe OUT/best.toml`). Needs the `tune` extra.")
    if only in (None, "tune"):
        from genlearn.tune import add_arguments as tune_arguments

        tune_arguments(p)
    return parser


#: evaluation flags -> keyword arguments of the likelihood computations (energy models: steps, chains; latent
#: models: those and the importance-sampling / AIS-over-z / BDMC settings)
EVALUATION_FLAGS = {"ais_steps": "steps", "ais_chains": "chains", "eval_iw_samples": "iw_samples",
                    "ais_rows": "ais_rows", "ais_leapfrog": "ais_leapfrog", "bdmc_rows": "bdmc_rows"}


def _ais_options(args) -> dict:
    """--ais-steps / --ais-chains / --seed (and the latent-model flags) as keyword arguments of the likelihood
    computations; a value below 1 is one error naming the flag."""
    options = {}
    for flag, key in EVALUATION_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            if value < (0 if flag == "bdmc_rows" else 1):  # --bdmc-rows 0: no BDMC; no AIS over z: no --ais-rows
                raise ConfigError(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
            options[key] = value
    start = getattr(args, "ais_start", None)
    if start is not None:
        options["ais_start"] = start
    if getattr(args, "partition", None) == "ais" or options:
        seed = getattr(args, "seed", None)
        if isinstance(seed, int):
            from genlearn.validate import check_seed

            check_seed(seed, "--seed")
        options["seed"] = seed if isinstance(seed, int) else 0
    return options


def _given(args, prefix: str, config_cls) -> dict:
    """The flags given on the command line with this prefix, converted to the config's types."""
    from genlearn import options

    return {k[len(prefix):]: options.convert(config_cls, k[len(prefix):], v)
            for k, v in vars(args).items() if k.startswith(prefix)}


def cmd_fit(args) -> int:
    from genlearn.learning.trainer import TrainConfig
    from genlearn.models.registry import get_spec
    from genlearn.runs import fit

    family = getattr(args, "family", None)
    train = _given(args, "train_", TrainConfig)
    model_options = _given(args, "model_", get_spec(family).config) if family else {}
    progress = not getattr(args, "quiet", False) and sys.stderr.isatty()
    data, data_dir, out = getattr(args, "data", None), getattr(args, "data_dir", None), getattr(args, "out", None)
    partition = getattr(args, "partition", None)
    if getattr(args, "recipe", None):
        return _fit_recipe(args, family, train, model_options, progress)
    if getattr(args, "resume", None):
        if family or model_options:
            raise ConfigError("--resume continues a run with its own model and options; do not repeat them")
        if getattr(args, "overwrite", False):
            raise ConfigError("--overwrite replaces a run, --resume continues it: give one of them")
        if out and Path(out) != Path(args.resume):
            raise ConfigError("--resume DIR continues the run in DIR; do not give a different --out")
        if Path(args.resume).exists() and not Path(args.resume).is_dir():
            raise ConfigError(f"--resume {args.resume} is a file; give the folder of the run to continue")
        run = fit(None, data, out=args.resume, resume=True, data_dir=data_dir, partition=partition or "auto",
                  partition_options=_ais_options(args), progress=progress, device=getattr(args, "device", None),
                  callbacks=_callbacks(args, progress), init_from=getattr(args, "init_from", None),
                  **train)
        return _report_fit(run, args)
    if not family:
        raise ConfigError("say which model to fit, e.g. `genlearn fit product-bernoulli --data digits` "
                          "(see `genlearn models`), or give --recipe NAME or --resume DIR")
    if not data:
        raise ConfigError("say which data to fit with --data (e.g. --data digits); see `genlearn datasets`")
    from genlearn.checks import check_dependent_options

    check_dependent_options(family, model_options, typed=set(model_options))  # a typed moot flag, at any value
    out = out or f"runs/{family}-{data.split(':')[0].replace('/', '_')}"
    run = fit(family, data, out=out, overwrite=getattr(args, "overwrite", False), data_dir=data_dir,
              partition=partition or "auto", partition_options=_ais_options(args), progress=progress,
              callbacks=_callbacks(args, progress), init_from=getattr(args, "init_from", None),
              device=getattr(args, "device", None), **train, **model_options)
    return _report_fit(run, args)


#: the monitored numbers a plain progress line shows (nats per example), when present in an evaluation record
PLAIN_KEYS = ("train_nll", "valid_nll", "train_nll_member", "valid_nll_member", "train_nll_ais", "valid_nll_ais",
              "train_neg_elbo", "valid_neg_elbo", "valid_nll_is", "kl_true")


#: ... and where none is monitored (an RBM too large for an exact log Z, a GAN's AIS-only likelihood): the
#: training objective of the epoch (its rule's `loss`) and a GAN's critic figures
FALLBACK_KEYS = ("loss", "divergence_estimate", "critic_loss", "generator_loss")


def _plain_lines(args, progress: bool):
    """Not on a terminal (a pipe, a log file) and not --quiet: no progress bar but one plain line per evaluation on
    standard error, `epoch 5/100 train_nll=... valid_nll=...`, from rank 0 alone under torchrun (None when a bar is
    shown or --quiet)."""
    if progress or getattr(args, "quiet", False):
        return None

    def line(trainer, rec):
        parallel = getattr(trainer, "parallel", None)
        if parallel is not None and not parallel.is_writer:  # torchrun: rank 0 alone prints
            return
        shown = [k for k in PLAIN_KEYS if isinstance(rec.get(k), (int, float))]
        epoch = int(rec.get("epoch") or 0)
        if not shown and (epoch % trainer.cfg.eval_every == 0 or epoch == trainer.cfg.epochs):  # no NLL to show
            shown = [k for k in FALLBACK_KEYS if isinstance(rec.get(k), (int, float))]
        if shown:
            print(f"epoch {rec['epoch']}/{trainer.cfg.epochs} " + " ".join(f"{k}={rec[k]:.6g}" for k in shown),
                  file=sys.stderr, flush=True)

    return [line]


def _callbacks(args, progress: bool):
    """The trainer callbacks of `genlearn fit`: the plain progress lines and, with --tensorboard DIR, the TensorBoard
    logger (made before training, so that a missing tensorboard package is one error up front)."""
    callbacks = list(_plain_lines(args, progress) or [])
    if getattr(args, "tensorboard", None):
        from genlearn.report.tensorboard import TensorBoardLogger

        args.tensorboard_logger = TensorBoardLogger(args.tensorboard)
        callbacks.append(args.tensorboard_logger)
    return callbacks or None


def _report_fit(run, args=None) -> int:
    logger = getattr(args, "tensorboard_logger", None)
    if logger is not None:  # the final metrics, with their methods, in the TensorBoard log too
        logger.finish(run.metrics)
    from genlearn.learning.distributed import shutdown

    shutdown()  # data-parallel (torchrun): leave the process group; rank 0 alone reports
    if run.metrics.get("rank", 0) != 0:
        return 0
    keys = ("model", "recipe", "dataset", "train_nll", "valid_nll", "test_nll", "test_nll_method", "test_nll_stderr",
            "test_nll_lower", "test_nll_upper", "test_elbo", "entropy_empirical", "kl_empirical",
            "kl_empirical_upper", "kl_empirical_upper_is", "kl_true", "converged", "wall_seconds")
    print(json.dumps({k: run.metrics.get(k) for k in keys if k in run.metrics
                      and (k != "converged" or run.metrics[k] is not None)}, indent=2))  # converged: under a tol
    print(f"run written to {run.dir}", file=sys.stderr)
    return 0


def _fit_recipe(args, family, train: dict, model_options: dict, progress: bool) -> int:
    """`genlearn fit --recipe NAME [overrides]`: the recipe's settings with every flag given on top; the run
    records the recipe's name and the overrides."""
    from genlearn.recipes import load_recipe
    from genlearn.runs import fit

    if getattr(args, "resume", None):
        raise ConfigError("--resume DIR continues a run with its own settings (a recipe's included); drop --recipe")
    recipe = load_recipe(args.recipe)
    if recipe.continues and not getattr(args, "init_from", None):
        raise ConfigError(f"recipe {recipe.name!r} continues a finished run of recipe {recipe.continues!r}: fit that "
                          f"first (genlearn fit --recipe {recipe.continues} --out runs/{recipe.continues}) and add "
                          f"--init-from runs/{recipe.continues}")
    if family and family != recipe.model:
        raise ConfigError(f"recipe {recipe.name!r} fits model {recipe.model!r}, not {family!r}")
    if getattr(args, "threads", None) is None and recipe.threads is not None:
        _set_threads(recipe.threads)
    overrides = {**train, **model_options}
    data = getattr(args, "data", None)
    if data:
        overrides["data"] = data
    evaluation = dict(recipe.evaluation)
    own = evaluation.pop("partition", "auto")
    partition = getattr(args, "partition", None) or own
    from genlearn.runs import latent_family

    if partition != own and not latent_family(recipe.model):  # an energy model's options are its method's own
        evaluation = {}
    partition_options = {**evaluation, **_ais_options(args)}
    if getattr(args, "partition", None) or _ais_options(args):
        overrides["evaluation"] = {"partition": partition, **_ais_options(args)}
    from genlearn.checks import check_dependent_options

    check_dependent_options(recipe.model, {**recipe.model_options, **model_options}, typed=set(model_options))
    out = getattr(args, "out", None) or f"runs/{recipe.name}"
    run = fit(recipe.model, data or recipe.data, out=out, overwrite=getattr(args, "overwrite", False),
              data_dir=getattr(args, "data_dir", None), partition=partition, partition_options=partition_options,
              progress=progress, recipe={"name": recipe.name, "overrides": overrides,
                                         "evaluation": dict(recipe.evaluation)},
              callbacks=_callbacks(args, progress), init_from=getattr(args, "init_from", None),
              device=getattr(args, "device", None), **recipe.fit_kwargs({**train, **model_options}))
    return _report_fit(run, args)


def cmd_recipes(args) -> int:
    from genlearn.recipes import list_recipes

    for r in list_recipes():
        fig = r.figure
        figure = f"{fig.get('metric', 'figure')} {fig.get('value')}" + (
            f" (published {fig['published']})" if fig.get("published") is not None else "")
        print(f"{r.name:16s} {r.summary}\n{'':16s} {figure}; {fig.get('cost', 'cost not recorded')}")
    print("run one with `genlearn fit --recipe NAME --data-dir DIR`; flags given beside it override its settings")
    return 0


def cmd_eval(args) -> int:
    from genlearn.data.registry import load_dataset
    from genlearn.evaluation import evaluate
    from genlearn.runs import load_run

    run = load_run(args.run, device=args.device)
    _say_unfinished(run)
    if args.partition is not None or _ais_options(args):  # a flag the run's model would ignore is refused
        from genlearn.checks import check_evaluation

        check_evaluation(args.partition or "auto", _ais_options(args), run.model)
        from genlearn.checks import moot_evaluation

        moot = moot_evaluation(args.partition or "auto", _ais_options(args), run.model)
        if moot is not None:
            raise ConfigError(moot[1])
    recompute = (args.data is not None or args.data_dir is not None or args.partition not in (None, "auto")
                 or bool(_ais_options(args)) or args.device is not None)
    if not recompute and args.split == "all" and run.metrics:  # the metrics the fit wrote
        metrics = dict(run.metrics)
        metrics.pop("history", None)
        _warn_if_file_changed(run)
    else:
        spec = args.data or run.meta.get("data_spec")
        if spec is None:
            raise ConfigError("this run was fitted on an in-memory data set; give --data to evaluate it")
        dataset = load_dataset(spec, args.data_dir if args.data_dir else run.meta.get("data_dir"))
        if not args.data:  # a refit run: its training rows are its spec's train and valid rows (genlearn.refit)
            from genlearn.data.refit_rows import as_trained
            from genlearn.learning.run_folder import data_unchanged

            dataset = as_trained(run.meta, dataset)
            if data_unchanged(run.meta, dataset) is False:
                print(f"genlearn: warning: the data {spec!r} of {run.dir} have changed since it was fitted (their "
                      "fingerprint differs): these figures are on the data as they are now", file=sys.stderr)
        if args.device is not None:  # the data on the model's device, moved once
            from genlearn.learning.devices import move_dataset

            dataset = move_dataset(dataset, next(run.model.parameters()).device)
        splits = ("train", "valid", "test") if args.split == "all" else (args.split,)
        if args.split != "all" and getattr(dataset, args.split) is None:
            why = (": a refit trains on its valid rows (genlearn refit)" if not args.data
                   and (run.meta.get("recipe") or {}).get("refit_of") else "")
            raise ConfigError(f"the data of this run have no {args.split} split{why}; choose another --split")
        options = _ais_options(args)
        partition = args.partition
        if partition is None and not options:  # the settings the fit was evaluated with (e.g. AIS steps)
            recorded = dict(run.metrics.get("evaluation") or {})
            partition = recorded.pop("partition", None)
            kept = ("seed", "train_iw_samples", "ais_start", *EVALUATION_FLAGS.values())
            options = {k: v for k, v in recorded.items() if k in kept}
        metrics = {"run": str(args.run), "model": run.meta["model"], "dataset": dataset.name, "data_spec": spec,
                   **evaluate(run.model, dataset, splits=splits, partition=partition or "auto",
                              progress=sys.stderr.isatty(), **options)}
        gap = (metrics.get("log_z_details") or {}).get("forward_reverse_gap")
        if gap is not None and abs(gap) > 1.0:
            print(f"genlearn: warning: forward and reverse AIS disagree by {gap:.2f} nats; "
                  "use more --ais-steps", file=sys.stderr)
    from genlearn.runs import _finite

    if not getattr(run, "finished", True):  # the metrics of the last checkpoint of an unfinished run
        metrics["run_status"] = run.status
    print(json.dumps(_finite(metrics), indent=2, default=str))
    return 0


def _warn_if_file_changed(run) -> None:
    """`genlearn eval RUN` printing the fit's own figures: one warning when the run's data file has changed since
    (its fingerprint differs): the figures are of the data as they were. Named data sets are not re-read."""
    from genlearn.data.registry import load_dataset
    from genlearn.data.sources import SOURCES, parse_spec
    from genlearn.learning.run_folder import data_unchanged

    spec = run.meta.get("data_spec")
    if not isinstance(spec, str) or parse_spec(spec)[0] in SOURCES or not run.meta.get("data_fingerprint"):
        return
    try:
        dataset = load_dataset(spec, run.meta.get("data_dir"))
    except GenlearnError as exc:
        print(f"genlearn: warning: the data {spec!r} of {run.dir} cannot be read now ({exc}); these are the figures "
              "of the fit", file=sys.stderr)
        return
    from genlearn.data.refit_rows import as_trained

    if data_unchanged(run.meta, as_trained(run.meta, dataset)) is False:
        print(f"genlearn: warning: the data {spec!r} of {run.dir} have changed since it was fitted (their "
              "fingerprint differs): these are the figures of the fit, on the data as they were; --split NAME "
              "scores the data as they are now", file=sys.stderr)


def _say_unfinished(run) -> None:
    """One warning line when the run is unfinished (being written, interrupted): its last checkpoint is used."""
    if not getattr(run, "finished", True):
        print(f"genlearn: warning: {run.dir} is {run.status}; using that checkpoint", file=sys.stderr)


def cmd_sample(args) -> int:
    import torch

    from genlearn.runs import load_run

    from genlearn.checks import check_sample_args, check_sample_model

    check_sample_args(args.n, args.out, args.seed, args.steps, args.overwrite)
    run = load_run(args.run, device=args.device)
    _say_unfinished(run)
    check_sample_model(args.n, run.model, args.steps)
    kwargs = {} if args.steps is None else {"steps": args.steps}
    device = next(run.model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        x = run.model.sample(args.n, generator=torch.Generator(device=device).manual_seed(args.seed), **kwargs)
    x = x.cpu()
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.overwrite:
        raise RunError(f"{out} exists; choose another --out or pass --overwrite")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)  # as `report --out`: the folders checked above
    image_shape = (run.metrics.get("data") or {}).get("image_shape")
    if out is not None and out.suffix.lower() == ".png":
        if not image_shape:
            raise ConfigError("a PNG grid needs image data; this run's data have no image shape: use --out FILE.csv")
        from genlearn.plots import sample_grid

        sample_grid(x, tuple(image_shape), out, f"{run.meta['model']}: {args.n} sample{'s' if args.n != 1 else ''}")
        print(f"wrote {out}", file=sys.stderr)
        return 0
    rows = x.reshape(args.n, -1)

    def write_rows(stream) -> None:
        """CSV in blocks of rows (the text of one block at a time in memory, whatever -n); 9 significant digits,
        which give a float32 back exactly (0/1 and outcomes print as integers)."""
        for block in rows.split(10_000):
            stream.write("".join(",".join(f"{v:.9g}" for v in row) + "\n" for row in block.tolist()))

    if out is None:
        write_rows(sys.stdout)
        return 0
    from genlearn.learning.checkpoint import atomic_write_bytes

    def write(tmp) -> None:
        with open(tmp, "w") as stream:
            write_rows(stream)

    atomic_write_bytes(out, write)  # a new file renamed over --out: a link there is replaced, not written through
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _distribution(text: str, flag: str):
    """`kl --p/--q TEXT`: a run folder's model, or the probabilities p1,p2,... of a table."""
    if not text.strip():
        raise ConfigError(f"{flag} is empty; give probabilities p1,p2,... or a run folder")
    if Path(text).is_dir():
        from genlearn.runs import load_run

        run = load_run(text)
        _say_unfinished(run)  # its last checkpoint, as eval and sample say
        return run.model
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{text!r} is neither a run folder nor comma-separated probabilities") from None


def cmd_kl(args) -> int:
    from genlearn.divergence import kl_divergence

    p, q = _distribution(args.p, "--p"), _distribution(args.q, "--q")
    if isinstance(p, list) != isinstance(q, list):
        raise ConfigError("compare two tables or two runs, not one of each")
    estimate = kl_divergence(p, q, method=args.method)
    from genlearn.checks import kl_result

    result = kl_result(estimate)  # valid JSON: an infinite KL is null with "kl_infinite": true
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_datasets(args) -> int:
    from genlearn.data.registry import list_sources

    for s in list_sources():
        settings = ", ".join(f"{k}={v[0]}" for k, v in s.settings.items())
        print(f"{s.name:18s} {s.summary}" + (f"  [{settings}]" if settings else ""))
    print(f"{'PATH':18s} a file or folder: IDX(.gz), .npz/.npy, .amat, 0/1 text (.csv/.data/.txt), PNG folder")
    return 0


def cmd_models(args) -> int:
    from genlearn.models.registry import list_models

    for s in list_models():
        opts = ", ".join("--" + k.replace("_", "-") for k in s.options)
        print(f"{s.name:18s} {s.summary} ({'/'.join(s.data_kinds)} data)" + (f"  [{opts}]" if opts else ""))
    return 0


def cmd_bench(args) -> int:
    from genlearn import bench

    if args.rows is not None and args.rows < 1:
        raise ConfigError(f"--rows must be >= 1 (got {args.rows})")
    if not args.gemm_seconds > 0.0:
        raise ConfigError(f"--gemm-seconds must be > 0 (got {args.gemm_seconds})")
    bench.check_settings(args.rows or args.batch_size, args.hidden, args.batch_size, args.lr, args.pairs,
                         args.settle, args.matmul_precision)
    out = Path(args.out) if args.out else None
    if args.pool:
        typed = [flag for flag in BENCH_TIMING_FLAGS if any(a == flag or a.startswith(flag + "=") for a in _ARGV)]
        if typed:
            raise ConfigError(f"{typed[0]} is a setting of the timing; --pool times nothing (it merges the pairs of "
                              "earlier --out files, timed with their own settings): drop it")
        if out is not None and any(Path(f).resolve() == out.resolve() for f in args.pool):
            raise ConfigError(f"--out {out} is one of the --pool files: the pooled summary would replace its pairs; "
                              "give another --out")
    if out is not None:
        if out.is_dir():
            raise RunError(f"--out {out} is a folder; give a file name (e.g. {out / 'bench.json'})")
        if out.exists() and not args.overwrite:
            raise RunError(f"{out} exists; choose another --out or pass --overwrite")
        out.parent.mkdir(parents=True, exist_ok=True)  # before the timing: an unwritable place fails at once
    if args.pool:
        res = bench.pool(bench.read_results(args.pool))
        lines = bench.pooled_lines(res)
    else:
        res = _bench_run(args, bench)
        lines = bench.summary_lines(res)
    for line in lines:
        print(line)
    if out is not None:
        from genlearn.learning.checkpoint import write_json

        write_json(out, res)
        print(f"wrote {out}")
    return 0


#: the flags of `genlearn bench` that set its timing (refused beside --pool, which times nothing)
BENCH_TIMING_FLAGS = ("--data", "--data-dir", "--rows", "--hidden", "--batch-size", "--lr", "--pairs",
                      "--matmul-precision", "--cli", "--settle", "--threads", "--gemm-seconds")


def _bench_run(args, bench) -> dict:
    """`genlearn bench`'s timing: the rows, then bench.side_by_side."""
    if args.data is None:
        x = bench.synthetic_rows(bench.DEFAULT_ROWS if args.rows is None else args.rows)
        what = f"random 0/1 rows of {bench.DEFAULT_VISIBLE} pixels at density {bench.DEFAULT_DENSITY}"
    else:
        from genlearn.data.registry import load_dataset

        x = load_dataset(args.data, args.data_dir).train[:args.rows].numpy()
        what = f"{args.data} (training rows)"
    import torch

    # without --threads: the count chosen for the load (genlearn.cpu_load) for both sides, scikit-learn's BLAS too
    threads = args.threads or torch.get_num_threads()
    res = bench.side_by_side(x, hidden=args.hidden, batch_size=args.batch_size, learning_rate=args.lr,
                             pairs=args.pairs, settle=args.settle, precision=args.matmul_precision, cli=args.cli,
                             threads=threads, gemm_seconds=args.gemm_seconds, data=what,
                             log=lambda line: print(line, flush=True))
    res["bench_arguments"] = {k: v for k, v in vars(args).items() if k != "command"}
    return res


def cmd_demo(args) -> int:
    from genlearn.demo import run_demo

    out = Path(args.out)
    above = next((a for a in (out, *out.parents) if a.exists()), None)
    if above is not None and not above.is_dir():
        raise RunError(f"--out {out}: {above} is a file, not a folder; give a folder for the demo's report")
    run_demo(out, fast=args.fast, verbose=not args.quiet)  # refuses a folder other than its own report's
    return 0


def cmd_report(args) -> int:
    """`genlearn report RUN [RUN...] --out FILE`: the page, and one warning line per unreadable folder."""
    from genlearn.report import write_report

    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise ConfigError(f"--data-dir {args.data_dir}: no such folder (it holds the data sets the plots need)")
    report = write_report(args.runs, args.out, data_dir=args.data_dir, title=args.title, overwrite=args.overwrite)
    for folder, message in report.errors:
        print(f"genlearn: warning: {folder} was not reported: {message}", file=sys.stderr)
    size = len(report.html.encode("utf-8"))
    print(f"wrote {report.path} ({len(report.runs)} run(s), {size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


def cmd_tune(args) -> int:
    from genlearn.tune import cmd_tune as run_tune

    try:
        return run_tune(args)
    except KeyboardInterrupt:
        print("genlearn: interrupted; run the same `genlearn tune` command again to continue the study",
              file=sys.stderr)
        return 130


def cmd_refit(args) -> int:
    from genlearn.refit import refit

    progress = not args.quiet and sys.stderr.isatty()
    run = refit(args.run, args.out, data_dir=args.data_dir, overwrite=args.overwrite, progress=progress,
                callbacks=_callbacks(args, progress), init_from=args.init_from)
    return _report_fit(run, args)


COMMANDS = {"fit": cmd_fit, "eval": cmd_eval, "sample": cmd_sample, "kl": cmd_kl, "datasets": cmd_datasets,
            "models": cmd_models, "demo": cmd_demo, "bench": cmd_bench, "recipes": cmd_recipes, "tune": cmd_tune,
            "report": cmd_report, "refit": cmd_refit}


def _set_threads(n: int | None) -> None:
    """--threads N: torch's intra-op threads (the numba kernels follow torch's count)."""
    if n is None:
        return
    if n < 1:
        raise ConfigError(f"--threads must be a positive integer, got {n}")
    cores = _usable_cores()
    if n > cores:
        print(f"genlearn: warning: --threads {n} is more than the {cores} CPU core(s) this process may use; threads "
              "beyond them take turns on the same cores and slow the work down", file=sys.stderr)
    import torch

    torch.set_num_threads(n)


def _usable_cores() -> int:
    from genlearn.cpu_load import usable_cores

    return usable_cores()


def _threads_for_the_load(args) -> None:
    """No --threads: a command that computes uses the cores other work leaves free right now (genlearn.cpu_load:
    one thread sharing its core with another program holds torch's others back, 3.6x slower in `genlearn demo`),
    and says so when that is fewer than all. Not under torchrun (each process is given its share)."""
    if args.command not in _TORCH_COMMANDS or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return
    from genlearn.cpu_load import busy_cores, threads_for_load

    cores = _usable_cores()
    if cores < 2:
        return
    busy = busy_cores()
    n = threads_for_load(cores, busy)
    if n < cores:
        if not getattr(args, "quiet", False):
            print(f"genlearn: note: about {busy:.1f} of {cores} CPU cores are busy with other work: using {n} "
                  f"thread{'s' if n > 1 else ''} (--threads N to choose)", file=sys.stderr)
        import torch

        torch.set_num_threads(n)


def _with_recipe_family(argv: list[str]) -> list[str]:
    """`genlearn fit --recipe NAME --hidden 50`: the recipe's family is inserted after `fit`, so that the
    family's own flags parse (an unknown recipe is reported by cmd_fit)."""
    if len(argv) < 2 or argv[0] != "fit" or not argv[1].startswith("-"):
        return argv
    name = None
    for i, a in enumerate(argv):
        if a == "--recipe" and i + 1 < len(argv):
            name = argv[i + 1]
        elif a.startswith("--recipe="):
            name = a.split("=", 1)[1]
    if name is None:
        return argv
    from genlearn.recipes import load_recipe

    try:
        family = load_recipe(name).model
    except GenlearnError:
        return argv
    return ["fit", family, *argv[1:]]


def _check_family(argv: list[str]) -> None:
    """`genlearn fit NAME`: an unknown family is a ConfigError listing the known ones (not an argparse dump)."""
    if len(argv) > 1 and argv[0] == "fit" and not argv[1].startswith("-"):
        from genlearn.models.registry import get_spec

        get_spec(argv[1])


def main(argv: list[str] | None = None) -> int:
    """The `genlearn` command. A Ctrl-C at any moment is one line and exit code 130, no traceback; a fit first
    writes the checkpoint of the minibatch it stopped after (genlearn.learning.interrupt)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():  # replaces the start-up guard of genlearn/__init__
        if _start_up_guard_active(signal):
            _import_under_guard(sys.argv[1:] if argv is None else argv)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if argv is None:  # the command itself (`genlearn`, `python -m genlearn`), not a call from Python
        _show_warnings_as_lines()
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except RuntimeError as exc:  # a Ctrl-C while Python builds a class (an import): "Error calling __set_name__"
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return _interrupted(exc.__cause__)
        raise


def _show_warnings_as_lines() -> None:
    """Python warnings as one line each, as the command's own: `genlearn: warning: MESSAGE` (genlearn's, e.g. a low
    AIS effective sample size) or `genlearn: warning: CATEGORY from FILE:LINE: MESSAGE` (a library's), instead of
    Python's source path, line and the source text of the `warnings.warn` call."""
    import warnings
    from pathlib import Path

    package = str(Path(__file__).resolve().parent)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        where = "" if str(Path(filename).resolve()).startswith(package) else \
            f"{category.__name__} from {Path(filename).name}:{lineno}: "
        try:
            (file or sys.stderr).write(f"genlearn: warning: {where}{message}\n")
        except (OSError, ValueError):  # a closed stderr: nothing to tell
            pass

    warnings.showwarning = show


#: the commands that compute (and import torch); the others (`--help`, `models`, `recipes`...) stay light
_TORCH_COMMANDS = ("fit", "eval", "sample", "kl", "demo", "tune", "report", "refit", "bench")


def _start_up_guard_active(signal) -> bool:
    from genlearn import _interrupted_at_start

    return signal.getsignal(signal.SIGINT) is _interrupted_at_start


def _import_under_guard(argv: list[str]) -> None:
    """Import numpy (and torch and the model families, for a command that computes) while a Ctrl-C still ends
    the process at once.

    torch swallows an exception raised while it imports numpy (its "Failed to initialize NumPy" path), so a
    KeyboardInterrupt at that moment would leave a half-imported numpy and a RecursionError much later."""
    import numpy  # noqa: F401

    if argv and argv[0] in _TORCH_COMMANDS and not any(a in ("-h", "--help") for a in argv):
        import torch  # noqa: F401

        # the model families too (the parser lists them): a KeyboardInterrupt while Python builds a dataclass
        # comes out as a RuntimeError ("Error calling __set_name__"), a traceback instead of exit 130
        from genlearn.models.registry import list_models

        list_models()


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Ctrl-C: one line, exit 130. A fit interrupted in its training loop says where it stopped and how to resume
    (its KeyboardInterrupt's text, genlearn.learning.interrupt); any other moment or command says only that."""
    print("genlearn: interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
    return 130


#: the arguments that name a file or folder: an empty value would silently mean the current folder or a default
_PATH_ARGS = {"out": "--out", "data_dir": "--data-dir", "resume": "--resume", "init_from": "--init-from",
              "recipe": "--recipe", "tensorboard": "--tensorboard", "run": "RUN", "runs": "RUN", "pool": "--pool"}


def _check_no_empty_paths(args) -> None:
    """A path argument given as an empty (or blank) string is one ConfigError naming it; so is a --data-dir that
    is a file, and one that does not exist is a warning (where the data set needs none it was ignored silently,
    typo and all; scripts pass a default that may be absent)."""
    for key, flag in _PATH_ARGS.items():
        value = getattr(args, key, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and not v.strip():
                raise ConfigError(f"{flag} is empty; give a path")
    data_dir = getattr(args, "data_dir", None)
    if isinstance(data_dir, str) and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ConfigError(f"--data-dir {data_dir} is a file; give the folder that holds the named data sets' files "
                          "(e.g. ../shared/data), or drop it")
    if isinstance(data_dir, str) and not Path(data_dir).exists() and getattr(args, "command", None) != "report":
        # (report refuses it itself; elsewhere a data set that needs it fails on its own)
        print(f"genlearn: warning: --data-dir {data_dir} does not exist; a named data set read from files (mnist, "
              "binarized-mnist, ...) will not be found there", file=sys.stderr)


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")  # `genlearn --help`: no torch import
    argv = _with_recipe_family(argv)
    try:
        _check_family(argv)
    except GenlearnError as exc:
        print(f"genlearn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _ARGV[:] = argv
    args = parser.parse_args(argv)
    try:
        _check_no_empty_paths(args)
        if getattr(args, "threads", None) is None:
            _threads_for_the_load(args)
        _set_threads(getattr(args, "threads", None))
        return COMMANDS[args.command](args)
    except GenlearnError as exc:
        print(f"genlearn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `genlearn eval RUN | head -1`: the reader has what it wanted
        _silence_stdout()
        return 0
    except (OSError, MemoryError) as exc:
        print(f"genlearn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        return _interrupted(exc)


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush of a closed pipe raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (e.g. captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
