"""One training epoch of a VAE and of an IWAE-50 on binarized MNIST: genlearn's Trainer against pythae's trainer.

The peer is pythae (PyPI `pythae`, a benchmark-only dependency: `make bench-deps` installs
benchmarks/requirements-peers.txt with the constraints file, torch untouched). Without it the script says so,
skips the peer and still times genlearn.

Both sides train the same network on the same rows with the same batch size, optimiser and threads:

- encoder 784-200-200 (tanh) -> (mu, log-variance) of a 50-dimensional Gaussian; decoder 50-200-200 (tanh) ->
  784 Bernoulli logits (pythae's "bce" reconstruction loss takes probabilities, so its decoder ends in a sigmoid);
  N(0, I) prior; weights uniform(+-1/sqrt(fan in)) on both sides (genlearn's init, torch's default Linear init)
  and the decoder's output biases at the logits of the pixel means (genlearn's init_from_data, copied to pythae);
- batch 100, Adam at rate 1e-3 (each side's own Adam: genlearn's LeanAdam, torch's fused kernel; pythae's
  torch.optim.Adam), one full epoch of the 50,000 training rows, shuffled;
- objectives: the ELBO (genlearn rule "elbo", iw_samples 1 / pythae VAE) and the IWAE bound with 50 samples per
  row (genlearn "elbo" with iw_samples 50 / pythae IWAE with number_samples 50).

pythae's trainer is its BaseTrainer (what TrainingPipeline runs for these models) with no eval set, no checkpoints
(steps_saving None), no prediction plots (steps_predict None), no data-loader workers, no AMP, on the CPU, and
the two callbacks it always adds switched off (ProgressBarCallback: a tqdm bar updated every step;
MetricConsolePrinterCallback: console logging) with its logger at WARNING. One epoch is BaseTrainer.train_step
(its loop over the DataLoader: forward, loss, zero_grad / backward / Adam step, loss.item() per step), called
after prepare_training(); train() would add a deepcopy of the model per epoch (keep_best_on_train, as there is
no eval set) and the final model's save to disk, which are not timed. genlearn's epoch is Trainer.train_epoch.

The pairs (genlearn epoch, pythae epoch) are interleaved --repeats times per objective, in one process and with
the same torch threads, so that a machine loaded by other work slows both alike; the figures are the median
seconds per epoch of each side and their ratio pythae / genlearn (target >= 2).

The roofline: an epoch's matrix-product FLOPs when every product is dense (`epoch_gemm_flops`; 0.111 TFLOP for the
VAE, 3.10 TFLOP for IWAE-50 on 50,000 rows) over the float32 GEMM peak measured here on the step's shapes. Each
side's fraction of it is reported, and the ratio an epoch at the roofline would reach against pythae's: the
ceiling of pythae / genlearn for an implementation that does the dense arithmetic (genlearn's sums over the 0/1
input replace two of the encoder's products and can pass it a little).

Comparable objectives: each side's epoch loss is printed (nats per example). genlearn's is the mean of
-L_k over the epoch's batches; pythae's VAE loss is the mean over batches of the per-example BCE + analytic KL,
the same -ELBO (nats per example, the KL in closed form instead of one sample); pythae's IWAE loss is its
gradient surrogate -sum_j w~_j log w_j (self-normalised weights), which is <= -L_k (it differs by log k - H(w~)),
so the script also evaluates both trained models after the runs with one estimator (-L_1 and -L_k on the same
fixed rows, same formula, full Gaussian constants, nats per example).

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/vae_speed.py > /tmp/vae_speed.log 2>&1
    .venv/bin/python benchmarks/vae_speed.py --smoke --out /tmp/v.json   # seconds: 500 synthetic rows, k = 5
    .venv/bin/python benchmarks/vae_speed.py --objectives vae --repeats 3 --bfloat16   # the ELBO only: ~1 min
    GENLEARN_VAE_STEP=autograd .venv/bin/python benchmarks/vae_speed.py ...   # genlearn's gradient by autograd
    .venv/bin/python benchmarks/vae_speed.py --objectives iwae --flush-denormal   # both sides flush denormals

On Intel CPUs the IWAE objective's negligible importance weights make denormal floats in pythae's products, which
run ~100x slower there (its epochs fell from 126 to 87 s over three pairs on a Xeon as its weights concentrated);
genlearn counts weights below max(2^-64, 2^-24 / k) as 0 (genlearn.numerics.negligible_weight) and leaves their
samples out of its decoder's backward pass. --flush-denormal times both sides without that slow path.

Data: the static binarized MNIST (`genlearn.load_dataset("binarized-mnist")`), or, when it is not found (and with
--smoke), rows of independent Bernoulli(0.13) pixels of the same shape."""
from __future__ import annotations

