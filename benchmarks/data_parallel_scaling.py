"""Data-parallel scaling on one machine: the same training epoch with 1 and with N processes of one thread each
(gloo on CPU, genlearn.learning.distributed), global batch B, on binarized MNIST (or, with --synthetic or when
the files are absent, random binary rows of the same shape).

    .venv/bin/python benchmarks/data_parallel_scaling.py [--data-dir ../shared/data] [--model made|vae]
        [--processes 2] [--batch-size 100] [--rows 20000] [--matmul-precision auto|full|bfloat16]
    .venv/bin/python benchmarks/data_parallel_scaling.py --smoke --out /tmp/s.json       # seconds

Per world size: the seconds of one epoch over `rows` training rows (after a warm-up of 20 steps), the
throughput (rows/s), the CPU seconds of the epoch in each rank (what the work costs, whatever else runs on the
cores), and the cost of the gradient all_reduce alone (the flattened gradient, timed 30 times).
cpu_speedup_bound = CPU seconds of 1 process / the largest rank's CPU seconds with N: the speedup N free cores
would give if waiting for the all_reduce cost nothing (an upper bound; the measured speedup is the wall figure).
speedup = throughput(N) / throughput(1); efficiency = speedup / N. The machine's load average is recorded: other
jobs on the same cores lower the figures. Writes benchmarks/results/data_parallel_scaling.json."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import common


def _dataset(args_d: dict):
    import genlearn
    from genlearn import Dataset

    if args_d["smoke"]:
        return genlearn.load_dataset("digits")
    if not args_d["synthetic"]:
        try:
            ds = genlearn.load_dataset("binarized-mnist", args_d["data_dir"])
            return Dataset(name=ds.name, kind="binary", train=ds.train[: args_d["rows"]], valid=None, test=None,
                           image_shape=ds.image_shape)
        except Exception:  # noqa: BLE001  (absent files: the synthetic stand-in below)
            pass
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args_d["rows"], 784, generator=g) < 0.13).float()  # MNIST's mean pixel value
    return Dataset(name="synthetic-784", kind="binary", train=x, valid=None, test=None, image_shape=(28, 28))


def _worker(args_d: dict, out_file: str) -> None:
    from genlearn.learning.distributed import DataParallel
    from genlearn.learning.rules import make_rule
    from genlearn.learning.trainer import TrainConfig, Trainer
    from genlearn.models.registry import build_model, rule_for

    parallel, device = DataParallel.from_env("cpu")
    ds = _dataset(args_d)
    options = {"hidden": args_d["hidden"]} if args_d["model"] == "made" else {"latent": 50, "hidden": "200,200"}
    options["matmul_precision"] = args_d["matmul_precision"]
    model = build_model(args_d["model"], ds, **options)
    rule = make_rule(*rule_for(args_d["model"], **options))
    cfg = TrainConfig(epochs=1, optimizer="adam", lr=1e-3, batch_size=args_d["batch_size"], progress=False)
    trainer = Trainer(model, ds, cfg, rule=rule, device=device, parallel=parallel)
    # warm-up: 20 steps on the first rows
    x = ds.train[: 20 * args_d["batch_size"]]
    for b in x.split(args_d["batch_size"]):
        trainer.optimizer.zero_grad(set_to_none=True)
        (parallel.compute_gradient if parallel else rule.compute_gradient)(model, b, trainer.generator)
        trainer.optimizer.step()
    c0, t0 = time.process_time(), time.perf_counter()
    trainer.train_epoch()
    epoch = time.perf_counter() - t0
    cpu = torch.zeros(parallel.world_size if parallel else 1, dtype=torch.float64)
    cpu[parallel.rank if parallel else 0] = time.process_time() - c0
    comm = None
    if parallel is not None:
        parallel.all_reduce_(cpu)
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        parallel.all_reduce_(flat.clone())
        t0 = time.perf_counter()
        for _ in range(30):
            parallel.all_reduce_(flat)
        comm = (time.perf_counter() - t0) / 30
    if parallel is None or parallel.rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        Path(out_file).write_text(json.dumps({"epoch_seconds": epoch, "rows": int(ds.train.shape[0]),
                                              "data": ds.name, "parameters": n_params,
                                              "steps": -(-int(ds.train.shape[0]) // args_d["batch_size"]),
                                              "all_reduce_seconds": comm, "cpu_seconds_by_rank": cpu.tolist()}))


def main(argv=None) -> int:
    ap = common.parser(__file__, __doc__)
    ap.add_argument("--model", choices=("made", "vae"), default="made")
    ap.add_argument("--hidden", type=int, default=500, help="MADE hidden units")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--synthetic", action="store_true", help="random binary 784-pixel rows instead of MNIST")
    ap.add_argument("--matmul-precision", choices=("auto", "full", "bfloat16"), default="auto",
                    help="the model's training products (auto: bfloat16 where this machine runs it faster)")
    args = ap.parse_args(argv)
    from genlearn.learning.distributed import run_local

    args_d = {"model": args.model, "hidden": 32 if args.smoke else args.hidden, "batch_size": args.batch_size,
              "rows": args.rows, "synthetic": args.synthetic, "smoke": args.smoke, "data_dir": str(args.data_dir),
              "matmul_precision": args.matmul_precision}
    res = {**common.machine_record(), "settings": {**args_d, "threads_per_process": 1, "backend": "gloo"}}
    by_world = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted({1, args.processes}):
            out = Path(tmp) / f"{n}.json"
            load = os.getloadavg()[0]
            run_local(_worker, n, args_d, str(out), threads=1)
            rec = json.loads(out.read_text())
            rec["load_average_before"] = load
            rec["rows_per_second"] = rec["rows"] / rec["epoch_seconds"]
            by_world[str(n)] = rec
            print(n, "process(es):", json.dumps(rec), flush=True)
    res["by_processes"] = by_world
    one, many = by_world["1"], by_world[str(args.processes)]
    res["speedup"] = many["rows_per_second"] / one["rows_per_second"]
    res["cpu_speedup_bound"] = one["cpu_seconds_by_rank"][0] / max(many["cpu_seconds_by_rank"])
    res["efficiency"] = res["speedup"] / args.processes
    res["load_average_at_end"] = list(os.getloadavg())
    print(f"speedup {res['speedup']:.2f}x with {args.processes} processes (efficiency {res['efficiency']:.2f}); "
          f"CPU-time bound {res['cpu_speedup_bound']:.2f}x")
    print(f"wrote {common.write_results(args.out, res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
