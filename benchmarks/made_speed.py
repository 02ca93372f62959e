"""Speed of the autoregressive models on binarized-MNIST-sized data (784 dims), float32, CPU.

1. float32 GEMM roofline of this machine, measured in the same run: (100 x 784) @ (784 x 500), the shape of a
   MADE/NADE minibatch, and a large 2048^3 product (GFLOP/s = 2 m k n / seconds).
2. One training epoch of MADE 1x500 on 50,000 x 784 with batch 100 through genlearn's Trainer (bit-packed
   minibatches, forward, backward, fused Adam step), with the direct input-output connection (the default),
   without it, and with it and bfloat16 training products (`matmul_precision="bfloat16"`): seconds per epoch
   (target < 2.5 s); best and median of --epochs timed epochs after a warm-up.
3. NADE with 500 hidden units (fixed order, the O(nH) pass: numba kernels when installed, else torch):
   training and evaluation examples per
   second, and the achieved FLOP/s as a fraction of the GEMM roofline. FLOPs counted per example: forward
   ~4nH (x_d W[:,d] products and the cumulative sum: 2nH; output dot products: 2nH), training ~3x forward.
   Order-agnostic NADE training (dense GEMMs, one split per example) is reported alongside.
4. Evaluation of the 10,000 test images under a 32-mask MADE ensemble (32 full passes + logsumexp).

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/made_speed.py > /tmp/made_speed.log 2>&1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlearn.data import Dataset  # noqa: E402
from genlearn.learning.trainer import TrainConfig, Trainer  # noqa: E402
from genlearn.models.made import MADE  # noqa: E402
from genlearn.models.nade import NADE  # noqa: E402


def gemm_gflops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2.0 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def make_adam(model, lr=1e-3):
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def train_epoch(model, opt, x, batch, g, limit=None) -> float:
    perm = torch.randperm(x.shape[0], generator=g)
    stop = x.shape[0] if limit is None else min(limit, x.shape[0])
    t0 = time.perf_counter()
    for s in range(0, stop, batch):
        opt.zero_grad(set_to_none=True)
        model.loss(x[perm[s : s + batch]], generator=g).backward()
        opt.step()
    return time.perf_counter() - t0


def load(data_dir: Path):
    path = data_dir / "binarized_mnist" / "binarized_mnist_uint8.npz"
    if path.exists():
        with np.load(path) as f:
            train, test = (torch.from_numpy(f[k].astype(np.float32)) for k in ("train", "test"))
            return train, test, str(path)
    g = torch.Generator().manual_seed(0)
    return (torch.bernoulli(torch.full((50_000, 784), 0.13), generator=g),
            torch.bernoulli(torch.full((10_000, 784), 0.13), generator=g), "random Bernoulli(0.13) data")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--epochs", type=int, default=3, help="timed MADE epochs")
    p.add_argument("--nade-examples", type=int, default=5000, help="examples timed for NADE")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the script runs")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "made_speed.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, test, source = load(args.data_dir)
    if args.smoke:
        train, test, args.nade_examples, args.epochs = train[:1000], test[:300], 200, 1
    res = {"settings": {"machine": f"{platform.machine()} {os.cpu_count()} cores, no GPU", "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "data": source, "date": time.strftime("%Y-%m-%d %H:%M"),
                        "dtype": "float32", "batch_size": 100}}
    print("settings", json.dumps(res["settings"]), flush=True)

    res["gemm_gflops_100x784x500"] = gemm_gflops(100, 784, 500)
    res["gemm_gflops_2048"] = gemm_gflops(2048, 2048, 2048)
    roof = max(res["gemm_gflops_100x784x500"], res["gemm_gflops_2048"])
    print(f"GEMM float32: {res['gemm_gflops_100x784x500']:.1f} GFLOP/s at 100x784x500, "
          f"{res['gemm_gflops_2048']:.1f} GFLOP/s at 2048^3", flush=True)

    # -- MADE 1x500 epoch, through genlearn's Trainer (what `genlearn fit made` runs) -------------------------
    ds = Dataset(name="binarized-mnist", kind="binary", train=train, valid=None, test=None, image_shape=(28, 28))
    for key, direct, precision in (("made", True, "full"), ("made_no_direct", False, "full"),
                                   ("made_bf16", True, "bfloat16")):
        made = MADE(784, 500, seed=0, direct=direct, matmul_precision=precision).init_from_data(train)
        trainer = Trainer(made, ds, TrainConfig(epochs=1, optimizer="adam", lr=1e-3, batch_size=100, seed=0,
                                                progress=False))
        times = []
        for _ in range(args.epochs + 1):  # the first epoch is a warm-up
            t0 = time.perf_counter()
            trainer._epoch()
            times.append(time.perf_counter() - t0)
        times = times[1:]
        # forward: x W1 and h V (2 n H multiply-adds each), + x A (n^2) with the direct connection; x3 to train
        flops_made = 3 * 2 * (2 * 784 * 500 + (784 * 784 if direct else 0)) * train.shape[0]
        res[f"{key}_epoch_seconds"] = times
        res[f"{key}_epoch_seconds_best"] = min(times)
        res[f"{key}_epoch_seconds_median"] = statistics.median(times)
        res[f"{key}_epoch_fraction_of_roofline"] = flops_made / min(times) / 1e9 / roof
        label = " + direct connection" if direct else " (no direct connection)"
        label += ", bfloat16 products (fraction of the float32 roofline)" if precision == "bfloat16" else ""
        print(f"MADE 1x500{label} epoch ({train.shape[0]} x 784, "
              f"batch 100, Trainer + fused Adam): best {min(times):.2f} s, median {statistics.median(times):.2f} s "
              f"(target < 2.5 s); {res[f'{key}_epoch_fraction_of_roofline']:.2f} of the GEMM roofline", flush=True)
    res["made_epoch_target_seconds"] = 2.5

    # -- NADE 500 --------------------------------------------------------------------------------------
    n, h = 784, 500
    nade = NADE(n, h, seed=0).init_from_data(train)
    opt = make_adam(nade)
    m = args.nade_examples
    train_epoch(nade, opt, train, 100, g, limit=300)
    secs = train_epoch(nade, opt, train, 100, g, limit=m)
    fwd_flops = 4 * n * h
    res["nade_train_examples_per_second"] = m / secs
    res["nade_train_fraction_of_roofline"] = 3 * fwd_flops * m / secs / 1e9 / roof
    with torch.no_grad():
        nade.eval()
        t0 = time.perf_counter()
        for s in range(0, m, 100):
            nade.log_prob(test[s : s + 100])
        secs_eval = time.perf_counter() - t0
    res["nade_eval_examples_per_second"] = m / secs_eval
    res["nade_eval_fraction_of_roofline"] = fwd_flops * m / secs_eval / 1e9 / roof
    for precision, key in (("full", "oa_nade_train_examples_per_second"),
                           ("bfloat16", "oa_nade_train_bf16_examples_per_second")):
        oa = NADE(n, h, order_agnostic=True, seed=0, matmul_precision=precision).init_from_data(train)
        opt = make_adam(oa)
        train_epoch(oa, opt, train, 100, g, limit=1000)
        secs_oa = train_epoch(oa, opt, train, 100, g, limit=10 * m)
        res[key] = 10 * m / secs_oa
    print(f"NADE 500 (fixed order, compiled kernels when numba is installed): train "
          f"{res['nade_train_examples_per_second']:.0f} ex/s "
          f"({res['nade_train_fraction_of_roofline']:.3f} of roofline), eval {res['nade_eval_examples_per_second']:.0f}"
          f" ex/s ({res['nade_eval_fraction_of_roofline']:.3f} of roofline); order-agnostic training "
          f"{res['oa_nade_train_examples_per_second']:.0f} ex/s, with bfloat16 products "
          f"{res['oa_nade_train_bf16_examples_per_second']:.0f} ex/s", flush=True)

    # -- 32-mask MADE evaluation of the test set --------------------------------------------------------
    made32 = MADE(784, 500, masks=32, seed=0).init_from_data(train)  # with the direct connection
    made32.eval()
    with torch.no_grad():
        made32.log_prob(test[:100])
        t0 = time.perf_counter()
        lp = torch.cat([made32.log_prob(test[s : s + 1000]) for s in range(0, test.shape[0], 1000)])
        res["made32_eval_seconds"] = time.perf_counter() - t0
    res["made32_eval_examples"] = int(test.shape[0])
    res["made32_eval_check_mean_nll_untrained"] = float(-lp.double().mean())
    print(f"MADE 1x500, 32-mask ensemble: log P of {test.shape[0]} test images in {res['made32_eval_seconds']:.2f} s",
          flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
