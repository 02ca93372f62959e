"""NADE 784 x 500 (fixed order, one hidden layer, sigmoid) training speed on binarized MNIST, float32, CPU:
the run kernels against the per-step kernels, and optionally against another genlearn checkout, interleaved.

A NADE's hidden pre-activations a_d = c + sum_{e<d} x_e w_e change only at the steps where x_e = 1, and binarized
MNIST has 13% ones. The run kernels (genlearn.models.nade_kernels, the default) therefore evaluate
h = act(a) once per run of unchanged a, not once per step: the sigmoids fall from n H to about 0.13 n H per
example, and the backward pass sums dL/da over each run before multiplying by act'(a). The per-step kernels
(`nade_kernels.USE_RUNS = False`, what genlearn ran before) evaluate act at every step. Both give the same numbers
up to float32 summation order (tests/test_autoregressive.py checks them against the torch pass in float64).

Each round times, one after the other, --examples training examples (one epoch of Trainer.train_epoch: bit-packed
minibatches of 100, forward, backward, fused Adam at 1e-3) with:
- runs: this checkout, run kernels;
- per-step: this checkout, per-step kernels;
- baseline: with --baseline-src DIR, the `src` folder of another genlearn checkout (e.g. a git worktree of an
  older commit: `git worktree add /tmp/base COMMIT`), in a child process that times the same epoch the same way.
The order of the variants alternates from round to round; each variant's first epoch (numba compilation, warm
caches) is not timed. Reported: examples per second per round, medians, and the ratios of the medians.

    .venv/bin/python benchmarks/nade_speed.py --threads 1 [--baseline-src /tmp/base/src] [--rounds 5]
    .venv/bin/python benchmarks/nade_speed.py --smoke --out /tmp/n.json        # seconds: 300 synthetic rows

Data: the static binarized MNIST (`genlearn.load_dataset("binarized-mnist")`), or, when it is not found (and with
--smoke), rows of independent Bernoulli(0.13) pixels of the same shape."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import common

#: what a variant's process runs: build the NADE, one untimed epoch, then --rounds timed epochs on request
CHILD = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from genlearn import Dataset
from genlearn.learning.rules import make_rule
from genlearn.learning.trainer import TrainConfig, Trainer
from genlearn.models.registry import build_model, rule_for
x = torch.load(sys.argv[2])
hidden, runs = sys.argv[3], sys.argv[4] == "1"
try:
    from genlearn.models import nade_kernels
    nade_kernels.USE_RUNS = runs
except ImportError:
    pass
ds = Dataset(name="binarized-mnist", kind="binary", train=x, valid=None, test=None)
opts = {"hidden": hidden}
model = build_model("nade", ds, init_seed=0, **opts)
trainer = Trainer(model, ds, TrainConfig(epochs=1, optimizer="adam", lr=1e-3, batch_size=100, seed=0,
                                         progress=False), rule=make_rule(*rule_for("nade", **opts)))
trainer.train_epoch()
print("ready", flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    trainer.train_epoch()
    print(json.dumps(x.shape[0] / (time.perf_counter() - t0)), flush=True)
"""


class Variant:
    """A child process holding one trained-in-place NADE; `time()` = examples/s of one more epoch."""

    def __init__(self, src: Path, threads: int, rows: Path, hidden: int, runs: bool):
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(threads), str(rows), str(hidden),
                                      "1" if runs else "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the NADE child for {src} failed (see its error above)")

    def time(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main(argv=None) -> int:
    p = common.parser(__file__, __doc__, threads=1)
    p.add_argument("--examples", type=int, default=5000, help="training examples timed per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    p.add_argument("--hidden", type=int, default=500, help="hidden units")
    p.add_argument("--baseline-src", type=Path, default=None,
                   help="the src folder of another genlearn checkout to time alongside")
    args = p.parse_args(argv)
    if args.smoke:
        args.examples, args.rounds, args.hidden = 300, 2, 32
    common.set_threads(args.threads)
    import genlearn
    from genlearn import DataError

    try:
        if args.smoke:
            raise DataError("--smoke")
        x = genlearn.load_dataset("binarized-mnist", args.data_dir).train[: args.examples]
        data = "binarized MNIST training rows"
    except DataError:
        x = (torch.rand(args.examples, 784, generator=torch.Generator().manual_seed(0)) < 0.13).float()
        data = "random rows of density 0.13"
    here = Path(__file__).resolve().parents[1] / "src"
    sources = {"runs": (here, True), "per-step": (here, False)}
    if args.baseline_src is not None:
        if not (args.baseline_src / "genlearn" / "__init__.py").exists():
            p.error(f"--baseline-src {args.baseline_src}: no genlearn package there (give a checkout's src folder)")
        sources["baseline"] = (args.baseline_src.resolve(), True)
    threads = args.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.pt"
        torch.save(x.contiguous(), rows)
        variants = {name: Variant(src, threads, rows, args.hidden, runs) for name, (src, runs) in sources.items()}
        rates = {name: [] for name in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                rates[name].append(variants[name].time())
            print(f"round {r}: " + ", ".join(f"{n} {rates[n][-1]:,.0f} ex/s" for n in order), flush=True)
        for v in variants.values():
            v.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    res = {"machine": common.machine_record(), "data": data, "density": float(x.mean()), "examples": args.examples,
           "hidden": args.hidden, "threads": threads, "rounds": args.rounds,
           "baseline_src": str(args.baseline_src) if args.baseline_src else None,
           "train_examples_per_second": rates, "median_examples_per_second": med,
           "ratio_runs_over_per_step": med["runs"] / med["per-step"]}
    if "baseline" in med:
        res["ratio_runs_over_baseline"] = med["runs"] / med["baseline"]
    print(json.dumps({k: res[k] for k in ("median_examples_per_second", "ratio_runs_over_per_step")
                      + (("ratio_runs_over_baseline",) if "baseline" in med else ())}), flush=True)
    print("wrote", common.write_results(args.out, res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
