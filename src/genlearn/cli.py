"""The `genlearn` command: fit, eval, sample, kl, datasets, models, demo.

Every error a user can cause (GenlearnError, unreadable files) is printed as one line `genlearn: error: ...`
and exits with code 2, without a traceback."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genlearn.errors import ConfigError, GenlearnError, RunError

EXIT_USAGE = 2


def _train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("learning (theta <- theta - lr * dD_KL/dtheta)")
    g.add_argument("--epochs", type=int, help="passes over the training set (default 100, or the model's)")
    g.add_argument("--lr", type=float, help="learning rate eps (default 0.1, or the model's)")
    g.add_argument("--optimizer", choices=("gd", "sgd", "momentum", "adam"),
                   help="gd = full-batch gradient descent (default); sgd/momentum/adam use --batch-size")
    g.add_argument("--batch-size", type=int, help="minibatch size (default: the whole training set)")
    g.add_argument("--momentum", type=float, help="momentum coefficient for --optimizer momentum (0.9)")
    g.add_argument("--weight-decay", type=float, help="L2 penalty added to the gradient (0)")
    g.add_argument("--schedule", choices=("constant", "cosine", "exponential", "step", "geometric"),
                   help="learning-rate schedule (geometric: from --lr to --lr x --final-lr-fraction in equal log "
                        "steps, over --max-minutes of training time when given, else over the epochs)")
    g.add_argument("--gamma", type=float, help="decay factor of the exponential/step schedule (0.99)")
    g.add_argument("--final-lr-fraction", type=float, help="geometric schedule: the last rate over --lr (0.01)")
    g.add_argument("--patience", type=int, help="early stopping: epochs without valid-NLL improvement (off)")
    g.add_argument("--max-minutes", type=float, help="stop after this much training time (minutes; no limit)")
    g.add_argument("--eval-every", type=int, help="monitor the NLL/KL every N epochs (1)")
    g.add_argument("--monitor-ais-steps", type=int, metavar="STEPS",
                   help="RBMs too large for an exact log Z: monitor the train/valid NLL by forward AIS with this many "
                        "temperatures at every evaluation (off)")
    g.add_argument("--monitor-ensemble", action="store_true", default=None,
                   help="MADE masks / NADE orderings: evaluate the whole ensemble at every evaluation (default: "
                        "one member alone, recorded as *_nll_member; the final metrics always use the ensemble)")
    g.add_argument("--seed", type=int, help="random seed (0); the same seed gives the same run")


def _model_args(p: argparse.ArgumentParser) -> None:
    """One flag per option name across all families. When families give the same name different types, the
    flag takes a string and `build_model` converts it with the chosen family's type."""
    from genlearn.models.registry import list_models

    seen: dict = {}
    for spec in list_models():
        for name, opt in spec.options.items():
            seen.setdefault(name, []).append((spec.name, opt))
    g = p.add_argument_group("model options (each applies to the models named in brackets)")
    for name, uses in sorted(seen.items()):
        flag = "--" + name.replace("_", "-")
        types = {opt.type for _, opt in uses}
        helps = {opt.help for _, opt in uses}
        if len(helps) == 1:
            text = f"{uses[0][1].help} [{', '.join(m for m, _ in uses)}]"
        else:
            text = " | ".join(f"{m}: {opt.help} (default {opt.default})" for m, opt in uses)
        if types == {bool}:  # a flag; one that defaults to on also gets --no-NAME
            on_by_default = any(opt.default for _, opt in uses)
            action = argparse.BooleanOptionalAction if on_by_default else "store_true"
            g.add_argument(flag, dest=f"model_{name}", action=action, default=None, help=text)
        else:
            kind = types.pop() if len(types) == 1 else str
            if len(helps) == 1:
                text = f"{uses[0][1].help} (default {uses[0][1].default}) [{', '.join(m for m, _ in uses)}]"
            g.add_argument(flag, dest=f"model_{name}", type=kind, default=None, metavar=name.upper(), help=text)


def _data_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data", required=required, metavar="DATASET",
                   help="NAME[:key=value,...] (see `genlearn datasets`) or a path to a file or folder")
    p.add_argument("--data-dir", metavar="DIR", help="where named real data sets live (or env GENLEARN_DATA)")


