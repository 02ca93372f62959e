"""AIS over z against importance sampling on a trained latent-variable run: where AIS starts (the prior or the
encoder's q(z|x)), how many intermediate distributions it needs, and its BDMC bracket.

For a run folder (`genlearn fit ... --out RUN`), on the first --rows test rows: the importance-sampling NLL with
--is-samples samples of q(z|x) (once), then for every start in --starts and every length in --steps, forward AIS
over z with HMC (genlearn.estimators.latent_ais; --chains chains per row, 10 leapfrog steps) and BDMC on
--bdmc-rows rows simulated from the model (forward AIS and reverse AIS from the generating z, whose gap bounds the
error of AIS at those settings). Both NLL figures are stochastic upper bounds: the lower one is the tighter.
What `genlearn eval RUN --partition ais --ais-start START --ais-rows N --ais-steps T --ais-chains C --bdmc-rows R`
adds to a run's metrics, without its per-split importance sampling.

    .venv/bin/python benchmarks/vae_ais.py --run RUN --data-dir ../shared/data --rows 1000 --steps 100,500 \\
        --starts encoder --threads 1 --out benchmarks/results/vae_ais_hvae.json
    .venv/bin/python benchmarks/vae_ais.py --smoke --out /tmp/a.json     # a tiny VAE fitted on the 8x8 digits

Prints the settings, one line per (start, steps) and writes the JSON: `is_nll`, and per `runs.START.STEPS`:
`ais_nll`, `ais_minus_is`, `bdmc_gap`, `bdmc_forward`, `bdmc_reverse`, `accept_rate`, `seconds`."""
from __future__ import annotations

import json
import time


import common
import genlearn
from genlearn.evaluation import ais_metrics
from genlearn.likelihood import latent_nll


def load(args):
    """(model, test rows, what the run is) from --run, or with --smoke a small VAE fitted on the digits."""
    if args.smoke:
        run = genlearn.fit("vae", "digits", epochs=3, latent="4", hidden="32", progress=False,
                           plots=False, partition_options={"iw_samples": 10})
        return run.model, run.dataset.test, "vae 64-32-(2x4) fitted 3 epochs on the 8x8 digits (smoke)"
    if args.run is None:
        raise SystemExit("vae_ais.py: give --run RUN (a run folder of a vae fit) or --smoke")
    run = genlearn.load_run(args.run)
    spec = run.meta.get("data_spec") or run.meta.get("dataset")
    dataset = genlearn.load_dataset(spec, args.data_dir)
    return run.model, dataset.test, f"{args.run} ({run.meta.get('model')}, {spec})"


def main(argv=None):
    p = common.parser(__file__, __doc__, threads=1)
    p.add_argument("--run", help="run folder of a fitted vae")
    p.add_argument("--rows", type=int, default=1000, help="first test rows for AIS and IS")
    p.add_argument("--steps", default="100,500", help="AIS lengths (intermediate distributions), comma-separated")
    p.add_argument("--starts", default="encoder,prior", help="where AIS starts: encoder, prior or both")
    p.add_argument("--chains", type=int, default=1, help="AIS chains per row")
    p.add_argument("--bdmc-rows", type=int, default=100, help="rows simulated from the model for BDMC")
    p.add_argument("--is-samples", type=int, default=5000, help="importance samples per row")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.smoke:
        args.rows, args.steps, args.bdmc_rows, args.is_samples = 20, "3,10", 10, 50
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    starts = [s.strip() for s in args.starts.split(",") if s.strip()]
    if not steps or min(steps) < 1 or not starts or set(starts) - {"encoder", "prior"}:
        p.error("--steps takes positive integers and --starts encoder and/or prior")
    common.set_threads(args.threads)
    model, test, what = load(args)
    rows = test[: args.rows]
    settings = {**common.machine_record(), "run": what, "rows": int(rows.shape[0]), "steps": steps, "starts": starts,
                "chains": args.chains, "leapfrog": 10, "bdmc_rows": args.bdmc_rows, "is_samples": args.is_samples,
                "seed": args.seed}
    print("settings", json.dumps(settings), flush=True)
    t0 = time.perf_counter()
    est = latent_nll(model, rows, "importance-sampling", iw_samples=args.is_samples, seed=args.seed)
    res = {"settings": settings, "is_nll": est.value, "is_nll_stderr": est.stderr,
           "is_seconds": time.perf_counter() - t0, "runs": {}}
    print(f"importance sampling, {args.is_samples} samples, {rows.shape[0]} rows: NLL {est.value:.3f} "
          f"(stderr {est.stderr:.3f}), {res['is_seconds']:.1f} s", flush=True)
    for start in starts:
        for T in steps:
            t0 = time.perf_counter()
            m = ais_metrics(model, test, seed=args.seed, same_rows_is=False, ais_rows=args.rows, ais_steps=T,
                            ais_chains=args.chains, bdmc_rows=args.bdmc_rows, ais_start=start)
            out = {"ais_nll": m["ais_test_nll"], "ais_nll_stderr": m["ais_test_nll_stderr"],
                   "ais_minus_is": m["ais_test_nll"] - est.value, "accept_rate": m["ais_accept_rate"],
                   "seconds": time.perf_counter() - t0}
            if args.bdmc_rows:
                out.update({"bdmc_gap": m["bdmc_gap"], "bdmc_forward": m["bdmc_forward"],
                            "bdmc_reverse": m["bdmc_reverse"]})
            res["runs"].setdefault(start, {})[str(T)] = out
            print(f"AIS from the {start}, {T} steps: NLL {out['ais_nll']:.3f} (AIS - IS {out['ais_minus_is']:+.3f}), "
                  f"BDMC gap {out.get('bdmc_gap', float('nan')):.3f}, accept {out['accept_rate']:.2f}, "
                  f"{out['seconds']:.1f} s", flush=True)
    common.write_results(args.out, res)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
