"""Publish the parameters of a fitted run as a small run folder in benchmarks/models/NAME/.

A published folder holds what `genlearn eval` needs and nothing of the training state: model.safetensors (the
final parameters, float32, or float16 with --float16 when the test NLL moves by at most --tolerance nats),
checkpoint.json (model family, config, data spec, learning rule and training settings, no optimizer state) and
metrics.json (the run's figures, evaluation settings and learning curve). Then

    genlearn eval benchmarks/models/NAME --data-dir DIR

re-evaluates it (with the partition settings the run was evaluated with, e.g. AIS temperatures).

    .venv/bin/python benchmarks/publish_run.py runs/mixture-500 mixture-500 --data-dir ../shared/data [--float16]
    .venv/bin/python benchmarks/publish_run.py --smoke --out /tmp/publish.json   # fits and publishes on digits
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from genlearn import load_dataset, load_run
from genlearn.evaluation import evaluate
from genlearn.learning.checkpoint import write_json

from common import parser, write_results

MODELS = Path(__file__).resolve().parent / "models"
#: the most a published folder may weigh (issue 13: parameters that fit in 5 MB each)
MAX_BYTES = 5 * 2**20


def test_nll(model, dataset, evaluation: dict) -> float:
    """Test NLL (nats per example) with the run's own evaluation settings."""
    options = {k: v for k, v in evaluation.items() if k != "partition"}
    return evaluate(model, dataset, splits=("test",), partition=evaluation.get("partition", "auto"),
                    **options)["test_nll"]


def publish(run_dir: Path, out: Path, data_dir, float16: bool, tolerance: float) -> dict:
    """Write the published folder `out` from the run in `run_dir`; returns what was written."""
    run = load_run(run_dir)
    evaluation = dict(run.metrics.get("evaluation") or {"partition": "auto"})
    if evaluation.get("partition") == "ais":
        evaluation.setdefault("seed", 0)
    dataset = load_dataset(run.meta["data_spec"], data_dir)
    state = {k: v.detach().contiguous() for k, v in run.model.state_dict().items()}
    reference = test_nll(run.model, dataset, evaluation)
    dtype, moved = "float32", 0.0
    if float16:
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        run.model.load_state_dict(half)
        moved = test_nll(run.model, dataset, evaluation) - reference
        print(f"float16 parameters move the test NLL by {moved:+.4f} nats")
        if abs(moved) <= tolerance:
            state, dtype = half, "float16"
        else:
            print(f"more than {tolerance} nats: keeping float32")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file(state, str(out / "model.safetensors"))
    meta = {k: v for k, v in run.meta.items() if k not in ("optimizer", "schedule", "data_dir")}
    meta["published"] = {"from": str(run_dir), "dtype": dtype, "test_nll_float32": reference}
    write_json(out / "checkpoint.json", meta)
    write_json(out / "metrics.json", {**run.metrics, "published": meta["published"]})
    size = sum(f.stat().st_size for f in out.iterdir())
    if size > MAX_BYTES:
        print(f"warning: {size / 2**20:.1f} MB, more than {MAX_BYTES / 2**20:.0f} MB", file=sys.stderr)
    return {"folder": str(out), "bytes": size, "dtype": dtype, "test_nll": reference,
            "float16_change": moved, "evaluation": evaluation}


def main(argv=None) -> int:
    p = parser("publish_run", __doc__)
    p.add_argument("run", type=Path, nargs="?", help="a run folder written by `genlearn fit`")
    p.add_argument("name", nargs="?", help="the published folder's name (benchmarks/models/NAME)")
    p.add_argument("--float16", action="store_true", help="store the parameters in float16 if the figure holds")
    p.add_argument("--tolerance", type=float, default=0.01, help="largest allowed change of the test NLL (nats)")
    p.add_argument("--out-root", type=Path, default=MODELS)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or 1)
    if args.smoke:  # a closed-form product of Bernoullis on the embedded digits, published into a temporary root
        import genlearn

        tmp = Path(tempfile.mkdtemp(prefix="publish-smoke-"))
        genlearn.fit("product-bernoulli", "digits", out=tmp / "run", closed_form=True, smoothing=0.1, epochs=1,
                     progress=False, plots=False)
        result = publish(tmp / "run", tmp / "models" / "digits", None, float16=True, tolerance=args.tolerance)
        reloaded = load_run(tmp / "models" / "digits")
        result["reloaded_test_nll"] = test_nll(reloaded.model, load_dataset("digits"), {"partition": "auto"})
        shutil.rmtree(tmp)
    else:
        if args.run is None or args.name is None:
            p.error("give RUN and NAME (or --smoke)")
        out = args.out_root / args.name
        if out.exists() and not args.overwrite:
            raise SystemExit(f"{out} exists; pass --overwrite to replace it")
        result = publish(args.run, out, args.data_dir, args.float16, args.tolerance)
    print(json.dumps(result, indent=2))
    write_results(args.out, {"digits" if args.smoke else args.name: result}, merge_depth=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
