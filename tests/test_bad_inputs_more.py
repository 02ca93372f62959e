"""More bad inputs (issue 16), table-driven, beyond tests/test_bad_inputs.py: data files (byte-order marks,
comment-only, ragged, header rows, truncated gzip, npz without split keys, object/string/4-D arrays, a folder,
a FIFO or /dev/zero that must not hang), data specs, family options that another option makes ineffective,
optimizer flags beside rules without optimizer (EM, closed form), --resume with fewer --epochs, recipes, eval,
sample, kl, tune, report, demo, and the Python API (fit, load_run, kl_divergence, load_dataset, the scikit-learn
wrappers).

Every CLI case: exit code 2 (returned, or argparse's SystemExit), exactly one non-empty stderr line, starting with
`genlearn: error:` and holding the words that give the message its meaning, no traceback, no --out left behind,
and the shared fixture folder (data files, a fitted run) unchanged. Every API case: the named exception (a
ValueError/TypeError subclass; RunError, also a ValueError, where a run folder is at fault) with the
words in its message, and no file written. Beside them, the good inputs the new refusals must keep accepting."""
from __future__ import annotations

import gzip
import os
import signal

import numpy as np
import pytest
import torch

import genlearn
from genlearn import validate
from genlearn.cli import main
from genlearn.errors import ConfigError, DataError, GenlearnError, RunError

BARS = "bars-and-stripes:n=20"  # 3x3 binary images, 20 rows: every fit case below is refused before training


@pytest.fixture(autouse=True)
def _sixteen_gib(monkeypatch):
    """Memory estimates compare with the machine's memory: pin it (16 GiB)."""
    monkeypatch.setattr(validate, "machine_memory", lambda: 16 * 2**30)


@pytest.fixture(autouse=True)
def _no_hang():
    """A case that blocks (reading a FIFO or /dev/zero) fails after 60 s instead of hanging the suite."""
    def _alarm(signum, frame):
        raise TimeoutError("the command hung on its input")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _toml(*lines) -> str:
    return "\n".join(lines) + "\n"


RECIPE_HEAD = ('summary = "x"', 'model = "bernoulli"', 'data = "coin:n=40"')


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small data files, good and bad, recipe and search-space files, a FIFO, and a run fitted for 2 epochs
    (product-bernoulli on 40 rows of 16 binary features)."""
    d = tmp_path_factory.mktemp("more")
    rng = np.random.default_rng(0)
    binary = rng.integers(0, 2, size=(40, 16))
    np.savetxt(d / "good.csv", binary, fmt="%d", delimiter=",")
    text = (d / "good.csv").read_bytes()
    (d / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text)  # UTF-8 BOM, as spreadsheet programs write
    (d / "bom16.csv").write_bytes("0,1\n1,0\n".encode("utf-16"))  # UTF-16 with its BOM
    (d / "comments.csv").write_text("# exported by a tool\n# no rows\n")
    (d / "ragged-long.csv").write_text("0,1,0,1\n1,0,1\n0,0,1\n")  # the first row is the long one
    (d / "header-tab.txt").write_text("x1\tx2\tx3\n0\t1\t0\n1\t0\t1\n")
    (d / "mixed.csv").write_text("0,1,0\n1\t0\t1\n")  # commas, then tabs
    (d / "tabs.txt").write_text("".join("\t".join(map(str, r)) + "\n" for r in binary))
    packed = gzip.compress(text)
    (d / "trunc.csv.gz").write_bytes(packed[: len(packed) // 2])
    np.savez(d / "nokeys.npz", a=binary, c=binary)
    np.savez(d / "emptyz.npz")
    np.save(d / "obj.npy", np.array([[0, 1], [1, "x"]], dtype=object), allow_pickle=True)
    np.save(d / "four-d.npy", rng.integers(0, 2, size=(10, 2, 2, 2)))
    np.save(d / "strings.npy", np.array([["0", "1"], ["1", "0"]]))
    (d / "emptydir").mkdir()
    os.mkfifo(d / "fifo")  # opening it for reading would block until a writer comes
    (d / "existing.csv").write_text("0,1\n")
    recipes = {
        "unknown-key": _toml(*RECIPE_HEAD, "colour = 1"),
        "no-model": _toml('summary = "x"', 'data = "coin:n=40"'),
        "model-int": _toml('summary = "x"', "model = 3", 'data = "coin:n=40"'),
        "threads0": _toml(*RECIPE_HEAD, "threads = 0"),
        "train-str": _toml(*RECIPE_HEAD, 'train = "fast"'),
        "broken": _toml('summary = "x"', 'model = "bernoulli'),
        "epochs0": _toml(*RECIPE_HEAD, "[train]", "epochs = 0"),
        "em-lr": _toml('summary = "x"', 'model = "mixture"', f'data = "{BARS}"', "[model_options]", "em = true",
                       "[train]", "lr = 0.1"),
        "options-list": _toml(*RECIPE_HEAD, "model_options = [1, 2]"),
    }
    for name, body in recipes.items():
        (d / f"{name}.toml").write_text(body)
    (d / "space-bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    (d / "space-swapped.toml").write_text(_toml("[nade]", "hidden = {low = 16, high = 8}"))
    run = d / "run"
    assert main(["fit", "product-bernoulli", "--data", str(d / "good.csv"), "--epochs", "2", "--out", str(run),
                 "--quiet"]) == 0
    return d


def _snapshot(folder):
    """{relative path: (size, mtime_ns)} of every file under `folder`: a refused command changes none of them."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