def _partition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partition", choices=("auto", "exact", "ais"),
                   help="log Z of energy models: exact enumeration, AIS with reverse-AIS bounds, or auto")
    p.add_argument("--ais-steps", type=int, help="AIS inverse temperatures (default: the published 14,500)")
    p.add_argument("--ais-chains", type=int, help="AIS chains (default 100)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genlearn",
        description="Learn generative models P(X|theta) by minimising D_KL(Q^||P_theta) = NLL - H(Q^).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=int, metavar="N",
                         help="CPU threads for torch and the compiled kernels (default: torch's, one per core)")

    p = sub.add_parser("fit", parents=[threads],
                       help="fit a model to a data set; writes checkpoint, metrics.json and plots to --out")
    p.add_argument("model", nargs="?", help="model name (see `genlearn models`); not needed with --resume or --recipe")
    p.add_argument("--recipe", metavar="NAME",
                   help="a named configuration that reproduces a published figure (see `genlearn recipes`); "
                        "flags given beside it override its settings and are recorded in the run")
    _data_args(p, required=False)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL-DATASET)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _partition_args(p)
    _train_args(p)
    _model_args(p)

    p = sub.add_parser("eval", parents=[threads],
                       help="print the metrics of a fitted run as JSON (optionally on other data)")
    p.add_argument("run", metavar="DIR")
    _data_args(p, required=False)
    p.add_argument("--split", choices=("train", "valid", "test", "all"), default="all")
    p.add_argument("--seed", type=int, default=0, help="seed of stochastic estimators (AIS)")
    _partition_args(p)

    p = sub.add_parser("sample", parents=[threads],
                       help="draw samples from a fitted run: a PNG grid for images, else CSV")
    p.add_argument("run", metavar="DIR")
    p.add_argument("-n", type=int, default=64, help="number of samples (64)")
    p.add_argument("--out", metavar="FILE", help=".png (image grid) or .csv; default: CSV on standard output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="Gibbs sweeps for models sampled by MCMC")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    p = sub.add_parser("kl", parents=[threads],
                       help="D_KL(P||Q) between two tables (--p 0.5,0.5 --q 0.9,0.1) or two fitted runs")
    p.add_argument("--p", required=True, help="probabilities p1,p2,... or a run folder")
    p.add_argument("--q", required=True, help="probabilities q1,q2,... or a run folder")
    p.add_argument("--method", default="auto", choices=("auto", "closed-form", "enumerate", "mc"))

    sub.add_parser("recipes", help="list the recipes: named configurations, the figure each produced and its cost")
    sub.add_parser("datasets", help="list the named data sets")
    sub.add_parser("models", help="list the model families")

    p = sub.add_parser("demo", parents=[threads],
                       help="the framework's story on the embedded data, with a report folder")
    p.add_argument("--out", default="reports/demo", metavar="DIR")
    p.add_argument("--fast", action="store_true", help="a smaller, quicker version (for tests)")
    p.add_argument("--quiet", action="store_true")
    return parser


def _ais_options(args) -> dict:
    """--ais-steps / --ais-chains / --seed as keyword arguments of model.log_partition."""
    options = {k: v for k, v in (("steps", args.ais_steps), ("chains", args.ais_chains)) if v is not None}
    if args.partition == "ais" or options:
        options["seed"] = args.seed if args.seed is not None else 0
    return options


def cmd_fit(args) -> int:
    from genlearn.runs import fit

    model_options = {k[6:]: v for k, v in vars(args).items() if k.startswith("model_") and v is not None}
    train = {k: getattr(args, k) for k in ("epochs", "lr", "optimizer", "batch_size", "momentum", "weight_decay",
                                           "schedule", "gamma", "final_lr_fraction", "patience", "max_minutes",
                                           "eval_every",
                                           "monitor_ais_steps", "monitor_ensemble", "seed")}
    train["progress"] = not args.quiet and sys.stderr.isatty()
    if args.recipe:
        return _fit_recipe(args, train, model_options)
    if args.resume:
        if args.model or model_options:
            raise ConfigError("--resume continues a run with its own model and options; do not repeat them")
        if args.out and Path(args.out) != Path(args.resume):
            raise ConfigError("--resume DIR continues the run in DIR; do not give a different --out")
        run = fit(None, args.data, out=args.resume, resume=True, data_dir=args.data_dir,
                  partition=args.partition or "auto", partition_options=_ais_options(args), **train)
    else:
        if not args.model:
            raise ConfigError("say which model to fit, e.g. `genlearn fit product-bernoulli --data digits`")
        if not args.data:
            raise ConfigError("say which data to fit with --data (e.g. --data digits); see `genlearn datasets`")
        out = args.out or f"runs/{args.model}-{args.data.split(':')[0].replace('/', '_')}"
        run = fit(args.model, args.data, out=out, overwrite=args.overwrite, data_dir=args.data_dir,
                  partition=args.partition or "auto", partition_options=_ais_options(args), **train, **model_options)
    return _report_fit(run)


def _report_fit(run) -> int:
    keys = ("model", "recipe", "dataset", "train_nll", "valid_nll", "test_nll", "test_nll_method",
            "test_nll_lower", "test_nll_upper", "entropy_empirical", "kl_empirical", "kl_true", "wall_seconds")
    print(json.dumps({k: run.metrics.get(k) for k in keys if k in run.metrics}, indent=2))
    print(f"run written to {run.dir}", file=sys.stderr)
    return 0


