"""Speed of the autoregressive models on binarized-MNIST-sized data (784 dims), float32, CPU.

1. float32 GEMM roofline of this machine, measured in the same run: (100 x 784) @ (784 x 500), the shape of a
   MADE/NADE minibatch, and a large 2048^3 product (GFLOP/s = 2 m k n / seconds).
2. One training epoch of MADE 1x500 on 50,000 x 784 with batch 100 through genlearn's Trainer (bit-packed
   minibatches, forward, backward, fused Adam step), with the direct input-output connection (the default),
   the same with the products that read the 0/1 input kept dense (binary_kernels.ENABLED = False; its epochs
   alternate with the default's, and their median ratio is reported), without the direct connection, and with
   it and bfloat16 training products (`matmul_precision="bfloat16"`): seconds per epoch (target < 2.5 s); best
   and median of --epochs timed epochs after a warm-up.
   Then a FVSBN epoch (logits b + x (W * M)^T: sums over the 0/1 input where faster) against the same with the
   dense product, alternating epoch by epoch.
3. NADE with 500 hidden units (fixed order, the O(nH) pass: numba kernels when installed, else torch):
   training and evaluation examples per
   second, and the achieved FLOP/s as a fraction of the GEMM roofline. FLOPs counted per example: forward
   ~4nH (x_d W[:,d] products and the cumulative sum: 2nH; output dot products: 2nH), training ~3x forward.
   Order-agnostic NADE training (GEMMs, one split per example; the first layer's 0/1 inputs x * m and m as sums
   of selected rows where faster) is reported alongside, and with those products dense.
4. Evaluation of the 10,000 test images under a 32-mask MADE ensemble (32 full passes + logsumexp).

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/made_speed.py > /tmp/made_speed.log 2>&1
    .venv/bin/python benchmarks/made_speed.py --smoke --out /tmp/m.json    # seconds: 1,000 synthetic rows

Data: the static binarized MNIST (`genlearn.load_dataset("binarized-mnist")`), or, when it is not found (and
with --smoke), rows of independent Bernoulli(0.13) pixels of the same shape."""
from __future__ import annotations

import json
import statistics
import sys
import time

import torch

import common
import genlearn
from genlearn import Dataset, DataError, binary_kernels
from genlearn.learning.trainer import TrainConfig, Trainer


def adam_trainer(family: str, train: torch.Tensor, image_shape=None, **options):
    """A model of `family` (seed 0, initialised from the data) and a Trainer of it on `train` with Adam at rate
    1e-3 (fused), batch 100, the rule `genlearn fit FAMILY` uses: what `genlearn fit` runs."""
    ds = Dataset(name="binarized-mnist", kind="binary", train=train, valid=None, test=None, image_shape=image_shape)
    model, rule = common.model_and_rule(family, ds, init_seed=0, **options)
    cfg = TrainConfig(epochs=1, optimizer="adam", lr=1e-3, batch_size=100, seed=0, progress=False)
    return model, Trainer(model, ds, cfg, rule=rule)


def timed_epoch(trainer) -> float:
    t0 = time.perf_counter()
    trainer.train_epoch()
    return time.perf_counter() - t0


def paired_epochs(trainers: dict, epochs: int) -> dict:
    """{key: [seconds of each epoch]} for trainers that alternate epoch by epoch, epochs + 1 each (the first a
    warm-up); a key ending in "_dense" runs with binary_kernels.ENABLED = False (its 0/1 products dense)."""
    times = {key: [] for key in trainers}
    for _ in range(epochs + 1):
        for key, trainer in trainers.items():
            binary_kernels.ENABLED = not key.endswith("_dense")
            times[key].append(timed_epoch(trainer))
    binary_kernels.ENABLED = True
    return times


