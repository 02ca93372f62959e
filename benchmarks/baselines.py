"""Independent-Bernoulli baseline: test NLL (nats per example) on the standard binary benchmarks.

Model: P(x) = prod_i p_i^x_i (1 - p_i)^(1 - x_i) (genlearn ProductBernoulli). Estimate: the posterior mean under a
symmetric Beta(alpha, alpha) prior ("add-alpha" / Laplace smoothing; alpha = 1 is Laplace's rule),
    p_i = (sum_m x_mi + alpha) / (M + 2 alpha),
with alpha chosen on the valid split from a fixed grid (alpha = 0 is the plain MLE, which genlearn clips to
[1e-6, 1 - 1e-6]). The model is fitted on train only (NADE protocol: train on train, select on valid, report test).
NLL = -(1/M) sum_m log P(x_m) is computed by genlearn.evaluation.split_nll and cross-checked against the closed form
-sum_i [q_i log p_i + (1 - q_i) log(1 - p_i)], q_i the split's pixel means.

    .venv/bin/python benchmarks/baselines.py [--data-dir ../shared/data] [--sets binarized-mnist,adult,dna,nips]
    .venv/bin/python benchmarks/baselines.py --smoke --out /tmp/b.json      # the embedded digits, a second

Prints a table and merges the results into benchmarks/results/baselines.json, keyed by data set."""
from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import torch

import common
from genlearn import ProductBernoulli, load_dataset
from genlearn.evaluation import split_nll

ALPHAS = (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
DEFAULT_SETS = ("binarized-mnist", "adult", "dna", "nips")


def smoothed_probs(counts: torch.Tensor, m: int, alpha: float) -> torch.Tensor:
    """p_i = (c_i + alpha) / (M + 2 alpha) from the float64 counts c_i = sum_m x_mi."""
    return (counts + alpha) / (m + 2 * alpha)


def fit(x: torch.Tensor, alpha: float, counts: torch.Tensor | None = None) -> ProductBernoulli:
    if alpha == 0:
        return ProductBernoulli(x.shape[1]).fit_closed_form(x)
    counts = x.double().sum(0) if counts is None else counts
    return ProductBernoulli(x.shape[1], probs=smoothed_probs(counts, x.shape[0], alpha).float())


def closed_form_nll(model: ProductBernoulli, q: torch.Tensor) -> float:
    """-sum_i [q_i log p_i + (1 - q_i) log(1 - p_i)], q the pixel means of a split (nats per example): the mean
    NLL of an independent model depends on the data only through q."""
    logits = model.logits.detach().double()
    log_p, log_1mp = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
    return float(-(q * log_p + (1 - q) * log_1mp).sum())


def run_set(name: str, data_dir: Path) -> dict:
    """Select alpha on valid by the closed form (sufficient statistics), then evaluate the chosen model on every
    split with genlearn.evaluation.split_nll and check it against the closed form."""
    start = time.perf_counter()
    data = load_dataset(name, data_dir=data_dir)
    load_s = time.perf_counter() - start
    counts = data.train.double().sum(0)
    q = {s: data.split(s).double().mean(0) for s in ("train", "valid", "test")}
    grid = {alpha: closed_form_nll(fit(data.train, alpha, counts), q["valid"]) for alpha in ALPHAS}
    best = min(grid, key=grid.get)
    model = fit(data.train, best, counts)
    res = {s: split_nll(model, data.split(s)) for s in ("train", "valid", "test")}
    for s in res:
        check = closed_form_nll(model, q[s])
        if not math.isclose(check, res[s]["nll"], rel_tol=1e-5):
            raise SystemExit(f"{name}: split_nll {res[s]['nll']} on {s} disagrees with the closed form {check}")
    wall = time.perf_counter() - start
    return {
        "test_nll": res["test"]["nll"], "valid_nll": res["valid"]["nll"], "train_nll": res["train"]["nll"],
        "test_bits_per_dim": res["test"]["bits_per_dim"], "test_nll_closed_form": closed_form_nll(model, q["test"]),
        "smoothing": {"prior": "Beta(alpha, alpha), p = (count + alpha) / (M + 2 alpha)", "alpha": best,
                      "chosen_on": "valid", "valid_nll_by_alpha": {str(a): v for a, v in grid.items()}},
        "sizes": data.sizes(), "n_features": data.n_features, "data_settings": data.settings,
        "load_seconds": load_s, "wall_seconds": wall, "units": "nats per example",
        "machine": common.machine_record(), "load_average_1min_after": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    parser = common.parser(__file__, __doc__, threads=min(2, os.cpu_count() or 1))
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS))
    args = parser.parse_args(argv)
    if args.smoke:
        args.sets = "digits" if args.sets == parser.get_default("sets") else args.sets
        args.threads = 1 if args.threads == parser.get_default("threads") else args.threads
    common.set_threads(args.threads)
    data_dir = Path(args.data_dir)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    print(f"independent Bernoulli baseline; data dir {data_dir}; alpha grid {ALPHAS}; torch {torch.__version__}, "
          f"{platform.machine()} {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    results = {}
    print(f"{'data set':<16} {'alpha':>6} {'train':>9} {'valid':>9} {'test':>9} {'bits/dim':>8} {'wall s':>7}")
    for name in sets:
        r = run_set(name, data_dir)
        results[name] = r
        print(f"{name:<16} {r['smoothing']['alpha']:>6g} {r['train_nll']:>9.3f} {r['valid_nll']:>9.3f} "
              f"{r['test_nll']:>9.3f} {r['test_bits_per_dim']:>8.4f} {r['wall_seconds']:>7.2f}")
    out = common.write_results(args.out, results, merge_depth=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
