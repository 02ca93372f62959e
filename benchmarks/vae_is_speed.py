"""Importance-sampling evaluation of a VAE against the GEMM roofline of its decoder passes (float32, CPU).

The VAE is the one of the recipes: encoder 784-200-200 (tanh) -> (mu, log-variance) of 50 latents, decoder
50-200-200 (tanh) -> 784 Bernoulli logits; a freshly built model (training does not change the cost). The timed
call is what `genlearn eval` runs: genlearn.likelihood.latent_nll(model, x, "importance-sampling", iw_samples=k),
k samples per row from q(z|x), in chunks of rows x samples (genlearn.estimators.importance, CHUNK rows x samples
per decoder pass; no per-image Python loop).

FLOPs (2 per multiply-add) of IS with k samples on M rows:
  decoder passes  2 k M (50*200 + 200*200 + 200*784)
  encoder         2 M (784*200 + 200*200 + 200*100)
The roofline time is the sum, over those six products, of FLOPs / the GEMM rate this machine reaches on the very
shapes the estimator multiplies (float32, the same threads, the faster of torch.mm and oneDNN's product:
common.gemm_gflops; the decoder's at CHUNK rows, the encoder's at the rows per chunk), measured in alternation
with the timed pieces of the evaluation so that other load on the machine slows both alike; the roofline at the
best measured rate is reported alongside. Target: measured <= 1.5 x roofline. (The model runs its output layer
in blocks of LOGIT_BLOCK_ROWS rows into one buffer kept between calls, the bias added by the sums' pass; that
layer's rate is the faster of the chunk and the block shape. Without autograd its tanh layers run as sigmoids
with the affine maps folded into the weights (genlearn.models.vae.MLP.sigmoid_features) where that is faster, and
the sigmoids and softplus sums run in the compiled kernels of genlearn.logistic_kernels where numba is installed.)

Where the time goes (on a sub-problem of --probe-rows rows x k samples): a torch.profiler breakdown of one chunk
by operator; the chunk size (importance_log_marginal's `chunk` argument); and two rewritings of the Bernoulli
log-likelihood that give the same numbers: "sign" -softplus((1 - 2x) l) summed (one elementwise product fewer),
"gemm-xl" sum_i x_i l_i = h . (W^T x) + b . x (the product with x moved into a per-row vector, so that the big
(rows x 784) tensor only goes through softplus and a sum); and "gemm-only", the three decoder products alone (no
tanh, no softplus): the time torch needs for the matrices on this path.

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/vae_is_speed.py --rows 1000 > /tmp/vae_is.log 2>&1
    .venv/bin/python benchmarks/vae_is_speed.py --smoke --out /tmp/i.json    # seconds: 20 rows, k = 50

With --rows M below the 10,000 test images the seconds are also extrapolated linearly to the 10,000 (the cost is
exactly linear in the rows: the same chunks, M / rows-per-chunk of them), and the JSON says so.

Data: the static binarized MNIST test set (`genlearn.load_dataset("binarized-mnist")`), or, when it is not found
(and with --smoke), rows of independent Bernoulli(0.13) pixels of the same shape."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import common
import genlearn
from genlearn import DataError, Dataset
from genlearn.estimators.importance import CHUNK, importance_log_marginal
from genlearn.likelihood import latent_nll
from genlearn.models.registry import build_model
from genlearn.models.vae import LOGIT_BLOCK_ROWS

N, H, D = 784, 200, 50
TARGET = 1.5
TEST_ROWS = 10_000


def load(data_dir, smoke: bool):
    """(train, test, description): float32 0/1 rows."""
    if not smoke:
        try:
            ds = genlearn.load_dataset("binarized-mnist", data_dir)
            return ds.train.float(), ds.test.float(), ds.settings.get("source", "binarized-mnist")
        except DataError as exc:
            print(f"binarized MNIST not found ({str(exc)[:80]}...): timing on random data", flush=True)
    g = torch.Generator().manual_seed(0)
    rows = (500, 200) if smoke else (50_000, TEST_ROWS)
    return (torch.bernoulli(torch.full((rows[0], N), 0.13), generator=g),
            torch.bernoulli(torch.full((rows[1], N), 0.13), generator=g), "random Bernoulli(0.13) data")


def chunking(k: int, rows: int, chunk: int = CHUNK) -> tuple[int, int]:
    """(rows per chunk, samples per pass) as importance_log_marginal chooses them."""
    r = max(1, min(rows, chunk // min(k, chunk)))
    return r, max(1, min(k, chunk // r))


def gemm_shapes(k: int, rows: int) -> dict:
    """name -> (m, k, n, multiply-adds counted per evaluated row x sample or per row)."""
    r, s = chunking(k, rows)
    big = r * s  # rows of the decoder's products in one pass
    return {"dec1": (big, D, H), "dec2": (big, H, H), "dec3": (big, H, N),
            "dec3_block": (min(big, LOGIT_BLOCK_ROWS), H, N),  # the output layer as the model runs it, in blocks
            "enc1": (r, N, H), "enc2": (r, H, H), "enc3": (r, H, 2 * D)}


def flop_count(k: int, m: int) -> dict:
    dec = {"dec1": 2 * k * m * D * H, "dec2": 2 * k * m * H * H, "dec3": 2 * k * m * H * N}
    enc = {"enc1": 2 * m * N * H, "enc2": 2 * m * H * H, "enc3": 2 * m * H * 2 * D}
    return {**dec, **enc, "decoder": sum(dec.values()), "encoder": sum(enc.values()),
            "total": sum(dec.values()) + sum(enc.values())}


def roofline_seconds(flops: dict, gflops: dict) -> tuple[float, float]:
    """(sum over the six products of FLOPs / rate of its shape, total FLOPs / best rate). The decoder's output
    layer runs in blocks of LOGIT_BLOCK_ROWS rows (genlearn.models.vae.softplus_sum): its rate is the faster of
    the whole-chunk and the block shape, so that the blocks cannot make the roofline slower."""
    rates = {name: v for name, v in gflops.items() if name in flops}
    rates["dec3"] = max(gflops["dec3"], gflops.get("dec3_block", 0.0))
    per_shape = sum(flops[name] / (rate * 1e9) for name, rate in rates.items())
    return per_shape, flops["total"] / (max(gflops.values()) * 1e9)


# -- the rewritings of log_weights (same numbers, different elementwise work) --------------------------------------
def log_weights_variant(model, kind: str):
    def sign(x, k, g):
        z, log_q = model.sample_posterior(x, k, g)
        ll = -F.softplus((1 - 2 * x) * model.decoder_logits(z)).sum(-1)
        return ll + model.log_prior(z) - log_q

    def gemm_xl(x, k, g):
        z, log_q = model.sample_posterior(x, k, g)
        h = model.dec(z)
        w, b = model.dec_out.weight, model.dec_out.bias  # (n, H), (n,)
        ll = (h * (x @ w)).sum(-1) + x @ b - F.softplus(F.linear(h, w, b)).sum(-1)
        return ll + model.log_prior(z) - log_q

    def gemm_only(x, k, g):
        z, log_q = model.sample_posterior(x, k, g)
        h = z
        for lin in [model.dec.first[0], *model.dec.rest, model.dec_out]:
            h = lin(h)
        return h[..., 0] - log_q

    return {"default": model.log_weights, "sign": sign, "gemm-xl": gemm_xl, "gemm-only": gemm_only}[kind]


def timed_marginal(lw, x, k, chunk) -> float:
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    importance_log_marginal(lw, x, k, g, chunk=chunk)
    return time.perf_counter() - t0


@torch.no_grad()
def breakdown(model, x, k, chunk) -> dict:
    """Self CPU milliseconds per operator of the passes of `chunk` rows x samples that make CHUNK rows x samples
    (one pass at the default chunk, ten at CHUNK / 10; less when x has fewer rows x k), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    r, s = chunking(k, x.shape[0], chunk)
    passes = max(1, min(CHUNK, k * x.shape[0]) // (r * s))
    xb = x[:r]
    g = torch.Generator().manual_seed(0)
    model.log_weights(xb, s, g)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(passes):
            model.log_weights(xb, s, g).double()
    ops = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages() if e.self_cpu_time_total > 0}
    total = sum(ops.values())
    gemm = sum(v for key, v in ops.items() if key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul",
                                                       "mkldnn::_linear_pointwise"))
    top = dict(sorted(ops.items(), key=lambda kv: -kv[1])[:12])
    return {"chunk": chunk, "rows": r, "samples": s, "passes": passes, "total_ms": total, "gemm_ms": gemm,
            "gemm_fraction": gemm / total, "ns_per_output_element": total * 1e6 / (passes * r * s * N), "ops_ms": top}