# (id, argv with {d} = the fixture folder, {run} = the fitted run, {out} = a fresh output path; words of the error).
# A `fit` without --out/--resume gets `--out {out} --quiet`.
CASES = [
    # -- data files ---------------------------------------------------------------------------------------------
    ("file-bom-utf8", "fit product-bernoulli --data {d}/bom.csv", "starts with a byte-order mark"),
    ("file-bom-utf16", "fit product-bernoulli --data {d}/bom16.csv", "byte-order mark"),
    ("file-comments-only", "fit product-bernoulli --data {d}/comments.csv", "holds only comment lines"),
    ("file-ragged-first-long", "fit product-bernoulli --data {d}/ragged-long.csv", "row 2 has 3 values, expected 4"),
    ("file-header-tabs", "fit product-bernoulli --data {d}/header-tab.txt", "holds 'x1', which is not a number"),
    ("file-mixed-delimiters", "fit product-bernoulli --data {d}/mixed.csv", "row 2 has 1 values, expected 3"),
    ("file-gzip-truncated", "fit product-bernoulli --data {d}/trunc.csv.gz", "corrupt or truncated gzip"),
    ("file-npz-no-split-keys", "fit product-bernoulli --data {d}/nokeys.npz", "holds arrays a, c; expected keys"),
    ("file-npz-empty", "fit product-bernoulli --data {d}/emptyz.npz", "holds arrays (none)"),
    ("file-npy-object", "fit product-bernoulli --data {d}/obj.npy", "object arrays are refused"),
    ("file-npy-strings", "fit product-bernoulli --data {d}/strings.npy", "numeric arrays (bool, int, float)"),
    ("file-npy-4d", "fit product-bernoulli --data {d}/four-d.npy", "has shape (10, 2, 2, 2)"),
    ("file-empty-folder", "fit product-bernoulli --data {d}/emptydir", "holds neither .png images nor split"),
    ("file-fifo", "fit product-bernoulli --data {d}/fifo", "fifo is not a file"),
    ("file-dev-zero", "fit product-bernoulli --data /dev/zero", "/dev/zero is not a file"),
    ("file-dev-null", "fit product-bernoulli --data /dev/null", "/dev/null is not a file"),
    ("eval-data-bom", "eval {run} --data {d}/bom.csv", "byte-order mark"),
    ("tune-data-bom", "tune --data {d}/bom.csv --families product-bernoulli --out {out} --quiet", "byte-order mark"),
    # -- data specs ---------------------------------------------------------------------------------------------
    ("spec-empty-name", "fit bernoulli --data :n=3", "no data set name before ':'"),
    ("spec-duplicate-setting", "fit bernoulli --data coin:n=10,n=20", "data setting n is given twice"),
    ("spec-real-for-binary", "fit bernoulli --data gaussian:n=40", "needs binary data, but 'gaussian' is real"),
    ("spec-real-for-rbm", "fit rbm --data gaussian:n=40,dim=3", "model 'rbm' needs binary data"),
    ("spec-binary-for-categorical", f"fit categorical --data {BARS}", "needs categorical data"),
    # -- family options another option makes ineffective (DEPENDENT_OPTIONS) -------------------------------------
    ("dep-rbm-k-exact", f"fit rbm --data {BARS} --gradient exact --k 3", "--k applies to CD-k / PCD-k"),
    ("dep-rbm-chains-cd", f"fit rbm --data {BARS} --n-chains 50", "--n-chains applies to PCD"),
    ("dep-boltzmann-mf", f"fit boltzmann --data {BARS} --mf-iterations 5", "--mf-iterations applies to"),
    ("dep-boltzmann-k", f"fit boltzmann --data {BARS} --k 3", "--k applies to --gradient gibbs or pcd"),
    ("dep-mixture-smoothing", f"fit mixture --data {BARS} --smoothing 1", "--smoothing applies to EM"),
    ("dep-fvsbn-init-seed", f"fit fvsbn --data {BARS} --init-seed 3", "--init-seed applies to --order random"),
    ("dep-vae-pseudo", f"fit vae --data {BARS} --pseudo-inputs 10", "--pseudo-inputs applies to --prior vampprior"),
    ("dep-vae-kl-iwae", f"fit vae --data {BARS} --iw-samples 5 --kl-estimator sampled", "--kl-estimator applies"),
    # two layers or a VampPrior sample the KL whatever --kl-estimator says: it used to be accepted and recorded
    ("dep-vae-kl-vampprior", f"fit vae --data {BARS} --prior vampprior --pseudo-inputs 5 --kl-estimator closed-form",
     "of one latent layer with the standard prior"),
    ("dep-vae-kl-two-layers", f"fit vae --data {BARS} --latent 2,2 --kl-estimator closed-form",
     "two layers or a VampPrior sample it"),
    ("dep-gan-temperature", f"fit gan --data {BARS} --temperature 0.3", "--temperature applies to --estimator"),
    ("dep-made-mask-sampling", f"fit made --data {BARS} --mask-sampling cycle", "--mask-sampling applies to several"),
    ("dep-nade-precision", f"fit nade --data {BARS} --matmul-precision bfloat16", "--matmul-precision applies"),
    ("dep-rbm-init-seed", f"fit rbm --data {BARS} --init-seed -1", "--init-seed must be an integer in [0, 2^63 - 1]"),
    # -- optimizer flags beside a rule without optimizer steps (OPTIMIZER_FLAGS) ---------------------------------
    ("opt-em-lr", f"fit mixture --data {BARS} --em --lr 0.1", "--lr applies to gradient learning; the em rule"),
    ("opt-closed-form-optimizer", f"fit product-bernoulli --data {BARS} --closed-form --optimizer adam",
     "--optimizer applies to gradient learning; the closed-form rule"),
    ("opt-closed-form-schedule", "fit bernoulli --data coin:n=40 --closed-form --schedule exponential",
     "--schedule applies to gradient learning"),
    ("opt-em-weight-decay", f"fit mixture --data {BARS} --em --weight-decay 0.01", "--weight-decay applies"),
    # -- AIS options where log Z is exact (they were accepted and recorded, and changed nothing) ---------------------
    ("ais-steps-exact-auto", f"fit rbm --data {BARS} --hidden 3 --ais-steps 100",
     "--ais-steps apply to AIS; this rbm's log Z is computed by enumeration (auto: 2^3 states"),
    ("ais-chains-exact", f"fit boltzmann --data {BARS} --partition exact --ais-chains 50",
     "--ais-chains apply to AIS; this boltzmann's log Z is computed by --partition exact"),
    ("gan-quadrature-ais", "fit gan --data bars-and-stripes:n=20 --latent 2 --ais-steps 10",
     "--ais-steps set(s) AIS over z; this gan's likelihood is computed by quadrature over its 2 latent"),
    ("gan-quadrature-partition", "fit gan --data bars-and-stripes:n=20 --latent 1 --partition ais",
     "--partition ais set(s) AIS over z"),
    ("gan-no-encoder-iw", "fit gan --data bars-and-stripes:n=20 --latent 3 --eval-iw-samples 10",
     "set the importance samples of q(z|x); gan has no encoder"),
    # -- the flags of iterative fits beside the one-pass closed form (it repeated the same estimate) ---------------
    ("one-pass-epochs", f"fit product-bernoulli --data {BARS} --closed-form --epochs 5",
     "--epochs applies to iterative fits; the closed-form estimate is final after one pass"),
    ("one-pass-patience", "fit bernoulli --data coin:n=40 --closed-form --patience 2",
     "--patience applies to iterative"),
    ("one-pass-rel-tol", f"fit product-bernoulli --data {BARS} --closed-form --rel-tol 0.01", "--rel-tol applies"),
    ("one-pass-eval-every", f"fit product-bernoulli --data {BARS} --closed-form --eval-every 2",
     "--eval-every applies to iterative fits"),
    # -- other family options -------------------------------------------------------------------------------------
    ("fam-mixture-components", f"fit mixture --data {BARS} --components 0", "--components must be >= 1"),
    ("fam-vae-latent", f"fit vae --data {BARS} --latent 0", "--latent must be >= 1"),
    ("fam-made-hidden", f"fit made --data {BARS} --hidden 0", "--hidden must be >= 1"),
    ("fam-nade-orderings", f"fit nade --data {BARS} --orderings 0", "--orderings must be >= 1"),
    ("fam-made-masks", f"fit made --data {BARS} --masks 0", "--masks must be >= 1"),
    ("fam-gan-divergence", f"fit gan --data {BARS} --divergence bogus", "--divergence must be one of kl"),
    ("fam-vae-prior", f"fit vae --data {BARS} --prior bogus", "--prior must be one of standard, vampprior"),
    ("fam-gaussian-covariance", "fit gaussian --data gaussian:n=40 --covariance bogus", "--covariance must be one"),
    ("fam-threads-negative", "fit bernoulli --data coin:n=40 --threads -2", "--threads must be a positive integer"),
    ("fam-lr-text", "fit bernoulli --data coin:n=40 --lr abc", "--lr must be a finite number, got 'abc'"),
    ("fam-no-model", "fit --data coin:n=40", "say which model to fit"),
    # -- run folders: --out and --resume ---------------------------------------------------------------------------
    ("out-is-file", "fit product-bernoulli --data {d}/good.csv --out {d}/existing.csv --quiet", "is a file"),
    ("out-under-file", "fit product-bernoulli --data {d}/good.csv --out {d}/existing.csv/sub --quiet",
     "is a file, not a folder"),
    ("out-is-run", "fit product-bernoulli --data {d}/good.csv --out {run} --quiet", "exists and is not empty"),
    ("resume-fewer-epochs", "fit --resume {run} --epochs 1", "--epochs 1 is fewer than the 2 epochs"),
    ("resume-complete", "fit --resume {run}", "is complete (2 of 2 epochs): nothing to resume"),
    ("resume-is-file", "fit --resume {d}/existing.csv", "existing.csv is a file; give the folder of the run"),
    # -- recipes ----------------------------------------------------------------------------------------------------
    ("recipe-unknown", "fit --recipe nosuch", "unknown recipe 'nosuch'"),
    ("recipe-missing-file", "fit --recipe {d}/nosuch.toml", "no recipe file"),
    ("recipe-unknown-key", "fit --recipe {d}/unknown-key.toml", "has unknown key(s) colour"),
    ("recipe-no-model", "fit --recipe {d}/no-model.toml", "has no model"),
    ("recipe-model-int", "fit --recipe {d}/model-int.toml", "model must be a string, got 3"),
    ("recipe-threads-zero", "fit --recipe {d}/threads0.toml", "threads must be a positive integer, got 0"),
    ("recipe-train-string", "fit --recipe {d}/train-str.toml", "train must be a table [train]"),
    ("recipe-options-list", "fit --recipe {d}/options-list.toml", "model_options must be a table"),
    ("recipe-broken-toml", "fit --recipe {d}/broken.toml", "is not valid TOML"),
    ("recipe-epochs-zero", "fit --recipe {d}/epochs0.toml", "--epochs must be >= 1"),
    ("recipe-em-lr", "fit --recipe {d}/em-lr.toml", "--lr applies to gradient learning; the em rule"),
    ("recipe-override-lr", "fit --recipe product-bernoulli --data coin:n=40 --lr 0.1", "the closed-form rule"),
    # -- eval -------------------------------------------------------------------------------------------------------
    ("eval-ais-steps-exact", "eval {run} --ais-steps 10", "the likelihood of product-bernoulli is exact"),
    ("eval-iw-exact", "eval {run} --iw-samples 5", "apply to energy and latent-variable models"),
    ("eval-split-choice", "eval {run} --split bogus", "argument --split: invalid choice"),
    ("eval-file-not-run", "eval {d}/good.csv", "good.csv: it is a file, not a run folder"),
    ("eval-empty-folder", "eval {d}/emptydir", "holds no checkpoint"),
    # -- sample -----------------------------------------------------------------------------------------------------
    ("sample-n-text", "sample {run} -n abc", "argument -n: invalid int value"),
    ("sample-file-not-run", "sample {d}/good.csv", "no run folder at"),
    ("sample-empty-folder", "sample {d}/emptydir", "holds no checkpoint"),
    ("sample-out-under-file", "sample {run} --out {d}/existing.csv/x.csv", "existing.csv is a file, not a folder"),
    ("sample-steps-zero", "sample {run} --steps 0", "--steps must be a positive number"),
    # -- kl ---------------------------------------------------------------------------------------------------------
    ("kl-dash-value", "kl --p -0.5,1.5 --q 0.5,0.5", "a value that starts with '-' is written --p=VALUE"),
    ("kl-negative", "kl --p=-0.5,1.5 --q 0.5,0.5", "p must hold finite non-negative probabilities"),
    ("kl-nan", "kl --p 0.5,nan --q 0.5,0.5", "non-negative probabilities, got [0.5, nan]"),
    ("kl-data-file", "kl --p {run} --q {d}/good.csv", "neither a run folder nor comma-separated"),
    ("kl-empty-folder", "kl --p {d}/emptydir --q {run}", "holds no checkpoint"),
    ("kl-missing-q", "kl --p 0.5,0.5", "the following arguments are required: --q"),
    # -- tune (refused before any trial runs) -------------------------------------------------------------------------
    ("tune-unknown-family", "tune --data coin:n=40 --families nosuch --out {out}", "unknown model 'nosuch'"),
    ("tune-no-families", f"tune --data {BARS} --out {{out}}", "say which families to search"),
    ("tune-trials-zero", f"tune --data {BARS} --families product-bernoulli --trials 0 --out {{out}}",
     "--trials must be a positive integer"),
    ("tune-seed-negative", f"tune --data {BARS} --families product-bernoulli --seed -1 --out {{out}}",
     "--seed of the TPE sampler must be an integer in [0, 2^32 - 1]"),
    ("tune-seed-2-32", f"tune --data {BARS} --families product-bernoulli --seed 4294967296 --out {{out}}",
     "got 4294967296"),
    ("tune-space-binary", f"tune --data {BARS} --families nade --space {{d}}/space-bin.toml --out {{out}}",
     "is not a UTF-8 text file"),
    ("tune-space-missing", f"tune --data {BARS} --families nade --space {{d}}/none.toml --out {{out}}",
     "no search-space file"),
    ("tune-space-swapped", f"tune --data {BARS} --families nade --space {{d}}/space-swapped.toml --out {{out}}",
     "hidden has low 16 > high 8"),
    ("tune-out-file", f"tune --data {BARS} --families product-bernoulli --out {{d}}/existing.csv",
     "is a file; give a folder"),
    ("tune-storage", f"tune --data {BARS} --families product-bernoulli --storage bogus://x --out {{out}}",
     "cannot open the study storage bogus://x"),
    ("tune-trial-minutes", f"tune --data {BARS} --families product-bernoulli --trial-minutes 0 --out {{out}}",
     "--trial-minutes must be a positive number"),
    ("tune-budget", f"tune --data {BARS} --families product-bernoulli --budget-minutes -1 --out {{out}}",
     "--budget-minutes must be a positive number"),
    ("tune-family-twice", f"tune --data {BARS} --families nade,nade --out {{out}}", "lists a family twice"),
    ("tune-real-family-binary", f"tune --data {BARS} --families gaussian --out {{out}}", "needs real data"),
    ("tune-binary-family-real", "tune --data gaussian:n=40 --families nade --out {out}", "needs binary data"),
    ("tune-family-shape", f"tune --data {BARS} --families product-bernoulli,bernoulli --out {{out}}",
     "'bernoulli' cannot be fitted"),
    ("tune-preset", f"tune --data {BARS} --preset nope --out {{out}}", "argument --preset: invalid choice"),
    # -- report -----------------------------------------------------------------------------------------------------
    ("report-not-html", "report {run} --out {out}.txt", "a report is one HTML page"),
    ("report-parent-file", "report {run} --out {d}/existing.csv/r.html", "existing.csv is a file, not a folder"),
    ("report-run-twice", "report {run} {run} --out {out}.html", "is given twice; give each run folder once"),
    ("report-run-twice-aliased", "report {run} {d}/../{dname}/run --out {out}.html", "is given twice (also as"),
    ("report-empty-folder", "report {d}/emptydir --out {out}.html", "no run folder could be reported"),
    ("report-file-not-run", "report {d}/good.csv --out {out}.html", "is not a folder; give a run folder"),
    ("report-out-folder", "report {run} --out {d}", "is a folder; give a file name"),
    # -- demo and the listing commands -------------------------------------------------------------------------------
    ("demo-out-file", "demo --out {d}/existing.csv", "is a file, not a folder"),
    ("demo-out-under-file", "demo --out {d}/existing.csv/sub", "existing.csv is a file, not a folder"),
    ("recipes-extra", "recipes extra", "unrecognized arguments: extra"),
    ("datasets-extra", "datasets extra", "unrecognized arguments: extra"),
    ("models-extra", "models extra", "unrecognized arguments: extra"),
]


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_refuses(argv, words, files, tmp_path, refused):
    out = tmp_path / "out"
    text = argv.format(d=files, dname=files.name, run=files / "run", out=out)
    if text.startswith("fit") and "--out" not in text and "--resume" not in text:
        text += f" --out {out} --quiet"
    before = _snapshot(files)
    refused(text.split(), words)
    assert not list(tmp_path.glob("out*")), "a refused command left its --out behind"
    assert _snapshot(files) == before, "a refused command changed the data files or the fitted run"