import json
import logging
import math
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import common
import genlearn
from genlearn import DataError, Dataset
from genlearn.learning.trainer import TrainConfig, Trainer
from genlearn.models import vae_step

LATENT, HIDDEN, BATCH, LR = 50, (200, 200), 100, 1e-3
TARGET_RATIO = 2.0


def cpu_model() -> str | None:
    """lscpu's 'Model name' line."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def load(data_dir, smoke: bool):
    """(train rows as float32 0/1, description)."""
    if not smoke:
        try:
            ds = genlearn.load_dataset("binarized-mnist", data_dir)
            return ds.train.float(), ds.settings.get("source", "binarized-mnist")
        except DataError as exc:
            print(f"binarized MNIST not found ({str(exc)[:80]}...): timing on random data", flush=True)
    g = torch.Generator().manual_seed(0)
    rows = 500 if smoke else 50_000
    return torch.bernoulli(torch.full((rows, 784), 0.13), generator=g), "random Bernoulli(0.13) data"


# -- genlearn ------------------------------------------------------------------------------------------------------
def genlearn_trainer(train: torch.Tensor, k: int, precision: str = "full"):
    ds = Dataset(name="binarized-mnist", kind="binary", train=train, valid=None, test=None, image_shape=(28, 28))
    model, rule = common.model_and_rule("vae", ds, latent=str(LATENT), hidden=",".join(map(str, HIDDEN)),
                                        activation="tanh", iw_samples=k, init_seed=0, matmul_precision=precision)
    cfg = TrainConfig(epochs=1, optimizer="adam", lr=LR, batch_size=BATCH, seed=0, progress=False)
    return model, Trainer(model, ds, cfg, rule=rule)


# -- pythae --------------------------------------------------------------------------------------------------------
def pythae_version() -> str | None:
    try:
        import pythae  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import version

    return version("pythae")


def pythae_trainer(train: torch.Tensor, k: int, out_dir: str):
    """(model, BaseTrainer) of a pythae VAE (k = 1) or IWAE (k > 1) of the same architecture, ready for train_step."""
    from pythae.data.datasets import BaseDataset
    from pythae.models import IWAE, VAE, IWAEConfig, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import MetricConsolePrinterCallback, ProgressBarCallback

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("pythae")]:
        logging.getLogger(name).setLevel(logging.WARNING)  # its trainer's module logger is set to INFO

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        return torch.nn.Sequential(*layers)

    class Encoder(BaseEncoder):
        def __init__(self):
            BaseEncoder.__init__(self)
            self.body = mlp([784, *HIDDEN])
            self.head = torch.nn.Linear(HIDDEN[-1], 2 * LATENT)

        def forward(self, x):
            mu, log_var = self.head(self.body(x.reshape(x.shape[0], -1))).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        """Bernoulli means: pythae's "bce" loss is F.binary_cross_entropy on probabilities."""

        def __init__(self):
            BaseDecoder.__init__(self)
            self.body = mlp([LATENT, *reversed(HIDDEN)])
            self.out = torch.nn.Linear(HIDDEN[0], 784)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.out(self.body(z))))

    torch.manual_seed(0)
    if k == 1:
        model = VAE(VAEConfig(input_dim=(784,), latent_dim=LATENT, reconstruction_loss="bce"),
                    encoder=Encoder(), decoder=Decoder())
    else:
        model = IWAE(IWAEConfig(input_dim=(784,), latent_dim=LATENT, reconstruction_loss="bce", number_samples=k),
                     encoder=Encoder(), decoder=Decoder())
    with torch.no_grad():  # genlearn's init_from_data: output biases at the logits of the pixel means
        p = train.mean(0).clamp(1e-3, 1 - 1e-3)
        model.decoder.out.bias.copy_(torch.log(p) - torch.log1p(-p))
    cfg = BaseTrainerConfig(output_dir=out_dir, per_device_train_batch_size=BATCH, num_epochs=1, learning_rate=LR,
                            optimizer_cls="Adam", steps_saving=None, steps_predict=None,
                            train_dataloader_num_workers=0, no_cuda=True, amp=False, seed=0)
    trainer = BaseTrainer(model, BaseDataset(train, torch.zeros(train.shape[0])), None, cfg)
    trainer.prepare_training()
    trainer.callback_handler.callbacks = [cb for cb in trainer.callback_handler.callbacks if not isinstance(
        cb, (ProgressBarCallback, MetricConsolePrinterCallback))]
    return model, trainer


