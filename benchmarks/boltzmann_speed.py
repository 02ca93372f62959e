"""Speed of a fully visible Boltzmann machine on binarized-MNIST-sized data (784 units): the compiled Gibbs sweeps
and exact pair counts over 0/1 rows against the torch loop and float64 products, interleaved in one process.

"compiled": genlearn's defaults (genlearn.boltzmann_kernels: per chain, the fields b + x W as sums of the rows of W
at the active units, updated by +-W_i at each flip; AIS's energies with x W summed over the active units, in
float64; genlearn.learning.boltzmann_gradients.pair_counts: x^T x as exact float32 counts); "torch":
boltzmann_kernels.ENABLED = binary_kernels.ENABLED = False (per unit a product x W[:, i] in torch, n calls per
sweep; the energies and x^T x by float64 products). Both draw the same uniforms. Timed, each pair
in alternating order, --repeats pairs:

1. one sequential-scan Gibbs sweep of --chains chains (float64, as AIS runs them) of a machine trained for one
   PCD epoch on the rows (so that its fields are those of a fitted model, not of random weights);
2. a PCD-1 epoch (--chains chains) through genlearn's Trainer (`genlearn fit boltzmann --gradient pcd`: Adam, the
   family's default rate, batch 100) over --rows rows;
3. AIS log Z with --ais-steps temperatures and --chains forward + as many reverse chains (`log_partition("ais")`).

Reported: seconds of each, the medians and the ratio torch / compiled, and the two AIS estimates (the same
uniforms: equal up to the order of float additions). Writes benchmarks/results/boltzmann_speed.json.

    .venv/bin/python benchmarks/boltzmann_speed.py --threads 1 --data-dir ../shared/data
    .venv/bin/python benchmarks/boltzmann_speed.py --smoke --out /tmp/b.json      # seconds: small sizes

Data: the static binarized MNIST (`genlearn.load_dataset("binarized-mnist")`), or, when it is not found (and with
--smoke), rows of independent Bernoulli(0.13) pixels of the same shape."""
from __future__ import annotations

import statistics
import sys
import time

import torch

import common
import genlearn
from genlearn import Dataset, DataError, binary_kernels, boltzmann_kernels
from genlearn.learning.trainer import TrainConfig, Trainer

VARIANTS = ("compiled", "torch")


def load(data_dir, rows: int, smoke: bool):
    """(rows x 784 0/1 float32 rows, description)."""
    if not smoke:
        try:
            ds = genlearn.load_dataset("binarized-mnist", data_dir)
            return ds.train[:rows].float(), ds.settings.get("source", "binarized-mnist")
        except DataError as exc:
            print(f"binarized MNIST not found ({str(exc)[:80]}...): timing on random data", flush=True)
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((rows, 784), 0.13), generator=g), "random Bernoulli(0.13) data"


def use(variant: str) -> None:
    boltzmann_kernels.ENABLED = binary_kernels.ENABLED = variant == "compiled"


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main(argv=None):
    p = common.parser(__file__, __doc__)
    p.add_argument("--rows", type=int, default=10_000, help="training rows of the PCD epoch")
    p.add_argument("--chains", type=int, default=100, help="Gibbs chains (PCD and AIS)")
    p.add_argument("--ais-steps", type=int, default=300, help="AIS temperatures")
    p.add_argument("--repeats", type=int, default=3, help="interleaved pairs")
    args = p.parse_args(argv)
    if args.smoke:
        args.rows, args.chains, args.ais_steps, args.repeats = 300, 10, 5, 1
    common.set_threads(args.threads)
    train, source = load(args.data_dir, args.rows, args.smoke)
    ds = Dataset(name="binarized-mnist", kind="binary", train=train, valid=None, test=None, image_shape=(28, 28))
    res = {"settings": {**common.machine_record(), "data": source, "rows": int(train.shape[0]),
                        "chains": args.chains, "ais_steps": args.ais_steps, "repeats": args.repeats,
                        "units": int(train.shape[1])}}
    print("settings", res["settings"], flush=True)

    def trainer():
        model, rule = common.model_and_rule("boltzmann", ds, gradient="pcd", n_chains=args.chains, k=1)
        cfg = TrainConfig(epochs=1, optimizer="adam", lr=0.05, batch_size=100, seed=0, progress=False)
        return model, Trainer(model, ds, cfg, rule=rule)

    fitted, warm = trainer()
    use("compiled")
    warm.train_epoch()  # a fitted model for the sweeps and AIS (and the kernels loaded)
    b, W = (t.detach().double().contiguous() for t in fitted.binary_params())
    x0 = train[: args.chains].double()
    from genlearn.estimators.ais import boltzmann_gibbs_sweeps

    one = torch.ones((), dtype=torch.float64)
    boltzmann_gibbs_sweeps(x0, b, W, one, 1, None)  # the float64 kernel loaded before the timings
    seconds = {f"{what}_{v}": [] for what in ("sweep", "pcd_epoch", "ais") for v in VARIANTS}
    estimates = {}
    for r in range(args.repeats):
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            use(variant)
            seconds[f"sweep_{variant}"].append(timed(lambda: boltzmann_gibbs_sweeps(x0, b, W, one, 1,
                                                                                    torch.Generator().manual_seed(r))))
            _, tr = trainer()
            seconds[f"pcd_epoch_{variant}"].append(timed(tr.train_epoch))
            t0 = time.perf_counter()
            est = fitted.log_partition("ais", steps=args.ais_steps, chains=args.chains, seed=r, data=train,
                                       burn_in=10 if args.smoke else 50)
            seconds[f"ais_{variant}"].append(time.perf_counter() - t0)
            estimates.setdefault(variant, []).append(float(est.value))
            print(f"pair {r} {variant}: sweep {seconds[f'sweep_{variant}'][-1] * 1e3:.1f} ms, PCD epoch "
                  f"{seconds[f'pcd_epoch_{variant}'][-1]:.2f} s, AIS {seconds[f'ais_{variant}'][-1]:.2f} s "
                  f"(log Z {est.value:.3f})", flush=True)
    use("compiled")
    res["seconds"] = seconds
    res["ais_log_z"] = estimates
    for what in ("sweep", "pcd_epoch", "ais"):
        med = {v: statistics.median(seconds[f"{what}_{v}"]) for v in VARIANTS}
        res[f"{what}_median_seconds"] = med
        res[f"{what}_speedup"] = med["torch"] / med["compiled"]
        print(f"{what}: compiled {med['compiled']:.4f} s, torch {med['torch']:.4f} s: "
              f"{res[f'{what}_speedup']:.2f}x", flush=True)
    common.write_results(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
