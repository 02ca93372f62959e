"""GANs on static binarized MNIST through their recipes: the honest likelihood (AIS over z with a BDMC bracket)
and the mode coverage (which digits the samples are, by a classifier trained here on MNIST's labels).

Every model comes from the product: each recipe is fitted with `genlearn fit --recipe NAME --data-dir DIR --out
RUNS/NAME` (or an existing run folder is reused with --reuse), and its figures are those of its metrics.json plus
the mode coverage measured here on the loaded run:

- Likelihood. A GAN's generator defines P(x) = integral N(z; 0, I) prod_i Bern(x_i | sigmoid(l_i(z))) dz, with
  no encoder to importance-sample with. The recipe's own final evaluation (partition "ais", its [evaluation]
  settings) runs forward AIS over z (HMC) on the first ais_rows test rows: `test_nll`, method "ais", a stochastic
  UPPER bound of the NLL (E log P^(x) <= log P(x)), with its Monte Carlo `test_nll_stderr`; BDMC runs forward and
  reverse AIS on bdmc_rows rows simulated from the model, where the exact mean log P lies (stochastically) between
  the two: `bdmc_gap` = reverse - forward bounds the AIS error at these settings, `test_nll_upper` = the AIS NLL
  and `test_nll_lower` = AIS NLL - gap (assuming the error on test rows is no larger than on the model's own
  samples). The same AIS on the first ais_rows training rows minus the empirical entropy H(Q^) = log N gives
  `kl_empirical`, an estimate of D_KL(Q^||P) with the same bracket. With --recompute-ais the same computation
  (genlearn.evaluation.evaluate_latent, partition "ais") is run again here with the --ais-* settings, its figures
  reported with the prefix ais_ and bdmc_*; --ais-json takes such figures from a file computed elsewhere (e.g.
  genlearn.evaluation.ais_metrics on the same run folder). Either way the new AIS NLL becomes the entry's
  `test_nll` with its bracket, and the run's own first evaluation is kept under `run_evaluation`.
- Mode coverage. An MLP digit classifier is trained here on the MNIST training images with their labels, the
  pixels redrawn x ~ Bernoulli(grey/255) every epoch (dynamic binarization, the same kind of stochastic binary
  images as static binarized MNIST and as the GAN samples); it must reach >= 97% on the statically binarized
  MNIST test images (outside --smoke), and is cached under RUNS/digit-classifier/ keyed by its settings. For N
  samples x_1..x_N ~ P (--samples, default 10,000, seed 0) and the classifier's softmax p(c|x):
      class_histogram[c]    = (1/N) #{n : argmax_k p(k|x_n) = c}, c = 0..9 (a perfect model: about 0.1 each);
      confident_fraction    = (1/N) #{n : max_k p(k|x_n) >= 0.9} (how many samples read clearly as one digit);
      classes_within_5_15   = #{c : class_histogram[c] in [0.05, 0.15]} (10: every digit present in a sane share;
                              a mode-dropping GAN has fewer);
      class_tv_to_reference = (1/2) sum_c |class_histogram[c] - reference[c]|, the total variation to the same
                              histogram of the real test images (`reference`, with their own confident_fraction).
  A 10 x 10 grid of the first 100 samples is written next to the results JSON as
  <results stem>_<recipe>_samples.png (genlearn.plots.sample_grid).

    python benchmarks/gan_binarized_mnist.py --data-dir ../shared/data --runs-dir runs --reuse
    python benchmarks/gan_binarized_mnist.py --recipes gan-kl --reuse --recompute-ais --ais-steps 1000
    python benchmarks/gan_binarized_mnist.py --smoke"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

import common
from vae_binarized_mnist import fit_recipe

RECIPES = ["gan-kl", "gan-js"]
#: the figures of a recipe's metrics.json that are reported as they are
KEYS = ("test_nll", "test_nll_method", "test_nll_stderr", "test_nll_rows", "test_nll_lower", "test_nll_upper",
        "bdmc_gap", "bdmc_forward", "bdmc_reverse", "bdmc_rows", "evaluation",
        "train_nll", "train_nll_rows", "entropy_empirical", "kl_empirical", "kl_empirical_lower", "kl_empirical_upper",
        "wall_seconds", "train_seconds", "epochs_run", "best_epoch", "out_of_time", "stopped_early", "n_parameters",
        "divergence", "estimator")
#: a sample is "confident" when the classifier's largest class probability is at least this
CONFIDENT = 0.9
#: a class is "covered" when its share of the samples lies in this band (uniform: 0.1)
BAND = (0.05, 0.15)
MIN_ACCURACY = 0.97
CLASSIFIER = {"data": "mnist:binarize=dynamic", "hidden": [512, 512], "dropout": 0.2, "epochs": 10, "lr": 1e-3,
              "batch_size": 100, "seed": 0}
SMOKE_CLASSIFIER = {**CLASSIFIER, "data": "digits:binarize=dynamic", "hidden": [32], "epochs": 1}


# -- the digit classifier ------------------------------------------------------------------------------------------
def classifier_net(n_features: int, hidden: list[int], dropout: float, classes: int = 10) -> torch.nn.Sequential:
    """An MLP n_features -> hidden... -> classes logits, ReLU and dropout after every hidden layer."""
    layers, width = [], n_features
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = h
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, classes))


@torch.no_grad()
def class_probabilities(net, x: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    """softmax p(c|x) of every row, (N, classes)."""
    net.eval()
    return torch.cat([torch.softmax(net(x[i:i + batch].float()), -1) for i in range(0, x.shape[0], batch)])


def accuracy(net, x, y) -> float:
    return float((class_probabilities(net, x).argmax(1) == y).float().mean())


def train_classifier(dataset, settings: dict) -> tuple[torch.nn.Sequential, dict]:
    """Adam on the cross-entropy, the training images redrawn from their grey levels every epoch (dynamic
    binarization); returns the net and its record (accuracies on the static valid / test draws, seconds)."""
    torch.manual_seed(settings["seed"])
    gen = torch.Generator().manual_seed(settings["seed"])
    y = dataset.split_labels("train")
    net = classifier_net(dataset.n_features, settings["hidden"], settings["dropout"], int(y.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=settings["lr"])
    t0 = time.perf_counter()
    for _ in range(settings["epochs"]):
        x = dataset.redraw_train(gen)
        net.train()
        for idx in torch.randperm(x.shape[0], generator=gen).split(settings["batch_size"]):
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    record = {"train_seconds": time.perf_counter() - t0,
              "valid_accuracy": accuracy(net, dataset.valid, dataset.split_labels("valid")),
              "test_accuracy": accuracy(net, dataset.test, dataset.split_labels("test")),
              "test_data": f"{settings['data']}: the test images, Bernoulli(grey/255) drawn once",
              "label_histogram": histogram(dataset.split_labels("test"), int(y.max()) + 1)}
    return net, record


def load_or_train_classifier(settings: dict, data_dir, cache_dir: Path, retrain: bool):
    """The classifier of these settings from cache_dir/<hash of the settings>.pt, trained (and cached) when there
    is none or when `retrain`. Returns (net, record)."""
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"{key}.pt"
    if path.exists() and not retrain:
        saved = torch.load(path, weights_only=True)
        net = classifier_net(saved["n_features"], settings["hidden"], settings["dropout"], saved["classes"])
        net.load_state_dict(saved["state_dict"])
        return net, {**saved["record"], "cache": str(path), "cached": True}
    from genlearn.data.registry import load_dataset

    dataset = load_dataset(settings["data"], data_dir)
    net, record = train_classifier(dataset, settings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "record": record, "n_features": dataset.n_features,
                "classes": net[-1].out_features}, path)
    return net, {**record, "cache": str(path), "cached": False}


# -- mode coverage -------------------------------------------------------------------------------------------------
def histogram(labels: torch.Tensor, classes: int) -> list[float]:
    return (torch.bincount(labels, minlength=classes).double() / labels.shape[0]).tolist()


def coverage(net, x: torch.Tensor, reference: list[float] | None = None) -> dict:
    """class_histogram, confident_fraction, classes_within_5_15 (and the total variation to `reference`) of rows x."""
    probs = class_probabilities(net, x)
    hist = histogram(probs.argmax(1), probs.shape[1])
    out = {"class_histogram": hist, "confident_fraction": float((probs.max(1).values >= CONFIDENT).float().mean()),
           "classes_within_5_15": sum(BAND[0] <= h <= BAND[1] for h in hist), "n_classified": int(x.shape[0])}
    if reference is not None:
        out["class_tv_to_reference"] = 0.5 * sum(abs(a - b) for a, b in zip(hist, reference))
    return out


def sample_coverage(model, net, n: int, reference: list[float], image_shape, png: Path) -> dict:
    """Mode coverage of n samples of the model (seed 0) and a 10 x 10 grid of the first 100 of them."""
    from genlearn.plots import sample_grid

    t0 = time.perf_counter()
    x = model.sample(n, generator=torch.Generator().manual_seed(0))
    out = coverage(net, x, reference)
    out["coverage_seconds"] = time.perf_counter() - t0
    png.parent.mkdir(parents=True, exist_ok=True)
    out["samples_png"] = str(sample_grid(x[:100], image_shape, png, title=png.stem))
    return out


# -- likelihood ----------------------------------------------------------------------------------------------------
def ais_bdmc(model, dataset, opts: dict) -> dict:
    """AIS over z on the first ais_rows train and test rows, BDMC on bdmc_rows simulated rows and the empirical KL
    estimate with its bracket (genlearn.evaluation.evaluate_latent, partition "ais"), every figure prefixed ais_
    (bdmc_* as they are), with the wall time. (evaluation.ais_metrics also importance-samples the same rows with
    q(z|x), which a GAN does not have.)"""
    from genlearn.evaluation import evaluate_latent

    t0 = time.perf_counter()
    res = evaluate_latent(model, dataset, splits=("train", "test"), partition="ais", seed=0, **opts)
    out = {k if k.startswith("bdmc_") else f"ais_{k}": v for k, v in res.items()}
    out.update({**opts, "ais_seconds": time.perf_counter() - t0})
    return out


def headline_from_ais(entry: dict, ais: dict) -> dict:
    """The figures of a new AIS/BDMC computation (ais_* and bdmc_* keys) become the entry's headline test_nll
    (method "ais"), its stderr and its bracket [AIS NLL - max(BDMC gap, 0), AIS NLL]; the run's own first
    evaluation is kept under `run_evaluation`."""
    first = {k: entry.get(k) for k in ("test_nll", "test_nll_stderr", "test_nll_rows", "test_nll_lower",
                                       "test_nll_upper", "bdmc_gap", "bdmc_forward", "bdmc_reverse", "bdmc_rows",
                                       "evaluation")}
    value, gap = ais["ais_test_nll"], ais["bdmc_gap"]
    return {**ais, "run_evaluation": first, "test_nll": value, "test_nll_method": "ais",
            "test_nll_stderr": ais.get("ais_test_nll_stderr"), "test_nll_rows": ais.get("ais_rows"),
            "test_nll_upper": value, "test_nll_lower": value - max(gap, 0.0)}


# -- one recipe ----------------------------------------------------------------------------------------------------
def recipe_entry(name: str, args, overrides: list[str], dataset, net, reference, ais_file) -> dict:
    """Fit (or reuse) the recipe's run folder and report its figures, AIS/BDMC and mode coverage."""
    from genlearn.runs import load_run

    run_dir = args.runs_dir / name
    if not (args.reuse and (run_dir / "metrics.json").exists()):
        fit_recipe(name, run_dir, args.data_dir, overrides + (["--overwrite"] if run_dir.exists() else []))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    entry = {k: metrics.get(k) for k in KEYS}
    entry.update({"recipe": metrics.get("recipe"), "model_config": metrics.get("model_config"),
                  "rule": metrics.get("rule"), "run_dir": str(run_dir)})
    model = load_run(run_dir).model
    if ais_file:
        entry.update(headline_from_ais(entry, {**json.loads(Path(ais_file).read_text()), "ais_source": ais_file}))
    elif args.recompute_ais:
        entry.update(headline_from_ais(entry, ais_bdmc(model, dataset, args.ais)))
    png = args.out.parent / f"{args.out.stem}_{name}_samples.png"
    entry.update(sample_coverage(model, net, args.samples, reference, dataset.image_shape, png))
    return entry


