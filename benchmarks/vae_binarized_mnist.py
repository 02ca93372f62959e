"""Latent-variable models on static binarized MNIST through their recipes: test NLL by importance sampling
(5,000 samples per row, q(z|x) as proposal, the whole test set) with its Monte Carlo standard error and the ELBO,
and for the chosen recipes AIS over z with HMC on the first test rows and BDMC on rows simulated from the model.

Every figure comes from the product: each recipe is fitted with `genlearn fit --recipe NAME --data-dir DIR --out
RUNS/NAME` (or an existing run folder of that recipe is reused with --reuse), and AIS/BDMC is the evaluation that
`genlearn eval RUNS/NAME --partition ais --ais-rows N --ais-steps T --ais-chains C --bdmc-rows R` runs.

    python benchmarks/vae_binarized_mnist.py --runs-dir runs --reuse --ais-recipes hvae-vampprior
    python benchmarks/vae_binarized_mnist.py --runs-dir runs --reuse --recipes iwae-50-from-vae --refit iwae-50-from-vae

--refit NAME also reports `genlearn refit RUNS/NAME --out RUNS/NAME-refit` (the run trained again on train + valid
for its best epoch count, its plateau rates replayed) under the key NAME-refit.
    python benchmarks/vae_binarized_mnist.py --smoke"""
from __future__ import annotations

import json
import time
from pathlib import Path

import common

#: the research anchors (static binarized MNIST, test NLL in nats) and the issue's targets, per recipe
ANCHORS = {
    "vae": {"target": 88.7, "published": 88.71, "source": "IWAE paper appendix (VAE, 1 stochastic layer, 50 latents)"},
    "iwae-50": {"target": 86.8, "published": 87.10, "source": "IWAE paper; 86.82 pythae's reproduction"},
    "hvae-vampprior": {"target": 84.0, "published": 83.19, "source": "Tomczak & Welling 2018 (HVAE + VampPrior)"},
}
#: recipes reported only on request (--recipes NAME --reuse): they continue another recipe's run (--init-from)
CONTINUED = {"iwae-50-from-vae": {"target": 86.8, "published": 87.10,
                                  "source": "IWAE paper (k = 50, from scratch); 86.82 pythae's reproduction",
                                  "continues": "vae"}}
KEYS = ("test_nll", "test_nll_method", "test_nll_stderr", "test_iw_samples", "test_elbo", "valid_nll", "valid_elbo",
        "train_nll", "train_elbo", "kl_empirical_upper", "kl_empirical_upper_is", "entropy_empirical",
        "wall_seconds", "train_seconds", "epochs_run", "best_epoch", "out_of_time", "stopped_early", "n_parameters")


def fit_recipe(name: str, run_dir: Path, data_dir: Path, overrides: list[str]) -> None:
    """`genlearn fit --recipe NAME --data-dir DIR --out RUN [overrides]`, as a user runs it."""
    from genlearn.cli import main

    argv = ["fit", "--recipe", name, "--data-dir", str(data_dir), "--out", str(run_dir), "--quiet", *overrides]
    print("genlearn " + " ".join(argv), flush=True)
    if main(argv) != 0:
        raise SystemExit(f"genlearn fit --recipe {name} failed")


def ais_bdmc(run_dir: Path, data, data_dir, opts: dict) -> dict:
    """Forward AIS over z on the first test rows, the IS NLL of the same rows and BDMC on simulated rows
    (genlearn.evaluation.ais_metrics, what `genlearn eval RUN --partition ais ...` adds), with its wall time."""
    from genlearn.data.registry import load_dataset
    from genlearn.evaluation import ais_metrics
    from genlearn.runs import load_run

    run = load_run(run_dir)
    dataset = load_dataset(data or run.meta["data_spec"], data_dir)
    t0 = time.perf_counter()
    out = ais_metrics(run.model, dataset.test, seed=0, **opts)
    out["ais_seconds"] = time.perf_counter() - t0
    out["ais_minus_is_same_rows"] = out["ais_test_nll"] - out["ais_is_nll"]
    return out


