"""The GPU check of genlearn (the python part of benchmarks/gpu_check.sh): on a CUDA machine, in under 5 minutes,

0. the test suite's GPU-marked tests (pytest -m gpu: every family trained on the GPU, resumed on the CPU);
1. one training epoch of every recipe's family on its data (binarized MNIST for most), through the Trainer on
   the GPU (`device="cuda"`), seconds per epoch (the final likelihoods are not computed: minutes each);
2. the RBM 784 x 500 CD-1 epoch (batch 100, 60,000 MNIST images thresholded at 0.5): seconds (target <= 0.5 s on
   an H100/H200-class GPU);
3. AIS for that RBM with 100,000 temperatures x 100 chains, forward only: seconds (target <= 20 s);
4. with several GPUs, `torchrun --nproc-per-node N -m genlearn fit made ...` (one epoch, global batch 100) against
   one process: the training seconds of each and the throughput ratio.

    bash benchmarks/gpu_check.sh [--data-dir ../shared/data]      # runs the GPU-marked tests, then this
    .venv/bin/python benchmarks/gpu_check.py --smoke --out /tmp/g.json  # seconds, embedded digits, any device

Writes benchmarks/results/gpu_check.json (the machine, the GPU, each figure, and any step that failed with its
error: a failure of one step does not stop the others). GPU timings synchronise the device before reading the
clock."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

import common
import genlearn
from genlearn.learning.trainer import TrainConfig, Trainer

#: --smoke: the embedded digits and small sizes, so the script can be checked on any machine in seconds
SMOKE = {"hidden": 32, "ais_steps": 1000, "recipes": ("made-32", "rbm-784x20-cd1", "vae", "mixture-500")}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_epoch(trainer: Trainer, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    trainer.train_epoch()
    sync(device)
    return time.perf_counter() - t0


def recipe_epoch(name: str, data_dir, device: torch.device, smoke: bool) -> dict:
    """One training epoch of recipe `name` on the device (its model, rule and training settings; epochs=1)."""
    from genlearn.models.registry import get_spec
    from genlearn.recipes import load_recipe
    from genlearn.runs import _split_kwargs

    recipe = load_recipe(name)
    data = genlearn.load_dataset("digits" if smoke else recipe.data, None if smoke else data_dir)
    train_kwargs, model_options = _split_kwargs(recipe.fit_kwargs())
    model, rule = common.model_and_rule(recipe.model, data, **model_options)
    cfg = TrainConfig.from_dict({**get_spec(recipe.model).train_defaults, **train_kwargs, "epochs": 1,
                                 "progress": False, "max_minutes": None})
    trainer = Trainer(model, data, cfg, rule=rule, device=device)
    seconds = timed_epoch(trainer, device)
    return {"model": recipe.model, "data": data.name, "rows": int(data.train.shape[0]),
            "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "epoch_seconds": seconds}


def rbm_speed(data_dir, device: torch.device, smoke: bool, ais_steps: int) -> dict:
    """The RBM 784 x 500 CD-1 epoch (2 epochs: the first includes warm-up) and forward AIS on the GPU."""
    from genlearn.likelihood import log_partition

    data = (genlearn.load_dataset("digits") if smoke else
            genlearn.load_dataset("mnist", data_dir, binarize="threshold", valid=0))
    hidden = SMOKE["hidden"] if smoke else 500
    model, rule = common.model_and_rule("rbm", data, hidden=hidden, k=1, init_seed=0, init_visible="data")
    cfg = TrainConfig(epochs=2, lr=0.05, optimizer="momentum", momentum=0.5, batch_size=100, seed=0, progress=False)
    trainer = Trainer(model, data, cfg, rule=rule, device=device)
    first = timed_epoch(trainer, device)
    second = timed_epoch(trainer, device)
    out = {"rows": int(data.train.shape[0]), "visible": int(data.train.shape[1]), "hidden": hidden,
           "cd1_epoch_seconds_first": first, "cd1_epoch_seconds": second, "cd1_target_seconds": 0.5}
    sync(device)
    t0 = time.perf_counter()
    est = log_partition(trainer.model, "ais", steps=ais_steps, chains=100, seed=0, reverse=False)
    sync(device)
    out.update({"ais_steps": ais_steps, "ais_chains": 100, "ais_seconds": time.perf_counter() - t0,
                "ais_target_seconds": 20.0, "log_z_ais": est.value, "ais_ess": est.details.get("ess_forward")})
    return out


def data_parallel(data_dir, gpus: int, smoke: bool) -> dict:
    """`genlearn fit made` for one epoch with 1 and with `gpus` processes (torchrun, NCCL): training seconds."""
    out = {}
    data = ["--data", "digits"] if smoke else ["--data", "binarized-mnist", "--data-dir", str(data_dir)]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted({1, gpus}):
            run = Path(tmp) / f"made-{n}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                   "-m", "genlearn", "fit", "made", *data, "--hidden", "500", "--epochs", "1", "--optimizer",
                   "adam", "--lr", "0.001", "--batch-size", "100", "--device", "cuda", "--out", str(run),
                   "--quiet"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                out[f"processes_{n}"] = {"error": proc.stderr[-2000:]}
                continue
            metrics = json.loads((run / "metrics.json").read_text())
            out[f"processes_{n}"] = {"train_seconds": metrics["train_seconds"], "wall_seconds": wall,
                                     "test_nll": metrics.get("test_nll"), "world_size": metrics.get("world_size")}
    one, many = out.get("processes_1", {}), out.get(f"processes_{gpus}", {})
    if gpus > 1 and "train_seconds" in one and "train_seconds" in many:
        out["speedup"] = one["train_seconds"] / many["train_seconds"]
        out["efficiency"] = out["speedup"] / gpus
    return out


def gpu_tests(timeout_s: float = 150.0) -> dict:
    """The test suite's GPU-marked tests (pytest -m gpu): return code and pytest's summary line."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"],
                          capture_output=True, text=True, timeout=timeout_s, cwd=root)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return {"returncode": proc.returncode, "summary": lines[-1] if lines else "",
            "output_tail": proc.stdout[-3000:] if proc.returncode not in (0, 5) else ""}