def parse_args():
    from genlearn.evaluation import AIS_DEFAULTS

    p = common.parser(__file__, __doc__, threads=1)
    p.add_argument("--recipes", nargs="+", default=RECIPES, help="recipes to report")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="run folders, one per recipe (RUNS/NAME), "
                   "and the cached classifier (RUNS/digit-classifier)")
    p.add_argument("--reuse", action="store_true", help="report the finished run folder of a recipe when there is "
                   "one instead of fitting it again")
    counts = {key: value for key, value in AIS_DEFAULTS.items() if isinstance(value, int)}  # a GAN: AIS from the prior
    for key, value in counts.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, default=value,
                       help=f"{key} of the AIS over z and BDMC (genlearn.evaluation.AIS_DEFAULTS)")
    p.add_argument("--recompute-ais", action="store_true", help="run AIS over z and BDMC again here with the "
                   "--ais-* settings (ais_* figures); by default the likelihood figures are those of the recipe's "
                   "own final evaluation (its metrics.json: test_nll by AIS, bdmc_gap, the bracket)")
    p.add_argument("--ais-json", nargs="*", default=[], metavar="NAME=FILE",
                   help="take a recipe's AIS/BDMC figures from a JSON file (an object of the ais_* and bdmc_* "
                        "figures, as this script writes them, computed elsewhere on the same run folder) instead of "
                        "computing them here")
    p.add_argument("--samples", type=int, default=10000, help="model samples classified for the mode coverage")
    p.add_argument("--retrain-classifier", action="store_true", help="train the digit classifier again even when "
                   "one of the same settings is cached")
    args = p.parse_args()
    args.ais = {key: getattr(args, key) for key in counts}
    return args


