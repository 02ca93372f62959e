"""Model selection by validation NLL on the UCI binary sets (adult, dna, nips) through the product:
`genlearn tune --preset uci` on each data set, the best trial's test NLL (read once) against the best published
figure. Every figure comes from the command's own OUT/summary.json; this script runs the command (or, with
--reuse, reads a folder it already wrote) and collects the summaries into benchmarks/results/uci_tune.json,
merged per data set (the others' entries are kept).

    python benchmarks/uci_tune.py --datasets nips --data-dir ../shared/data --runs-dir runs --budget-minutes 45 \
        --trial-minutes 6 --threads 1
    python benchmarks/uci_tune.py --datasets adult,dna,nips --runs-dir runs --reuse
    python benchmarks/uci_tune.py --datasets dna --families made --space masks.toml --tag masks --budget-minutes 40
    python benchmarks/uci_tune.py --smoke

Test NLL in nats per example (exact: every family of the preset is tractable), its 95% interval
test_nll +- 1.96 stderr over the test rows: that of the selection refitted on train + valid when the summary says
it was (the preset's default), with the train-only selection's figure as train_only_test_nll."""
from __future__ import annotations

import json
import shutil
import tempfile
import subprocess
import sys
from pathlib import Path

import common

#: the best published test NLL of each set (issue 20's targets; benchmarks/tractable_uci.py lists per model)
PUBLISHED_BEST = {"adult": (13.12, "MADE, one mask (Germain et al. 2015)"),
                  "dna": (79.66, "MADE with mask sampling (Germain et al. 2015)"),
                  "nips": (271.11, "best published figure quoted by issue 20")}


def genlearn_command() -> list[str]:
    """The `genlearn` executable beside this Python (the installed product), else `python -m genlearn`."""
    exe = Path(sys.executable).parent / "genlearn"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "genlearn"]


def tune_command(data: str, out: Path, args) -> list[str]:
    cmd = [*genlearn_command(), "tune", "--preset", "uci", "--data", data, "--out", str(out), "--seed",
           str(args.seed), "--quiet"]
    if args.data_dir and not args.smoke:
        cmd += ["--data-dir", str(args.data_dir)]
    for flag, value in (("--budget-minutes", args.budget_minutes), ("--trial-minutes", args.trial_minutes),
                        ("--trials", args.trials), ("--threads", args.threads), ("--families", args.families),
                        ("--space", args.space)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def entry(name: str, summary: dict, command: list[str] | None) -> dict:
    """The results entry of one data set from its tune summary.json."""
    best = summary["best"]
    test, se = summary["test_nll"], summary["test_nll_stderr"]
    published = PUBLISHED_BEST.get(name)
    ensemble = summary.get("ensemble") if summary.get("selected") == "ensemble" else None
    out = {"test_nll": test, "ci95": [test - 1.96 * se, test + 1.96 * se], "test_nll_stderr": se,
           "test_nll_method": summary.get("test_nll_method"),
           "valid_nll": ensemble["valid_nll"] if ensemble else best["valid_nll"],
           "selected": summary.get("selected", "best trial"),
           "best_config": {k: best[k] for k in ("family", "model_options", "train", "trial")},
           "best_trial_valid_nll": best["valid_nll"], "best_trial_test_nll": best.get("test_nll", test),
           "trials": summary["n_trials"], "trials_complete": summary["n_complete"],
           "trials_pruned": summary["n_pruned"], "trials_failed": summary["n_failed"],
           "wall_seconds": summary["wall_seconds"], "trial_seconds_total": summary.get("trial_seconds_total"),
           "settings": summary["settings"], "families": summary.get("families")}
    if ensemble:  # the equal-weight mixture of the k best trials (tune --ensemble; k chosen by valid NLL)
        out["ensemble"] = {"k": ensemble["k"], "trials": [m["trial"] for m in ensemble["members"]],
                           "families": sorted({m.get("family") for m in ensemble["members"]} - {None}),
                           "valid_nll_by_k": ensemble["valid_nll_by_k"]}
    if summary.get("refitted"):  # tune --refit (the preset's default): the selection retrained on train + valid
        refit = summary["refit"]
        out["refit"] = {"rows": refit["rows"], "trials": [m["trial"] for m in refit["members"]],
                        "epochs": [m["epochs"] for m in refit["members"]],
                        "seconds": sum(m.get("seconds") or 0.0 for m in refit["members"])}
        out["train_only_test_nll"] = (ensemble or best)["test_nll"] if ensemble else best.get("test_nll")
    if published:
        out.update(published_best=published[0], published_best_model=published[1],
                   target_met=bool(test <= published[0]))
    if command:
        out["command"] = " ".join(command)
    return out


def main() -> None:
    p = common.parser(__file__, __doc__, threads=1)
    p.add_argument("--datasets", default="adult,dna,nips")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="tune folders go to RUNS/uci-tune-NAME")
    p.add_argument("--reuse", action="store_true", help="read RUNS/uci-tune-NAME/summary.json where it exists")
    p.add_argument("--budget-minutes", type=float, default=None)
    p.add_argument("--trial-minutes", type=float, default=6.0)
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", help="passed to genlearn tune (default: the preset's)")
    p.add_argument("--space", type=Path, help="a search-space TOML passed to genlearn tune")
    p.add_argument("--ran", help="with --reuse: the command that wrote the reused folder, recorded with it")
    p.add_argument("--tag", default="", help="a suffix of the folder and the results key (NAME-TAG), for a variant "
                   "of the search on the same data set")
    args = p.parse_args()
    sets = args.datasets.split(",")
    if args.smoke:  # the embedded digits (train/valid/test split by genlearn), a few trials of seconds
        sets, args.trials, args.trial_minutes, args.budget_minutes = ["digits"], 2, 0.03, 0.5
        args.runs_dir = Path(tempfile.mkdtemp(prefix="uci-tune-smoke-"))
    results = {}
    for name in sets:
        key = f"{name}-{args.tag}" if args.tag else name
        out = args.runs_dir / f"uci-tune-{key}"
        summary_file = out / "summary.json"
        command = None
        if not (args.reuse and summary_file.exists()):
            command = tune_command(name, out, args)
            print("$", " ".join(command), flush=True)
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name}: genlearn tune exited {done.returncode}: {done.stderr.strip()}")
        results[key] = entry(name, json.loads(summary_file.read_text()), command)
        if command is None and args.ran:
            results[key]["command"] = args.ran
        # the machine this script ran on: where the tune ran too, unless its folder was reused
        results[key]["machine"] = {**common.machine_record(), "tune_ran_here": command is not None}
        if args.space:
            results[key]["space_file"] = {"path": str(args.space), "text": args.space.read_text()}
        print(json.dumps({key: {k: results[key][k] for k in ("test_nll", "ci95", "valid_nll", "trials")}}),
              flush=True)
    if args.smoke:
        shutil.rmtree(args.runs_dir, ignore_errors=True)
    path = common.write_results(args.out, results, merge_depth=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