def step(results: dict, key: str, fn, *args) -> None:
    """results[key] = fn(*args), or {"error": ...} when it fails (the other steps still run)."""
    t0 = time.perf_counter()
    try:
        results[key] = fn(*args)
    except Exception as exc:  # noqa: BLE001  (a check reports every failure and goes on)
        results[key] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    print(f"{key}: {time.perf_counter() - t0:.1f} s", json.dumps(results[key], default=str)[:400], flush=True)


def main(argv=None) -> int:
    ap = common.parser(__file__, __doc__)
    ap.add_argument("--ais-steps", type=int, default=100_000)
    ap.add_argument("--skip-recipes", action="store_true", help="no recipe epochs")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the GPU-marked tests")
    args = ap.parse_args(argv)
    common.set_threads(args.threads)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("gpu_check: no CUDA GPU is visible to torch (torch.cuda.is_available() is False); run it on a "
              "CUDA machine, or with --smoke to check the script", file=sys.stderr)
        return 2
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    res: dict = {**common.machine_record(), "device": str(device)}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        res.update({"gpu": props.name, "gpu_count": torch.cuda.device_count(),
                    "gpu_memory_gib": props.total_memory / 2**30, "cuda_version": torch.version.cuda})
    t_start = time.perf_counter()
    if not args.skip_tests and not args.smoke:
        step(res, "gpu_tests", gpu_tests)
    if not args.skip_recipes:
        from genlearn.recipes import recipe_names

        names = SMOKE["recipes"] if args.smoke else recipe_names()
        res["recipe_epochs"] = {}
        for name in names:
            step(res["recipe_epochs"], name, recipe_epoch, name, args.data_dir, device, args.smoke)
    step(res, "rbm", rbm_speed, args.data_dir, device, args.smoke,
         SMOKE["ais_steps"] if args.smoke else args.ais_steps)
    gpus = torch.cuda.device_count() if cuda else 0
    if gpus > 1:
        step(res, "data_parallel", data_parallel, args.data_dir, gpus, args.smoke)
    else:
        res["data_parallel"] = {"skipped": f"{gpus} GPU(s): the 1-vs-N comparison needs at least 2"}
    res["total_seconds"] = time.perf_counter() - t_start
    res["load_average_at_end"] = list(os.getloadavg())
    path = common.write_results(args.out, res)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