@torch.no_grad()
def pythae_log_weights(model, x: torch.Tensor, k: int, generator) -> torch.Tensor:
    """(k, B) log P(x|z) + log p(z) - log q(z|x) of a pythae VAE/IWAE, z ~ q(z|x), nats (genlearn's formula)."""
    from genlearn.models.vae import gaussian_log_density, standard_normal_log_density

    enc = model.encoder(x)
    mu, log_var = enc.embedding, enc.log_covariance
    z = mu + torch.exp(0.5 * log_var) * torch.randn((k, *mu.shape), generator=generator)
    logits = model.decoder.out(model.decoder.body(z))
    log_lik = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
    return log_lik + standard_normal_log_density(z) - gaussian_log_density(z, mu, log_var)


@torch.no_grad()
def bounds(log_weights, x: torch.Tensor, k: int, seed: int = 1) -> dict:
    """-L_1 and -L_k (nats per example) on the rows x, in batches of 100, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    elbo, iwae = 0.0, 0.0
    for s in range(0, x.shape[0], 100):
        lw = log_weights(x[s : s + 100], k, g).double()
        elbo += float(lw.mean(0).sum())
        iwae += float((torch.logsumexp(lw, 0) - math.log(k)).sum())
    return {"neg_elbo": -elbo / x.shape[0], f"neg_iwae_{k}": -iwae / x.shape[0]}


def epoch_gemm_flops(rows: int, k: int, n: int = 784) -> float:
    """The matrix-product FLOPs of one epoch of this network trained densely (what pythae runs), 2 m k n per product:
    per example the encoder forward F_e, its weight gradients F_e and its input gradients F_e - 2 n H1 (none for
    the data), and for each of the k samples the decoder forward, weight and input gradients 3 F_d (dz is needed),
    F_e = 2 (n H1 + H1 H2 + H2 2D), F_d = 2 (D H2 + H2 H1 + H1 n)."""
    h1, h2 = HIDDEN
    f_enc = 2.0 * (n * h1 + h1 * h2 + h2 * 2 * LATENT)
    f_dec = 2.0 * (LATENT * h2 + h2 * h1 + h1 * n)
    return rows * (3 * f_enc - 2.0 * n * h1 + 3 * k * f_dec)


def timed(fn) -> tuple[float, float]:
    t0 = time.perf_counter()
    loss = fn()
    return time.perf_counter() - t0, float(loss)


def main(argv=None):
    p = common.parser(__file__, __doc__, threads=1)
    p.add_argument("--repeats", type=int, default=2, help="interleaved (genlearn, pythae) epoch pairs per objective")
    p.add_argument("--iw-samples", type=int, default=50, help="k of the IWAE objective")
    p.add_argument("--check-rows", type=int, default=1000, help="rows on which both trained models are evaluated")
    p.add_argument("--objectives", default="vae,iwae", help="which objectives to time: vae, iwae or both "
                   "(comma-separated); an IWAE-50 pair takes ~7 min on one core")
    p.add_argument("--bfloat16", action="store_true", help="also time genlearn with --matmul-precision bfloat16 "
                   "(bfloat16 matrix products in training; faster only on CPUs with AVX512-BF16 or AMX) in the same "
                   "interleaved pairs; pythae stays float32")
    p.add_argument("--flush-denormal", action="store_true", help="both sides with denormal floats flushed to 0 "
                   "(torch.set_flush_denormal; the main thread's, so meant for --threads 1): the arithmetic alone, "
                   "without the x86 slow path that IWAE's negligible importance weights send pythae's products to")
    args = p.parse_args(argv)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        p.error("--flush-denormal: this CPU has no flush-to-zero mode")
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if not objectives or set(objectives) - {"vae", "iwae"}:
        p.error(f"--objectives takes vae, iwae or vae,iwae, got {args.objectives!r}")
    common.set_threads(args.threads)
    if args.smoke:
        args.repeats, args.iw_samples, args.check_rows = 1, 5, 100
    train, source = load(args.data_dir, args.smoke)
    version = pythae_version()
    res = {"settings": {**common.machine_record(), "cpu_model": cpu_model(), "data": source,
                        "rows": int(train.shape[0]), "dtype": "float32", "batch_size": BATCH, "optimizer": "adam",
                        "lr": LR, "architecture": f"784-{HIDDEN[0]}-{HIDDEN[1]}-(2x{LATENT}) tanh encoder, "
                        f"{LATENT}-{HIDDEN[1]}-{HIDDEN[0]}-784 tanh decoder, Bernoulli logits, N(0, I) prior",
                        "iw_samples": args.iw_samples, "repeats": args.repeats, "objectives": objectives,
                        "pythae": version,
                        "genlearn_bfloat16": args.bfloat16, "flush_denormal": args.flush_denormal,
                        "pythae_trainer": "BaseTrainer.train_step after prepare_training(); no eval set, "
                        "steps_saving=None, steps_predict=None, 0 data-loader workers, amp off, no_cuda; "
                        "ProgressBarCallback and MetricConsolePrinterCallback removed, pythae logger at WARNING; "
                        "train()'s per-epoch deepcopy of the best model and the final save not timed",
                        "genlearn_trainer": ("Trainer.train_epoch, rule elbo (iw_samples k), LeanAdam "
                                             "(torch.optim.Adam's fused kernel called directly)"),
                        "genlearn_gradient": ("hand-written backward pass (genlearn.models.vae_step)"
                                              if vae_step.enabled() else "autograd (GENLEARN_VAE_STEP=autograd)"),
                        "target_ratio_pythae_to_genlearn": TARGET_RATIO}}
    # the roofline: the epoch's dense product FLOPs at this machine's float32 GEMM peak, measured on the step's shapes
    gemm, peak = common.gemm_peak({"batch x 784 x 200": (BATCH, 784, HIDDEN[0]),
                                   "k batch x 200 x 784": (BATCH * args.iw_samples, HIDDEN[0], 784)},
                                  seconds=0.2 if args.smoke else 1.0)
    res["settings"].update({"gemm_gflops": gemm, "gemm_peak_gflops": peak})
    if version is None:
        print("pythae is not installed (make bench-deps): the peer is skipped, genlearn alone is timed", flush=True)
    print("settings", json.dumps(res["settings"]), flush=True)

    # timing one objective keeps the other's last record in the results file (merged one level deep)
    keep = 1 if len(objectives) < 2 else 0
    check_x = train[: args.check_rows]
    with tempfile.TemporaryDirectory(prefix="vae_speed_pythae_") as out_dir:
        for key, k in [(o, 1 if o == "vae" else args.iw_samples) for o in objectives]:
            label = "VAE (ELBO)" if k == 1 else f"IWAE-{k}"
            g_model, g_trainer = genlearn_trainer(train, k)
            b_trainer = genlearn_trainer(train, k, "bfloat16")[1] if args.bfloat16 else None
            p_model, p_trainer = (None, None) if version is None else pythae_trainer(train, k, out_dir)
            rec = {"genlearn_seconds": [], "genlearn_loss_per_example": [], "pythae_seconds": [],
                   "pythae_loss_per_example": [], "ratios_per_pair": []}
            if b_trainer is not None:
                rec.update({"genlearn_bfloat16_seconds": [], "genlearn_bfloat16_loss_per_example": []})
            for r in range(args.repeats):
                secs, loss = timed(g_trainer.train_epoch)
                rec["genlearn_seconds"].append(secs)
                rec["genlearn_loss_per_example"].append(loss)
                line = f"{label} pair {r + 1}/{args.repeats}: genlearn {secs:.2f} s (loss {loss:.2f} nats/example)"
                if b_trainer is not None:
                    b_secs, b_loss = timed(b_trainer.train_epoch)
                    rec["genlearn_bfloat16_seconds"].append(b_secs)
                    rec["genlearn_bfloat16_loss_per_example"].append(b_loss)
                    line += f", genlearn bfloat16 {b_secs:.2f} s (loss {b_loss:.2f})"
                if p_trainer is not None:
                    p_secs, p_loss = timed(lambda: p_trainer.train_step(r + 1))
                    rec["pythae_seconds"].append(p_secs)
                    rec["pythae_loss_per_example"].append(p_loss)
                    rec["ratios_per_pair"].append(p_secs / secs)
                    line += f", pythae {p_secs:.2f} s (loss {p_loss:.2f}), ratio {p_secs / secs:.2f}"
                print(line, flush=True)
            rec["genlearn_seconds_median"] = statistics.median(rec["genlearn_seconds"])
            rec["epoch_gemm_flops"] = epoch_gemm_flops(train.shape[0], k)
            rec["roofline_seconds"] = rec["epoch_gemm_flops"] / (peak * 1e9)
            rec["roofline_fraction"] = {"genlearn": rec["roofline_seconds"] / rec["genlearn_seconds_median"]}
            rec["check_after_training"] = {"rows": int(check_x.shape[0]), "genlearn": bounds(
                lambda x, s, gen: g_model.log_weights(x, s, gen), check_x, k if k > 1 else args.iw_samples)}
            if p_trainer is not None:
                rec["pythae_seconds_median"] = statistics.median(rec["pythae_seconds"])
                rec["ratio_pythae_to_genlearn"] = rec["pythae_seconds_median"] / rec["genlearn_seconds_median"]
                rec["target_met"] = rec["ratio_pythae_to_genlearn"] >= TARGET_RATIO
                rec["roofline_fraction"]["pythae"] = rec["roofline_seconds"] / rec["pythae_seconds_median"]
                # the ratio an epoch at the roofline would reach (genlearn's sums over the 0/1 input can pass it a
                # little: they replace two of the encoder's dense products)
                rec["ratio_at_roofline"] = rec["pythae_seconds_median"] / rec["roofline_seconds"]
                if b_trainer is not None:
                    rec["genlearn_bfloat16_seconds_median"] = statistics.median(rec["genlearn_bfloat16_seconds"])
                    rec["ratio_pythae_to_genlearn_bfloat16"] = (rec["pythae_seconds_median"]
                                                                / rec["genlearn_bfloat16_seconds_median"])
                    rec["target_met_bfloat16"] = rec["ratio_pythae_to_genlearn_bfloat16"] >= TARGET_RATIO
                    print(f"{label}: genlearn bfloat16 {rec['genlearn_bfloat16_seconds_median']:.2f} s; pythae / "
                          f"genlearn bfloat16 = {rec['ratio_pythae_to_genlearn_bfloat16']:.2f}", flush=True)
                rec["check_after_training"]["pythae"] = bounds(
                    lambda x, s, gen: pythae_log_weights(p_model, x, s, gen), check_x,
                    k if k > 1 else args.iw_samples)
                print(f"{label}: median seconds per epoch genlearn {rec['genlearn_seconds_median']:.2f}, pythae "
                      f"{rec['pythae_seconds_median']:.2f}; pythae / genlearn = {rec['ratio_pythae_to_genlearn']:.2f}"
                      f" (target >= {TARGET_RATIO})", flush=True)
                print(f"{label}: roofline {rec['roofline_seconds']:.2f} s ({rec['epoch_gemm_flops'] / 1e12:.3f} TFLOP "
                      f"at {peak:.1f} GFLOP/s): genlearn at {rec['roofline_fraction']['genlearn']:.2f} of it, pythae "
                      f"at {rec['roofline_fraction']['pythae']:.2f}; an epoch at the roofline would be "
                      f"{rec['ratio_at_roofline']:.2f}x pythae's", flush=True)
            else:
                print(f"{label}: median seconds per epoch genlearn {rec['genlearn_seconds_median']:.2f} "
                      "(pythae skipped)", flush=True)
            rec["loss_note"] = ("genlearn: mean -L_k over the epoch (nats/example); pythae: its epoch loss, the mean "
                                "of batch means (nats/example): " + ("BCE + analytic KL = -ELBO" if k == 1 else
                                "the IWAE gradient surrogate -sum_j w~_j log w_j, <= -L_k by log k - H(w~)"))
            print(f"{label}: after training, on {check_x.shape[0]} training rows (same estimator, nats/example): "
                  + json.dumps(rec["check_after_training"]), flush=True)
            rec["settings"] = res["settings"]  # each objective's record carries the settings it was timed with
            res[key] = rec
            common.write_results(args.out, res, merge_depth=keep)
    common.write_results(args.out, res, merge_depth=keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