def main(argv=None):
    p = common.parser(__file__, __doc__, threads=1)
    p.add_argument("--rows", type=int, default=TEST_ROWS, help="test rows M evaluated")
    p.add_argument("--samples", type=int, default=5000, help="importance samples k per row")
    p.add_argument("--pieces", type=int, default=4, help="slices of the rows timed, each after a GEMM measurement")
    p.add_argument("--gemm-seconds", type=float, default=1.0,
                   help="seconds of each GEMM rate measurement per shape and piece")
    p.add_argument("--probe-rows", type=int, default=20, help="rows of the chunk-size / rewriting experiments")
    p.add_argument("--probe-repeats", type=int, default=2, help="interleaved repeats of those experiments")
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    if args.smoke:
        args.rows, args.samples, args.pieces, args.gemm_seconds = 20, 50, 1, 0.02
        args.probe_rows, args.probe_repeats = 4, 1
    train, test, source = load(args.data_dir, args.smoke)
    k, m = args.samples, min(args.rows, test.shape[0])
    x = test[:m]
    ds = Dataset(name="binarized-mnist", kind="binary", train=train, valid=None, test=None, image_shape=(28, 28))
    model = build_model("vae", ds, latent=str(D), hidden=f"{H},{H}", activation="tanh")
    model.eval()
    r, s = chunking(k, m)
    res = {"settings": {**common.machine_record(), "cpu_model": _cpu_model(), "data": source, "dtype": "float32",
                        "model": f"vae {N}-{H}-{H}-{D} / {D}-{H}-{H}-{N}, tanh, untrained (fresh)",
                        "iw_samples": k, "rows": m, "chunk": CHUNK, "rows_per_chunk": r, "samples_per_pass": s,
                        "pieces": args.pieces, "gemm_seconds_per_shape": args.gemm_seconds,
                        "target_ratio_to_roofline": TARGET}}
    print("settings", json.dumps(res["settings"]), flush=True)

    shapes = gemm_shapes(k, m)
    flops = flop_count(k, m)
    res["flops"] = flops
    print(f"FLOPs of IS with k={k} on M={m} rows: decoder {flops['decoder'] / 1e9:.1f} GFLOP, encoder "
          f"{flops['encoder'] / 1e9:.3f} GFLOP, total {flops['total'] / 1e9:.1f} GFLOP", flush=True)
    # the brief's reference shapes at 10,000 rows, once
    ref = {f"{name}@10000": (10_000, kk, nn) for name, (_, kk, nn) in shapes.items()
           if name.startswith("dec") and not name.endswith("_block")}
    res["gemm_gflops_reference_10000_rows"], _ = common.gemm_peak(ref, seconds=args.gemm_seconds)

    # -- the timed evaluation, in pieces, each after a GEMM measurement of the six shapes --------------------------
    # one untimed call first: the process's one-off work (numba kernels loaded from their cache, or compiled where
    # the cache is stale, and the elementwise timings) is not part of the evaluation's rate
    latent_nll(model, x[:1], "importance-sampling", iw_samples=min(k, 50), seed=0)
    rounds, piece_seconds, nll_sum, elbo_sum = [], [], 0.0, 0.0
    edges = [round(i * m / args.pieces) for i in range(args.pieces + 1)]
    for i in range(args.pieces):
        gf, _ = common.gemm_peak(shapes, seconds=args.gemm_seconds)
        rounds.append(gf)
        rows = x[edges[i] : edges[i + 1]]
        if rows.shape[0] == 0:
            continue
        t0 = time.perf_counter()
        est = latent_nll(model, rows, "importance-sampling", iw_samples=k, seed=i)
        secs = time.perf_counter() - t0
        piece_seconds.append(secs)
        nll_sum += est.value * rows.shape[0]
        elbo_sum += est.details["elbo"] * rows.shape[0]
        print(f"piece {i + 1}/{args.pieces}: {rows.shape[0]} rows in {secs:.2f} s; GEMM GFLOP/s "
              + ", ".join(f"{name} {v:.1f}" for name, v in gf.items()), flush=True)
    gf_after, _ = common.gemm_peak(shapes, seconds=args.gemm_seconds)
    rounds.append(gf_after)
    gflops = {name: statistics.mean(rd[name] for rd in rounds) for name in shapes}
    roof, roof_best = roofline_seconds(flops, gflops)
    seconds = sum(piece_seconds)
    res["gemm_gflops"] = gflops
    res["gemm_gflops_rounds"] = rounds
    res["gemm_shapes"] = {name: list(shape) for name, shape in shapes.items()}
    res["is_seconds"] = seconds
    res["is_piece_seconds"] = piece_seconds
    res["roofline_seconds"] = roof
    res["roofline_seconds_best_rate"] = roof_best
    res["ratio_to_roofline"] = seconds / roof
    res["ratio_to_roofline_best_rate"] = seconds / roof_best
    res["achieved_gflops"] = flops["total"] / seconds / 1e9
    res["target_met"] = res["ratio_to_roofline"] <= TARGET
    res["nll_untrained"] = nll_sum / m
    res["elbo_untrained"] = elbo_sum / m
    res["extrapolated"] = m < TEST_ROWS
    if m < TEST_ROWS:
        res["extrapolation"] = {"rows": TEST_ROWS, "is_seconds": seconds * TEST_ROWS / m,
                                "roofline_seconds": roof * TEST_ROWS / m,
                                "flops": flop_count(k, TEST_ROWS)["total"],
                                "note": f"measured on {m} test rows, scaled linearly to {TEST_ROWS} (same chunks)"}
    print(f"IS k={k}, M={m}: {seconds:.2f} s, {res['achieved_gflops']:.1f} GFLOP/s achieved; roofline "
          f"{roof:.2f} s (per-shape GEMM rates; {roof_best:.2f} s at the best rate); measured / roofline = "
          f"{res['ratio_to_roofline']:.2f} (target <= {TARGET})"
          + (f"; extrapolated to {TEST_ROWS} rows: {res['extrapolation']['is_seconds']:.0f} s vs roofline "
             f"{res['extrapolation']['roofline_seconds']:.0f} s" if m < TEST_ROWS else ""), flush=True)
    common.write_results(args.out, res)

    # -- where the time goes ---------------------------------------------------------------------------------------
    small = 5_000 if not args.smoke else 100
    res["breakdown_one_chunk"] = breakdown(model, x, k, CHUNK)
    res["breakdown_one_chunk_5000"] = breakdown(model, x, k, small)
    for key in ("breakdown_one_chunk", "breakdown_one_chunk_5000"):
        b = res[key]
        print(f"{b['passes']} pass(es) of {b['rows']} rows x {b['samples']} samples: {b['total_ms']:.0f} ms, GEMMs "
              f"{b['gemm_ms']:.0f} ms ({100 * b['gemm_fraction']:.0f}%), {b['ns_per_output_element']:.2f} ns per "
              "decoder output element; " + ", ".join(f"{op} {ms:.0f}" for op, ms in b["ops_ms"].items()), flush=True)
    probe = x[: args.probe_rows]
    if args.smoke:
        chunks = [100, CHUNK]
    else:
        chunks = sorted({c for c in (1_000, 2_500, 5_000, 10_000, 25_000, CHUNK, 100_000)
                         if c <= max(CHUNK, 2 * k * probe.shape[0])})
    # (log-weights rewriting, chunk) pairs: every chunk with the model's log_weights, every rewriting at the default
    # CHUNK and at 5,000
    configs = [("default", c) for c in chunks] + [(v, c) for c in (CHUNK, small)
                                                   for v in ("sign", "gemm-xl", "gemm-only")]
    # same numbers: the rewritings against the model's log_weights on the same draws
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.no_grad():
        ref_lw = model.log_weights(probe[:2], 7, g1)
        res["variant_max_abs_difference_nats"] = {
            kind: float((log_weights_variant(model, kind)(probe[:2], 7, g2.manual_seed(3)) - ref_lw).abs().max())
            for kind in ("sign", "gemm-xl")}
    times = {f"{v} chunk={c}": [] for v, c in configs}
    probe_rounds = []
    for _ in range(args.probe_repeats):  # interleaved: the GEMM rates, then every configuration once per repeat
        probe_rounds.append(common.gemm_peak(shapes, seconds=args.gemm_seconds)[0])
        for v, c in configs:
            times[f"{v} chunk={c}"].append(timed_marginal(log_weights_variant(model, v), probe, k, c))
    probe_flops = flop_count(k, probe.shape[0])
    probe_gf = {name: statistics.mean(rd[name] for rd in probe_rounds) for name in shapes}
    probe_roof, _ = roofline_seconds(probe_flops, probe_gf)
    res["probe"] = {"rows": int(probe.shape[0]), "samples": k, "roofline_seconds": probe_roof,
                    "gemm_gflops": probe_gf, "seconds": {key: statistics.median(v) for key, v in times.items()},
                    "runs": times,
                    "note": "variants: default = model.log_weights (x l - softplus(l)); sign = -softplus((1-2x) l); "
                            "gemm-xl = h.(W^T x) + b.x - softplus(l); gemm-only = the three decoder products alone"}
    res["probe"]["ratio_to_roofline"] = {key: v / probe_roof for key, v in res["probe"]["seconds"].items()}
    for key, v in res["probe"]["seconds"].items():
        print(f"probe {probe.shape[0]} rows x {k} samples, {key}: {v:.2f} s = {v / probe_roof:.2f} x roofline",
              flush=True)
    print("rewritings vs log_weights, max |difference| (nats):", json.dumps(res["variant_max_abs_difference_nats"]),
          flush=True)
    common.write_results(args.out, res)
    return 0


def _cpu_model() -> str | None:
    """lscpu's 'Model name' line."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name:")), None)


if __name__ == "__main__":
    sys.exit(main())
