"""Exact-likelihood evaluation speed of a one-hidden-layer NADE with tanh or sigmoid units, float32, CPU: the
kernels' vectorisable rational tanh against libm's scalar tanh, interleaved in one process.

log P_o(x) of an order-agnostic NADE (the mask input u makes every step's a_d new) evaluates act(a_d) for all n
steps and H units of every row and ordering: n H activations per row and ordering (a 32-ordering OA-NADE on
the 1,740 rows of nips x 500 is 1.5e10 of them). Without SVML (the PyPI llvmlite has none) numba calls libm's
scalar tanh, ~14 ns an element on an AVX2 EPYC (benchmarks/RESULTS.md); the kernels now evaluate float32 activations by
`nade_kernels.tanh_rational` (|error| <= 3.8e-8) in SIMD lanes. `nade_kernels.USE_RATIONAL = False` restores
libm's tanh; both give the same log-likelihoods to float32 rounding (tests/test_autoregressive.py).

Each round times `log_prob_ordering(x, k)` (no autograd) once per variant, the order alternating; the first
call (numba compilation) is not timed. Reported: seconds per round, ns per activation, medians and their ratio.

    .venv/bin/python benchmarks/nade_eval_speed.py --threads 1 [--rows 1240 --n 500 --hidden 535 --rounds 5]
    .venv/bin/python benchmarks/nade_eval_speed.py --smoke --out /tmp/e.json        # seconds

Data: random binary rows of density 0.1 (the timing does not depend on the values with the mask input)."""
from __future__ import annotations

import json
import statistics
import time

import torch

import common


def main(argv=None) -> int:
    p = common.parser(__file__, __doc__, data=False, threads=1)
    p.add_argument("--rows", type=int, default=1240, help="rows scored per round (nips' test split: 1,240)")
    p.add_argument("--n", type=int, default=500, help="dimensions (nips: 500)")
    p.add_argument("--hidden", type=int, default=535, help="hidden units")
    p.add_argument("--activation", default="tanh", choices=("tanh", "sigmoid"))
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    args = p.parse_args(argv)
    if args.smoke:
        args.rows, args.n, args.hidden, args.rounds = 50, 40, 33, 2
    common.set_threads(args.threads)
    from genlearn.models import nade_kernels
    from genlearn.models.nade import NADE

    model = NADE(args.n, hidden=args.hidden, order_agnostic=True, orderings=2, activation=args.activation, seed=0)
    x = (torch.rand(args.rows, args.n, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    seconds = {"rational": [], "libm": []}
    results = {}
    with torch.no_grad():
        for name in seconds:  # compile both variants before timing
            nade_kernels.USE_RATIONAL = name == "rational"
            results[name] = model.log_prob_ordering(x, 1)
        for r in range(args.rounds):
            order = list(seconds) if r % 2 == 0 else list(reversed(seconds))
            for name in order:
                nade_kernels.USE_RATIONAL = name == "rational"
                t0 = time.perf_counter()
                model.log_prob_ordering(x, 1)
                seconds[name].append(time.perf_counter() - t0)
            print(f"round {r}: " + ", ".join(f"{n} {seconds[n][-1]:.3f} s" for n in order), flush=True)
    nade_kernels.USE_RATIONAL = True
    activations = args.rows * args.n * args.hidden
    med = {k: statistics.median(v) for k, v in seconds.items()}
    res = {"machine": common.machine_record(), "rows": args.rows, "n": args.n, "hidden": args.hidden,
           "activation": args.activation, "threads": torch.get_num_threads(), "rounds": args.rounds,
           "seconds": seconds, "median_seconds": med,
           "ns_per_activation": {k: 1e9 * v / activations for k, v in med.items()},
           "speedup_rational_over_libm": med["libm"] / med["rational"],
           "max_abs_log_prob_difference": float((results["rational"] - results["libm"]).abs().max())}
    print(json.dumps({k: res[k] for k in ("ns_per_activation", "speedup_rational_over_libm",
                                          "max_abs_log_prob_difference")}), flush=True)
    print("wrote", common.write_results(args.out, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
