"""Variance of the order-agnostic NADE gradient estimate: independent vs stratified observed fractions.

Order-agnostic training draws, per example, a fraction t ~ U(0, 1) and observes each dimension with probability t
(`genlearn.models.nade.sample_observed_sets`). With independent t's, the batch mean of the loss varies with how
many rows happened to observe little (high loss) or much (low loss). Stratifying the t's over the batch
(t_i = (pi_i + v_i) / B, `stratified_uniform`) keeps each row's distribution, so the estimate stays unbiased,
and removes that between-row part of the variance.

On a trained model (a checkpoint written by tractable_binarized_mnist.py --models oa-nade), this draws --batches
minibatches of the binarized-MNIST training set and computes the gradient g of the loss with each sampler:
reported are the total variance E||g - mean g||^2 (summed over all parameters), ||mean g||^2 and the standard
deviation of the minibatch loss (nats), and the ratio stratified / independent.

    .venv/bin/python benchmarks/oa_nade_gradient_variance.py \
        --checkpoint benchmarks/results/tractable_binarized_mnist_oanade_strat_oa-nade.safetensors
    .venv/bin/python benchmarks/oa_nade_gradient_variance.py --smoke --out /tmp/v.json   # untrained, digits

--checkpoint is the safetensors file of the model's parameters, or a genlearn run folder of an order-agnostic NADE
(`genlearn fit --recipe oa-nade`, or tractable_binarized_mnist.py --run-dir)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

import common
import genlearn
import genlearn.models.nade as nade_module


def independent_uniform(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """t_i ~ U(0, 1) independently (the sampler before stratification)."""
    return torch.rand(batch, 1, generator=generator)


def load_model(checkpoint: Path | None, dataset, hidden: int):
    """The order-agnostic NADE of a run folder or of a safetensors file of its parameters (an untrained one, seed
    0, when there is no checkpoint)."""
    if checkpoint is not None and checkpoint.is_dir():
        model = genlearn.load_run(checkpoint).model
        if not getattr(model, "order_agnostic", False):
            raise SystemExit(f"{checkpoint} is not a run of an order-agnostic NADE")
        return model
    model, _ = common.model_and_rule("nade", dataset, hidden=str(hidden), order_agnostic=True, init_seed=0)
    if checkpoint is not None:
        state = load_file(str(checkpoint))
        missing = [k for k in ("W", "U", "V", "b", "c") if k not in state]
        if missing:
            raise SystemExit(f"{checkpoint} lacks {missing}: not a one-layer order-agnostic NADE checkpoint")
        model.load_state_dict({k: state[k] for k in ("W", "U", "V", "b", "c")}, strict=False)
    return model


def gradient_statistics(model, x: torch.Tensor, batches: int, batch_size: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    grads, losses = [], []
    for _ in range(batches):
        xb = x[torch.randint(0, x.shape[0], (batch_size,), generator=g)]
        model.zero_grad()
        loss = model.loss(xb, g)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).double())
        losses.append(float(loss.detach()))
    grads = torch.stack(grads)
    mean = grads.mean(0)
    return {"gradient_total_variance": float((grads - mean).pow(2).sum(1).mean()),
            "mean_gradient_squared_norm": float(mean.pow(2).sum()),
            "loss_mean": float(np.mean(losses)), "loss_sd": float(np.std(losses, ddof=1))}


def main(argv=None) -> int:
    p = common.parser(__file__, __doc__, threads=2)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="oa-nade safetensors from the MNIST benchmark, or a run folder (required unless --smoke)")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.smoke:
        args.hidden, args.batches, args.batch_size = 16, 10, 50
        args.threads = 1 if args.threads == p.get_default("threads") else args.threads
    elif args.checkpoint is None:
        raise SystemExit("--checkpoint is required (a trained order-agnostic NADE), except with --smoke")
    if args.checkpoint is not None and not args.checkpoint.exists():
        raise SystemExit(f"missing {args.checkpoint}")
    common.set_threads(args.threads)
    dataset = genlearn.load_dataset("digits" if args.smoke else "binarized-mnist", args.data_dir)
    x = dataset.train
    model = load_model(args.checkpoint, dataset, args.hidden)
    settings = {**common.machine_record(), "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
                "data": dataset.name, "batches": args.batches, "batch_size": args.batch_size, "seed": args.seed}
    print("settings", json.dumps(settings), flush=True)
    res = {"settings": settings}
    stratified = nade_module.stratified_uniform
    t0 = time.perf_counter()
    for name, sampler in (("independent", independent_uniform), ("stratified", stratified)):
        nade_module.stratified_uniform = sampler
        try:
            res[name] = gradient_statistics(model, x, args.batches, args.batch_size, args.seed)
        finally:
            nade_module.stratified_uniform = stratified
        print(name, json.dumps(res[name]), flush=True)
    res["variance_ratio_stratified_to_independent"] = (res["stratified"]["gradient_total_variance"]
                                                       / res["independent"]["gradient_total_variance"])
    res["wall_seconds"] = time.perf_counter() - t0
    print(f"gradient variance, stratified / independent: {res['variance_ratio_stratified_to_independent']:.3f} "
          f"({res['wall_seconds']:.1f} s)", flush=True)
    common.write_results(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