def _old_argvs() -> set:
    """The command lines of tests/test_bad_inputs.py (its CASES), loaded from the file beside this one."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_old_bad_inputs", Path(__file__).with_name("test_bad_inputs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {c[1] for c in module.CASES}


def test_table_is_broad_and_new():
    """At least 60 new cases, no id twice, and no command line of tests/test_bad_inputs.py repeated."""
    assert len(CASES) + len(API_CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES) and len({c[0] for c in API_CASES}) == len(API_CASES)
    assert not {c[1] for c in CASES} & _old_argvs()


# -- Python API ---------------------------------------------------------------------------------------------------
def _estimators():
    from genlearn import sklearn as sk

    return sk


X4 = np.random.default_rng(0).integers(0, 2, size=(30, 4))

# (id, call(d) with d = the fixture folder, exception class, words of the message)
API_CASES = [
    ("fit-out-int", lambda d: genlearn.fit("bernoulli", "coin:n=40", out=123), ConfigError,
     "out must be a folder path"),
    ("fit-data-dir-int", lambda d: genlearn.fit("bernoulli", "coin:n=40", data_dir=5), ConfigError,
     "data_dir must be a folder path"),
    ("fit-callbacks-str", lambda d: genlearn.fit("bernoulli", "coin:n=40", callbacks="abc"), ConfigError,
     "callbacks must be a list of functions"),
    ("fit-callbacks-int", lambda d: genlearn.fit("bernoulli", "coin:n=40", callbacks=[1]), ConfigError,
     "callbacks must be a list of functions"),
    ("fit-recipe-str", lambda d: genlearn.fit("bernoulli", "coin:n=40", recipe="made-32"), ConfigError,
     "load_recipe(NAME).fit_kwargs()"),
    ("fit-dependent", lambda d: genlearn.fit("rbm", BARS, gradient="exact", k=3), ConfigError, "--k applies"),
    ("fit-em-lr", lambda d: genlearn.fit("mixture", BARS, em=True, lr=0.1), ConfigError, "the em rule"),
    ("fit-spec-twice", lambda d: genlearn.fit("bernoulli", "coin:n=10,n=20"), ConfigError, "given twice"),
    ("fit-list", lambda d: genlearn.fit("product-bernoulli", [[0, 1], [1, 0]]), ConfigError,
     "got list [[0, 1], [1, 0]]"),
    ("fit-categorical-floats", lambda d: genlearn.fit("categorical", np.array([0.5, 1.5])), DataError,
     "1-D array of category indices"),
    ("fit-resume-no-out", lambda d: genlearn.fit("bernoulli", "coin:n=40", resume=True), ConfigError,
     "resume needs the run folder"),
    ("fit-pathlike-missing", lambda d: genlearn.fit("product-bernoulli", d / "missing.csv"), DataError,
     "no such file or folder"),
    ("fit-pathlike-bom", lambda d: genlearn.fit("product-bernoulli", d / "bom.csv"), DataError, "byte-order mark"),
    ("fit-resume-fewer", lambda d: genlearn.fit("product-bernoulli", None, out=d / "run", resume=True, epochs=1),
     ConfigError, "is fewer than the 2 epochs"),
    ("load-run-int", lambda d: genlearn.load_run(42), ConfigError, "load_run needs the path of a run folder"),
    ("load-run-none", lambda d: genlearn.load_run(None), ConfigError, "got NoneType None"),
    ("load-run-missing", lambda d: genlearn.load_run(d / "nope"), RunError, "nope: it does not exist"),
    ("load-run-file", lambda d: genlearn.load_run(d / "good.csv"), RunError, "no run folder at"),
    ("load-run-empty", lambda d: genlearn.load_run(d / "emptydir"), RunError, "holds no checkpoint"),
    ("kl-table-model", lambda d: genlearn.kl_divergence([0.5, 0.5], genlearn.load_run(d / "run").model),
     ConfigError, "not one of each"),
    ("kl-negative", lambda d: genlearn.kl_divergence([1.5, -0.5], [0.5, 0.5]), ConfigError,
     "finite non-negative probabilities"),
    ("kl-method", lambda d: genlearn.kl_divergence([0.5, 0.5], [0.5, 0.5], method="bogus"), ConfigError,
     "unknown KL method 'bogus'"),
    ("dataset-int", lambda d: genlearn.load_dataset(123), ConfigError, "got int 123"),
    ("dataset-none", lambda d: genlearn.load_dataset(None), ConfigError, "got NoneType None"),
    ("dataset-empty-name", lambda d: genlearn.load_dataset(":n=3"), ConfigError, "no data set name before ':'"),
    ("dataset-twice", lambda d: genlearn.load_dataset("coin:n=3,n=4"), ConfigError, "data setting n is given twice"),
    ("dataset-keyword", lambda d: genlearn.load_dataset("coin", p=2), ConfigError, "p must be a number in [0, 1]"),
    ("dataset-pathlike-comments", lambda d: genlearn.load_dataset(d / "comments.csv"), DataError,
     "only comment lines"),
    ("density-options-list", lambda d: _estimators().DensityEstimator(options=["components", 3]).fit(X4),
     ConfigError, "options must be a dict"),
    ("density-dependent", lambda d: _estimators().DensityEstimator(model="rbm", options={"gradient": "exact",
                                                                                          "k": 3}).fit(X4),
     ConfigError, "--k applies to CD-k"),
    ("density-epochs-zero", lambda d: _estimators().DensityEstimator(epochs=0).fit(X4), ConfigError,
     "--epochs must be >= 1"),
    ("density-model", lambda d: _estimators().DensityEstimator(model="bogus").fit(X4), ConfigError,
     "unknown model 'bogus'"),
    ("density-grey", lambda d: _estimators().DensityEstimator().fit(X4 * 0.5), DataError, "must be binary (0/1)"),
    ("density-seed-option", lambda d: _estimators().DensityEstimator(model="mixture",
                                                                     options={"init_seed": -1}).fit(X4),
     ConfigError, "--init-seed must be an integer"),
    ("density-option-typo", lambda d: _estimators().DensityEstimator(model="mixture",
                                                                     options={"componnets": 3}).fit(X4),
     ConfigError, "--componnets does not apply to model 'mixture'"),
    ("density-3d", lambda d: _estimators().DensityEstimator().fit(np.zeros((3, 2, 2))), ValueError,
     "dim <= 2 is required"),
    ("rbm-components-zero", lambda d: _estimators().BernoulliRBM(n_components=0).fit(X4), ValueError,
     "n_components must be a positive integer"),
    ("rbm-gradient", lambda d: _estimators().BernoulliRBM(gradient="bogus").fit(X4), ValueError,
     "gradient must be 'pcd', 'cd' or 'exact'"),
    ("rbm-log-z", lambda d: _estimators().BernoulliRBM(log_z="bogus").fit(X4), ValueError, "log_z must be"),
    ("vae-latent-zero", lambda d: _estimators().VariationalAutoencoder(latent=0).fit(X4), ConfigError,
     "--latent must be >= 1"),
    ("vae-prior", lambda d: _estimators().VariationalAutoencoder(prior="bogus").fit(X4), ConfigError,
     "--prior must be one of standard, vampprior"),
    ("vae-iw-zero", lambda d: _estimators().VariationalAutoencoder(iw_samples=0).fit(X4), ValueError,
     "iw_samples must be a positive integer"),
    ("vae-nan", lambda d: _estimators().VariationalAutoencoder(latent=2, hidden=4, epochs=1).fit(X4 * np.nan),
     ValueError, "X holds nan at row 0, column 0"),
]


@pytest.mark.parametrize("call, kind, words", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_refuses(call, kind, words, files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(files)
    with pytest.raises(kind) as info:
        call(files)
    # the rule for the Python API: every bad input is a ValueError or TypeError (a missing or foreign run
    # folder: RunError, a ValueError too)
    assert isinstance(info.value, (ValueError, TypeError))
    assert words in str(info.value), str(info.value)
    if isinstance(info.value, GenlearnError):  # ours: one line (scikit-learn's own input checks keep their text)
        assert "\n" not in str(info.value).strip(), str(info.value)
    assert not any(tmp_path.iterdir()), "a refused call wrote files"
    assert _snapshot(files) == before


# -- the good inputs beside the new refusals -------------------------------------------------------------------------
def test_tabs_and_pathlike_read_as_the_csv(files):
    """A tab-separated file of the same rows, and the CSV given as a pathlib.Path, load exactly the rows (and the
    seed-0 split) of the CSV given as a string: the oracle is the CSV's own dataset."""
    by_str = genlearn.load_dataset(str(files / "good.csv"))
    for other in (genlearn.load_dataset(files / "good.csv"), genlearn.load_dataset(str(files / "tabs.txt"))):
        for split in ("train", "valid", "test"):
            assert torch.equal(getattr(other, split), getattr(by_str, split))
    rows = np.loadtxt(files / "good.csv", delimiter=",")
    assert sum(len(getattr(by_str, s)) for s in ("train", "valid", "test")) == len(rows)