def main() -> None:
    from genlearn.data.registry import load_dataset

    args = parse_args()
    common.set_threads(args.threads)
    overrides, data, classifier = [], "binarized-mnist", CLASSIFIER
    if args.smoke:  # the recipes on the embedded digits, for seconds
        data, classifier = "digits", SMOKE_CLASSIFIER
        args.ais = {"ais_rows": 5, "ais_steps": 5, "ais_chains": 2, "ais_leapfrog": 10, "bdmc_rows": 3}
        overrides = ["--data", data, "--epochs", "1", "--max-minutes", "1", "--hidden", "16", "--critic-hidden", "16",
                     "--ais-rows", "20", "--ais-steps", "5", "--ais-chains", "2", "--bdmc-rows", "3"]
        args.samples, args.runs_dir, args.reuse = 200, args.out.parent / (args.out.stem + "-runs"), False
        args.recompute_ais = True
    net, record = load_or_train_classifier(classifier, args.data_dir, args.runs_dir / "digit-classifier",
                                           args.retrain_classifier)
    print(json.dumps({"classifier": {k: record[k] for k in ("test_accuracy", "train_seconds", "cached")}}),
          flush=True)
    if record["test_accuracy"] < MIN_ACCURACY and not args.smoke:
        raise SystemExit(f"the digit classifier reaches {record['test_accuracy']:.4f} test accuracy, below "
                         f"{MIN_ACCURACY}: its class histograms would not be trustworthy ({record['cache']})")
    dataset = load_dataset(data, args.data_dir)
    reference = {"data": data, "split": "test", **coverage(net, dataset.test)}
    results = {"settings": {**common.machine_record(), "recipes": args.recipes, "runs_dir": str(args.runs_dir),
                            "smoke": args.smoke, "data": data, "ais": args.ais, "samples": args.samples,
                            "confident": CONFIDENT, "band": list(BAND),
                            "classifier": {**classifier, **record, "min_accuracy": MIN_ACCURACY}},
               "reference": reference}
    ais_files = dict(item.split("=", 1) for item in args.ais_json)
    for name in args.recipes:
        entry = recipe_entry(name, args, overrides, dataset, net, reference["class_histogram"], ais_files.get(name))
        results[name] = entry
        print(json.dumps(common._json_safe({name: {k: entry.get(k) for k in (
            "test_nll", "test_nll_lower", "test_nll_upper", "ais_test_nll", "bdmc_gap", "confident_fraction",
            "classes_within_5_15", "class_tv_to_reference")}})), flush=True)
        common.write_results(args.out, results, merge_depth=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