def _fit_recipe(args, train: dict, model_options: dict) -> int:
    """`genlearn fit --recipe NAME [overrides]`: the recipe's settings with every flag given on top; the run
    records the recipe's name and the overrides."""
    from genlearn.recipes import load_recipe
    from genlearn.runs import fit

    if args.resume:
        raise ConfigError("--resume DIR continues a run with its own settings (a recipe's included); drop --recipe")
    recipe = load_recipe(args.recipe)
    if args.model and args.model != recipe.model:
        raise ConfigError(f"recipe {recipe.name!r} fits model {recipe.model!r}, not {args.model!r}; drop the model name")
    if args.threads is None and recipe.threads is not None:
        _set_threads(recipe.threads)
    progress = train.pop("progress")
    overrides = {**{k: v for k, v in train.items() if v is not None}, **model_options}
    if args.data:
        overrides["data"] = args.data
    evaluation = dict(recipe.evaluation)
    partition = args.partition or evaluation.pop("partition", "auto")
    partition_options = {**evaluation, **_ais_options(args)}
    if args.partition or args.ais_steps or args.ais_chains:
        overrides["evaluation"] = {"partition": partition, **_ais_options(args)}
    out = args.out or f"runs/{recipe.name}"
    run = fit(recipe.model, args.data or recipe.data, out=out, overwrite=args.overwrite, data_dir=args.data_dir,
              partition=partition, partition_options=partition_options, progress=progress,
              recipe={"name": recipe.name, "overrides": overrides},
              **recipe.fit_kwargs({**train, **model_options}))
    return _report_fit(run)


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

    run = load_run(args.run)
    if args.data is None and args.partition in (None, "auto") and args.split == "all" and run.metrics:
        metrics = dict(run.metrics)
        metrics.pop("history", None)
    else:
        spec = args.data or run.meta.get("data_spec")
        if spec is None:
            raise ConfigError("this run was fitted on an in-memory data set; give --data to evaluate it")
        dataset = load_dataset(spec, args.data_dir if args.data_dir else run.meta.get("data_dir"))
        splits = ("train", "valid", "test") if args.split == "all" else (args.split,)
        options = _ais_options(args)
        metrics = {"run": str(args.run), "model": run.meta["model"], "dataset": dataset.name, "data_spec": spec,
                   **evaluate(run.model, dataset, splits=splits, partition=args.partition or "auto",
                              progress=sys.stderr.isatty(), **options)}
        gap = (metrics.get("log_z_details") or {}).get("forward_reverse_gap")
        if gap is not None and abs(gap) > 1.0:
            print(f"genlearn: warning: forward and reverse AIS disagree by {gap:.2f} nats; "
                  "use more --ais-steps", file=sys.stderr)
    from genlearn.runs import _finite

    print(json.dumps(_finite(metrics), indent=2, default=str))
    return 0


def cmd_sample(args) -> int:
    import torch

    from genlearn.runs import load_run

    if args.n < 1:
        raise ConfigError(f"-n must be a positive number of samples, got {args.n}")
    run = load_run(args.run)
    kwargs = {} if args.steps is None else {"steps": args.steps}
    with torch.no_grad():
        x = run.model.sample(args.n, generator=torch.Generator().manual_seed(args.seed), **kwargs)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.overwrite:
        raise RunError(f"{out} exists; choose another --out or pass --overwrite")
    image_shape = (run.metrics.get("data") or {}).get("image_shape")
    if out is not None and out.suffix.lower() == ".png":
        if not image_shape:
            raise ConfigError("a PNG grid needs image data; this run's data have no image shape: use --out FILE.csv")
        from genlearn.plots import sample_grid

        sample_grid(x, tuple(image_shape), out, f"{run.meta['model']}: {args.n} samples")
        print(f"wrote {out}", file=sys.stderr)
        return 0
    rows = x.reshape(args.n, -1).tolist()
    text = "\n".join(",".join(f"{v:g}" for v in row) for row in rows) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _distribution(text: str):
    if Path(text).is_dir():
        from genlearn.runs import load_run

        return load_run(text).model
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{text!r} is neither a run folder nor comma-separated probabilities") from None


def cmd_kl(args) -> int:
    from genlearn.divergence import kl_divergence
    from genlearn.estimators import Estimate

    p, q = _distribution(args.p), _distribution(args.q)
    if isinstance(p, list) != isinstance(q, list):
        raise ConfigError("compare two tables or two runs, not one of each")
    value = kl_divergence(p, q, method=args.method)
    result = value.to_dict() if isinstance(value, Estimate) else {"kl": value, "method": "exact"}
    result["units"] = "nats"
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


def cmd_demo(args) -> int:
    from genlearn.demo import run_demo

    run_demo(Path(args.out), fast=args.fast, verbose=not args.quiet)
    return 0


COMMANDS = {"fit": cmd_fit, "eval": cmd_eval, "sample": cmd_sample, "kl": cmd_kl, "datasets": cmd_datasets,
            "models": cmd_models, "demo": cmd_demo, "recipes": cmd_recipes}


def _set_threads(n: int | None) -> None:
    """--threads N: torch's intra-op threads (the numba kernels follow torch's count)."""
    if n is None:
        return
    if n < 1:
        raise ConfigError(f"--threads must be a positive integer, got {n}")
    import torch

    torch.set_num_threads(n)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _set_threads(getattr(args, "threads", None))
        return COMMANDS[args.command](args)
    except GenlearnError as exc:
        print(f"genlearn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, MemoryError) as exc:
        print(f"genlearn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("genlearn: interrupted; a fit can be continued with `genlearn fit --resume DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