def test_dependent_options_at_their_default_or_where_they_apply_pass():
    """An option is refused only where it differs from its default AND the other options make it ineffective: the
    default value given explicitly, or the option beside the setting it needs, passes."""
    from genlearn.checks import check_dependent_options

    for family, options in (("rbm", {"gradient": "exact", "k": 1}), ("rbm", {"persistent": True, "n_chains": 50}),
                            ("rbm", {"gradient": "pcd", "k": 3, "n_chains": 50}),
                            ("boltzmann", {"gradient": "pcd", "n_chains": 100, "k": 3}),
                            ("mixture", {"em": True, "smoothing": 1.0}), ("fvsbn", {"order": "random",
                                                                                    "init_seed": 3}),
                            ("vae", {"prior": "vampprior", "pseudo_inputs": 10}),
                            ("made", {"masks": 4, "mask_sampling": "cycle"}),
                            ("nade", {"order_agnostic": True, "matmul_precision": "bfloat16"})):
        check_dependent_options(family, options)  # raises ConfigError if refused


def test_shipped_recipes_pass_the_new_refusals():
    """Every recipe in src/genlearn/recipes loads, its model options pass check_dependent_options, and no recipe
    whose rule sets the parameters itself (EM, closed form) gives an optimizer flag."""
    from genlearn.checks import OPTIMIZER_FLAGS, check_dependent_options
    from genlearn.learning.rules import make_rule
    from genlearn.models.registry import rule_for
    from genlearn.recipes import list_recipes

    recipes = list_recipes()
    assert recipes
    for recipe in recipes:
        check_dependent_options(recipe.model, recipe.model_options)
        rule = make_rule(*rule_for(recipe.model, **recipe.model_options))
        assert rule.uses_optimizer or not set(OPTIMIZER_FLAGS) & set(recipe.train), recipe.name
        assert not rule.one_pass or recipe.train.get("epochs", 1) == 1, recipe.name