def main() -> None:
    p = common.parser(__file__, __doc__, threads=1)
    p.add_argument("--recipes", nargs="+", default=list(ANCHORS), help="recipes to report")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="run folders, one per recipe (RUNS/NAME)")
    p.add_argument("--reuse", action="store_true", help="report the finished run folder of a recipe when there is "
                   "one instead of fitting it again")
    p.add_argument("--ais-recipes", nargs="*", default=["hvae-vampprior"], help="recipes also scored by AIS + BDMC")
    p.add_argument("--ais-rows", type=int, default=1000)
    p.add_argument("--ais-steps", type=int, default=500)
    p.add_argument("--ais-chains", type=int, default=4)
    p.add_argument("--ais-leapfrog", type=int, default=10)
    p.add_argument("--bdmc-rows", type=int, default=100)
    p.add_argument("--ais-start", choices=("prior", "encoder"), default="prior",
                   help="where AIS over z and BDMC start: the prior or the encoder's q(z|x)")
    p.add_argument("--ais-json", nargs="*", default=[], metavar="NAME=FILE",
                   help="take a recipe's AIS/BDMC figures from a JSON file of genlearn.evaluation.ais_metrics "
                        "on the same run folder instead of computing them here")
    p.add_argument("--refit", nargs="*", default=[], metavar="NAME",
                   help="also report `genlearn refit RUNS/NAME --out RUNS/NAME-refit` (train + valid) as NAME-refit")
    args = p.parse_args()
    ais_files = dict(item.split("=", 1) for item in args.ais_json)
    common.set_threads(args.threads)
    overrides, data = [], None
    if args.smoke:  # the recipes on the embedded digits, for seconds
        data = "digits"
        overrides = ["--data", data, "--epochs", "1", "--max-minutes", "1", "--monitor-is-samples", "5",
                     "--eval-iw-samples", "20", "--hidden", "16"]
        args.ais_rows, args.ais_steps, args.ais_chains, args.bdmc_rows = 5, 5, 2, 3
        args.runs_dir = args.out.parent / (args.out.stem + "-runs")
        args.reuse = False
        args.refit = args.refit or ["vae"]  # and the refit of one of them
    settings = {**common.machine_record(), "recipes": args.recipes, "runs_dir": str(args.runs_dir),
                "smoke": args.smoke, "ais": {"rows": args.ais_rows, "steps": args.ais_steps,
                                             "chains": args.ais_chains, "leapfrog": args.ais_leapfrog,
                                             "bdmc_rows": args.bdmc_rows, "start": args.ais_start}}
    # each entry carries the machine and settings it was reported with; the top-level record is replaced only
    # when every recipe is reported again, so entries kept from an earlier run keep theirs
    results = {"settings": settings} if set(args.recipes) >= set(ANCHORS) else {}
    for name in args.recipes:
        run_dir = args.runs_dir / name
        if not (args.reuse and (run_dir / "metrics.json").exists()):
            if name in CONTINUED:
                raise SystemExit(f"{name} continues a run of recipe {CONTINUED[name]['continues']!r}: fit it with "
                                 f"genlearn fit --recipe {name} --init-from RUN --out {run_dir}, then --reuse")
            fit_recipe(name, run_dir, args.data_dir, overrides + (["--overwrite"] if run_dir.exists() else []))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        entry = {k: metrics.get(k) for k in KEYS}
        entry["elbo"] = metrics.get("test_elbo")
        entry.update({"recipe": metrics.get("recipe"), "model_config": metrics.get("model_config"),
                      "rule": metrics.get("rule"), "run_dir": str(run_dir), "settings": settings,
                      **ANCHORS.get(name, CONTINUED.get(name, {}))})
        if name in ais_files:
            entry.update({**json.loads(Path(ais_files[name]).read_text()), "ais_source": ais_files[name]})
        elif name in args.ais_recipes:
            entry.update(ais_bdmc(run_dir, data, args.data_dir,
                                  {"ais_rows": args.ais_rows, "ais_steps": args.ais_steps,
                                   "ais_chains": args.ais_chains, "ais_leapfrog": args.ais_leapfrog,
                                   "bdmc_rows": args.bdmc_rows, "ais_start": args.ais_start}))
        results[name] = entry
        print(json.dumps(common._json_safe({name: {k: entry.get(k) for k in ("test_nll", "test_nll_stderr", "elbo",
                                                                            "ais_test_nll", "bdmc_gap", "target")}})),
              flush=True)
        common.write_results(args.out, results, merge_depth=1)
    for name in args.refit:
        results[f"{name}-refit"] = refit_entry(name, args, settings)
        common.write_results(args.out, results, merge_depth=1)
    print(f"wrote {args.out}")


def refit_entry(name: str, args, settings: dict) -> dict:
    """`genlearn refit RUNS/NAME --out RUNS/NAME-refit` as a user runs it (or its finished folder with --reuse), and
    its figures: the test split only (the valid rows are training rows of the refit)."""
    from genlearn.cli import main as genlearn

    source, run_dir = args.runs_dir / name, args.runs_dir / f"{name}-refit"
    if not (args.reuse and (run_dir / "metrics.json").exists()):
        argv = ["refit", str(source), "--out", str(run_dir), "--data-dir", str(args.data_dir), "--quiet",
                *(["--overwrite"] if run_dir.exists() else [])]
        print("genlearn " + " ".join(argv), flush=True)
        if genlearn(argv) != 0:
            raise SystemExit(f"genlearn refit {source} failed")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    entry = {k: metrics.get(k) for k in KEYS if k not in ("valid_nll", "valid_elbo")}
    entry.update({"elbo": metrics.get("test_elbo"), "recipe": metrics.get("recipe"), "run_dir": str(run_dir),
                  "train_config": metrics.get("train_config"), "rows": "train + valid (genlearn refit)",
                  "settings": settings, **ANCHORS.get(name, CONTINUED.get(name, {}))})
    print(json.dumps(common._json_safe({f"{name}-refit": {k: entry.get(k) for k in ("test_nll", "test_nll_stderr",
                                                                                   "elbo", "target")}})), flush=True)
    return entry


if __name__ == "__main__":
    main()
