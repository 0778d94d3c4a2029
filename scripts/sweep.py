"""Run a hyperparameter × seed study on Ray Tune and tabulate it.

    python scripts/sweep.py configs/sweeps/dip_study_quick.yaml [--out runs/sweeps/NAME]
        [--address auto|HOST:6379|ray://HOST:10001] [--num-cpus N] [--max-concurrent K]
        [--scheduler fifo|asha] [--set base.steps=300 ...] [--ship-code] [--dry-run] [--table-only]
        [--quiet]

Each trial is inference.runs.train_run (what scripts/train.py runs) then the study's evaluation
sections (inference.report.evaluate_run, what scripts/evaluate.py runs), in OUT/runs/<trial>; every
log step is reported to Tune, and --scheduler asha stops bad trials early. A failed trial is listed
with its error and does not stop the sweep; running the same command again skips finished trials.
Without --address a local Ray with this machine's CPUs is started; with it, the sweep joins that
cluster (OUT must then be on storage every node sees, e.g. NFS, and the packages importable there
or shipped with --ship-code); an address where nothing listens is one line and exit 2. A trial
whose node dies is started again on another node and resumes from its checkpoint. Writes
OUT/sweep.csv (with each trial's Ray node and number of starts), OUT/sweep.md and OUT/sweep.png.
Any bad input prints one line and exits 2. Needs the sweep extra: pip install 'pyro-disentangle[sweep]'.
"""

from __future__ import annotations

import sys
from pathlib import Path

from inference import sweep
from inference.cli import OneLineParser, check_output_dir, positive_int, ray_address, run_main


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="sweep.py", description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="study file (.yaml/.yml/.json), e.g. configs/sweeps/dip_study_quick.yaml")
    p.add_argument("--out", help="sweep directory (default runs/sweeps/<study name>)")
    p.add_argument("--address", type=ray_address, help="join this running Ray cluster (e.g. auto, HOST:6379, "
                                     "ray://HOST:10001) instead of starting a local one")
    p.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--max-concurrent", type=positive_int, help="at most this many trials at once")
    p.add_argument("--scheduler", choices=sweep.SCHEDULERS, default="fifo",
                   help="asha: stop bad trials early (Tune's ASHAScheduler; options in the study's asha:)")
    p.add_argument("--ship-code", action="store_true",
                   help="upload the packages to the cluster's workers (Ray runtime_env py_modules)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="edit the study, e.g. base.steps=300, 'seeds=[0]', blocks.0.grid.lambda_od=[10]")
    p.add_argument("--dry-run", action="store_true", help="list the trials and exit")
    p.add_argument("--table-only", action="store_true",
                   help="rewrite sweep.csv/.md/.png from the run directories; train nothing")
    p.add_argument("--quiet", action="store_true", help="do not forward the workers' output")
    return p


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    sweep.check_installed()  # without the sweep extra: one line naming it, exit 2
    if args.address and not (args.dry_run or args.table_only):
        sweep.check_address(args.address)  # no cluster there: one line now, not Ray's endless retries
    raw = sweep.apply_overrides(sweep.read_study_file(args.study), args.set)
    # A sweep folder (sweep.json, runs/) is continued, its finished trials skipped; any other
    # non-empty folder, or a file, is refused.
    out = Path(args.out or Path("runs") / "sweeps" / str(raw["name"]))
    out = check_output_dir(out, continuing=(out / "sweep.json").is_file() or (out / "runs").is_dir())
    study = sweep.expand(raw, out)
    if args.dry_run:
        done = sum(sweep.is_finished(t.run_dir, study.evaluate, args.scheduler) for t in study.trials)
        for t in study.trials:
            print(t.name, " ".join(f"{k}={v}" for k, v in t.flags.items()))
        print(f"{len(study.trials)} trials ({done} finished) -> {out}")
        return
    if args.table_only:
        rows = sweep.collect(study)
        sweep.write_tables(study, rows, out.resolve(), skipped=len(rows))
    else:
        rows = sweep.run_sweep(study, out, address=args.address, num_cpus=args.num_cpus,
                               max_concurrent=args.max_concurrent, log_to_driver=not args.quiet,
                               ship_code=args.ship_code, scheduler=args.scheduler)
    counts = {s: sum(r["status"] == s for r in rows) for s in sweep.tables.STATUSES}
    for r in rows:
        if r["status"] == "error":
            print(f"failed: {r['name']}: {r['error']}", file=sys.stderr)
    print(f"sweep {study.name}: {counts['ok']} ok, {counts['error']} failed, {counts['stopped']} stopped, "
          f"{counts['not run']} not run -> {out / 'sweep.md'}")


if __name__ == "__main__":
    sys.exit(run_main(main))
