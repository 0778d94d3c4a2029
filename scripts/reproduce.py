"""Reproduce one paper's claims at a stated budget, with seeds: results/PAPER.md and RESULTS.md.

    python scripts/reproduce.py PAPER [--budget cpu|cpu64|gpu|tiny] [--seeds 0,1,2] [--only ROW]
        [--pages-only | --amend | --todo] [--pilot [--lr LR] [--speed]] [--runs DIR] [--results DIR]

PAPER is one of baselines (64×64, budget cpu64), baselines64_v1, baselines64_lr1e-3 and baselines32 (its second readings:
our first nets, those at lr 1e-3, 32×32), dip, dpvae,
msvae, vitae, robust (inference.reproduce.PAPERS). ``--pilot``: the 64×64 baselines' pilot (``--lr``: its learning-rate arm). Every
(row, seed) trains into --runs (default: $REPRODUCE_RUNS, else runs/reproduce beside the work tree,
so a later session resumes it) and is skipped once finished; the page is rewritten from every
finished row. ``--amend`` trains nothing: it adds to the finished records the numbers they were
made without (the baselines' active units), from their runs where this machine has them. ``--todo`` runs
nothing: it prints the command of each (row, seed) still to run, one job each (a cluster's array job
can take one line a task), with its estimated CPU minutes. Bad input prints one line on stderr naming the bad value and exits 2.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from inference.cli import OneLineParser, check_output_dir, number_list, positive_float, random_seed, run_main
from inference.errors import ConfigError
from inference.reproduce import BUDGETS, PAPERS, amend, format_todo, pilot64, pilot64_speed, reproduce, todo

ROOT = Path(__file__).resolve().parents[1]


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    p.add_argument("paper", choices=list(PAPERS))
    p.add_argument("--budget", choices=BUDGETS,
                   help="cpu: this laptop's (see each page); cpu64: the baselines' at 64×64; gpu: the papers' "
                        "own settings; tiny: smoke test (default: the paper's cpu budget)")
    p.add_argument("--seeds", type=number_list(random_seed), help="comma-separated seeds (default: the paper's)")
    p.add_argument("--only", action="append", default=[], metavar="ROW", help="run only this row (repeatable)")
    p.add_argument("--pages-only", action="store_true",
                   help="train nothing: rewrite the page from the rows already finished")
    p.add_argument("--amend", action="store_true",
                   help="train nothing: add to the finished records what they were made without, from their runs")
    p.add_argument("--todo", action="store_true",
                   help="run nothing: print the command of each (row, seed) still to run, with its CPU estimate")
    p.add_argument("--pilot", action="store_true",
                   help="baselines only: the 64×64 pilot (β-TCVAE and VAE at each milestone; --only, --seeds narrow it)")
    p.add_argument("--speed", action="store_true",
                   help="with --pilot: time the cpu64 step on one idle core into the pilot's record")
    p.add_argument("--lr", type=positive_float,
                   help="with --pilot: the learning-rate arm (its own run folders and records; default: the budget's)")
    p.add_argument("--runs", default=os.environ.get("REPRODUCE_RUNS") or str(ROOT.parent / "runs" / "reproduce"),
                   help="folder of the run directories, kept outside the work tree")
    p.add_argument("--results", default=str(ROOT / "results"), help="folder of the pages (RESULTS.md beside it)")
    return p


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    check_output_dir(args.runs, continuing=True)
    check_output_dir(args.results, continuing=True)
    if args.lr is not None and not args.pilot:
        raise ConfigError(f"--lr {args.lr:g} is for --pilot (a page's learning rate is its budget's)")
    if args.todo and (args.pages_only or args.amend or args.pilot):
        bad = "--pages-only" if args.pages_only else "--amend" if args.amend else "--pilot"
        raise ConfigError(f"--todo takes no {bad}: it lists what the reproduction would still run")
    if args.pilot:
        if args.paper != "baselines":
            raise ConfigError(f"--pilot is for baselines, not {args.paper!r}")
        if args.speed:
            return print(pilot64_speed(args.runs, args.results))
        pilot64(args.runs, args.results, **({"rows": tuple(args.only)} if args.only else {}),
                **({"seeds": tuple(args.seeds)} if args.seeds else {}), lr=args.lr)
        return
    args.budget = args.budget or PAPERS[args.paper].default_budget
    command = "python scripts/reproduce.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.todo:  # each command carries the folders this one was given, where they are not the defaults
        defaults = make_parser().parse_args([args.paper])
        flags = [x for name in ("runs", "results") if getattr(args, name) != getattr(defaults, name)
                 for x in (f"--{name}", getattr(args, name))]
        return print(format_todo(todo(args.paper, budget=args.budget, runs=args.runs, results=args.results,
                                      seeds=args.seeds, only=args.only, flags=flags,
                                      prefix=("python", "scripts/reproduce.py"))))
    if args.amend:
        if args.pages_only or args.only or args.seeds:
            bad = "--pages-only" if args.pages_only else "--only" if args.only else "--seeds"
            raise ConfigError(f"--amend takes no {bad}: it amends every finished record of the page")
        out = amend(args.paper, budget=args.budget, runs=args.runs, results=args.results, command=command)
        print(f"amended {len(out['amended'])} record(s), {len(out['missing'])} without their runs here; wrote {out['page']}")
        return
    out = reproduce(args.paper, budget=args.budget, runs=args.runs, results=args.results, seeds=args.seeds,
                    only=args.only, command=command, train=not args.pages_only)
    for c in out["claims"]:
        print(f"{c.verdict:>14}: {c.claim} — ours {c.ours}")
    print(f"wrote {out['page']}")


if __name__ == "__main__":
    sys.exit(run_main(main, resume_flag=""))  # the same command resumes: finished pairs are skipped