def load(data_dir, smoke: bool):
    """(train, test, description): binarized MNIST, or Bernoulli(0.13) pixels when it is missing or --smoke."""
    if not smoke:
        try:
            ds = genlearn.load_dataset("binarized-mnist", data_dir)
            return ds.train, ds.test, ds.settings.get("source", "binarized-mnist")
        except DataError as exc:
            print(f"binarized MNIST not found ({str(exc)[:80]}...): timing on random data", flush=True)
    g = torch.Generator().manual_seed(0)
    rows = (1000, 300) if smoke else (50_000, 10_000)
    return (torch.bernoulli(torch.full((rows[0], 784), 0.13), generator=g),
            torch.bernoulli(torch.full((rows[1], 784), 0.13), generator=g), "random Bernoulli(0.13) data")


def main(argv=None):
    p = common.parser(__file__, __doc__)
    p.add_argument("--epochs", type=int, default=3, help="timed MADE epochs")
    p.add_argument("--nade-examples", type=int, default=5000, help="examples timed for NADE")
    p.add_argument("--hidden", type=int, default=500, help="hidden units of every model")
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    torch.manual_seed(0)
    train, test, source = load(args.data_dir, args.smoke)
    if args.smoke:
        args.nade_examples, args.epochs, args.hidden = 100, 1, 64
    n, h = train.shape[1], args.hidden
    res = {"settings": {**common.machine_record(), "data": source, "dtype": "float32", "batch_size": 100,
                        "hidden": h}}
    print("settings", json.dumps(res["settings"]), flush=True)

    gf, roof = common.gemm_peak({"100x784x500": (100, n, h), "2048": (2048, 2048, 2048)},
                                seconds=0.05 if args.smoke else 2.0)
    res["gemm_gflops_100x784x500"], res["gemm_gflops_2048"] = gf["100x784x500"], gf["2048"]
    print(f"GEMM float32: {res['gemm_gflops_100x784x500']:.1f} GFLOP/s at 100x{n}x{h}, "
          f"{res['gemm_gflops_2048']:.1f} GFLOP/s at 2048^3", flush=True)

    # -- MADE 1x500 epoch, through genlearn's Trainer (what `genlearn fit made` runs) -------------------------
    # "made" and "made_dense" (the products that read the 0/1 input kept dense: binary_kernels.ENABLED = False)
    # alternate epoch by epoch, so that the machine's drift is shared; the first epoch of each is a warm-up
    paired = paired_epochs({key: adam_trainer("made", train, (28, 28), hidden=str(h))[1]
                            for key in ("made", "made_dense")}, args.epochs)
    for key, direct, precision in (("made", True, "full"), ("made_dense", True, "full"),
                                   ("made_no_direct", False, "full"), ("made_bf16", True, "bfloat16")):
        if key in paired:
            times = paired[key][1:]
        else:
            _, trainer = adam_trainer("made", train, (28, 28), hidden=str(h), direct=direct,
                                      matmul_precision=precision)
            times = [timed_epoch(trainer) for _ in range(args.epochs + 1)][1:]  # the first epoch is a warm-up
        # forward: x W1 and h V (2 n H multiply-adds each), + x A (n^2) with the direct connection; x3 to train
        flops_made = 3 * 2 * (2 * n * h + (n * n if direct else 0)) * train.shape[0]
        res[f"{key}_epoch_seconds"] = times
        res[f"{key}_epoch_seconds_best"] = min(times)
        res[f"{key}_epoch_seconds_median"] = statistics.median(times)
        res[f"{key}_epoch_fraction_of_roofline"] = flops_made / min(times) / 1e9 / roof
        label = " + direct connection" if direct else " (no direct connection)"
        label += {"made": ", sums over the 0/1 input where faster", "made_dense": ", dense products"}.get(key, "")
        label += ", bfloat16 products (fraction of the float32 roofline)" if precision == "bfloat16" else ""
        print(f"MADE 1x{h}{label} epoch ({train.shape[0]} x {n}, "
              f"batch 100, Trainer + fused Adam): best {min(times):.2f} s, median {statistics.median(times):.2f} s "
              f"(target < 2.5 s); {res[f'{key}_epoch_fraction_of_roofline']:.2f} of the GEMM roofline", flush=True)
    res["made_epoch_target_seconds"] = 2.5

    # -- FVSBN epoch (x (W * M)^T: sums over the 0/1 input against the dense product, alternating) -------------
    fv = paired_epochs({key: adam_trainer("fvsbn", train)[1] for key in ("fvsbn", "fvsbn_dense")}, args.epochs)
    for key in fv:
        res[f"{key}_epoch_seconds"] = fv[key][1:]
    res["fvsbn_sums_speedup_median"] = statistics.median(d / s for d, s in zip(fv["fvsbn_dense"][1:], fv["fvsbn"][1:]))
    print(f"FVSBN epoch ({train.shape[0]} x {n}, batch 100, Adam): median {statistics.median(fv['fvsbn'][1:]):.2f} s "
          f"with the sums, {statistics.median(fv['fvsbn_dense'][1:]):.2f} s dense: "
          f"{res['fvsbn_sums_speedup_median']:.2f}x", flush=True)
    res["made_sums_speedup_median"] = statistics.median(d / s for d, s in zip(paired["made_dense"][1:],
                                                                              paired["made"][1:]))
    print(f"MADE: the sums over the 0/1 input {res['made_sums_speedup_median']:.2f}x the dense products "
          "(median of the paired epochs)", flush=True)

    # -- NADE 500 --------------------------------------------------------------------------------------
    m = args.nade_examples
    # a warm-up epoch of 300 rows, then an epoch of m rows timed (the same model, Trainers of the two row sets)
    nade, warm_up = adam_trainer("nade", train[:300], hidden=str(h))
    timed_epoch(warm_up)
    secs = timed_epoch(Trainer(nade, Dataset(name="binarized-mnist", kind="binary", train=train[:m]),
                               warm_up.cfg, rule=warm_up.rule))
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
    for precision, key, sums in (("full", "oa_nade_train_examples_per_second", True),
                                 ("full", "oa_nade_train_dense_examples_per_second", False),
                                 ("bfloat16", "oa_nade_train_bf16_examples_per_second", True)):
        binary_kernels.ENABLED = sums  # dense: the first layer's 0/1 inputs multiplied densely
        oa, warm_up = adam_trainer("nade", train[:1000], hidden=str(h), order_agnostic=True,
                                   matmul_precision=precision)
        timed_epoch(warm_up)
        secs_oa = timed_epoch(Trainer(oa, Dataset(name="binarized-mnist", kind="binary", train=train[: 10 * m]),
                                      warm_up.cfg, rule=warm_up.rule))
        res[key] = 10 * m / secs_oa
    binary_kernels.ENABLED = True
    print(f"NADE {h} (fixed order, compiled kernels when numba is installed): train "
          f"{res['nade_train_examples_per_second']:.0f} ex/s "
          f"({res['nade_train_fraction_of_roofline']:.3f} of roofline), eval {res['nade_eval_examples_per_second']:.0f}"
          f" ex/s ({res['nade_eval_fraction_of_roofline']:.3f} of roofline); order-agnostic training "
          f"{res['oa_nade_train_examples_per_second']:.0f} ex/s (dense first-layer products "
          f"{res['oa_nade_train_dense_examples_per_second']:.0f} ex/s), with bfloat16 products "
          f"{res['oa_nade_train_bf16_examples_per_second']:.0f} ex/s", flush=True)

    # -- 32-mask MADE evaluation of the test set --------------------------------------------------------
    made32, _ = adam_trainer("made", train, hidden=str(h), masks=32)  # with the direct connection
    made32.eval()
    with torch.no_grad():
        made32.log_prob(test[:100])
        t0 = time.perf_counter()
        lp = torch.cat([made32.log_prob(test[s : s + 1000]) for s in range(0, test.shape[0], 1000)])
        res["made32_eval_seconds"] = time.perf_counter() - t0
    res["made32_eval_examples"] = int(test.shape[0])
    res["made32_eval_check_mean_nll_untrained"] = float(-lp.double().mean())
    print(f"MADE 1x{h}, 32-mask ensemble: log P of {test.shape[0]} test images in {res['made32_eval_seconds']:.2f} s",
          flush=True)
    common.write_results(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
