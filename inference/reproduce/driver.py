"""The reproduction driver: a paper's comparison as rows × seeds, resumable row by row, one page.

A :class:`Reproduction` names its rows (one trained configuration each, e.g. "β-TCVAE" or
"variant e"), runs one (row, seed) with ``run(row, seed, run_dir, budget) -> {number: value}`` and
turns the per-seed numbers into its table and its claims. :func:`reproduce` runs the rows it is
asked for, each into ``runs/<paper>/<budget>/<row>/seed_<k>`` (outside the work tree, so a later
session resumes them), and skips every (row, seed) whose ``row.json`` is already there: killing a
reproduction loses at most the runs in flight, and those resume from their last checkpoint.

A reproduction may name its budget's protocol (``protocol(budget)``: steps, sizes, whatever its
numbers depend on beyond the row's settings). Every ``row.json`` records it, and a record of another
protocol is stale: it is run again (its trained runs continue where the paper's run store allows)
and the page never mixes protocols.

The page ``results/<paper>.md`` is written from every current ``row.json`` of the budget (so ``--only ROW``
adds rows to one page); ``results/<paper>.json`` holds the claims, which :func:`write_index`
gathers into ``RESULTS.md``, and every row's per-seed numbers, so that ``--pages-only`` rewrites the
page the same on a clean clone, where the run folder is gone. Numbers are shown as mean ± standard deviation over seeds (sample
standard deviation, ``ddof=1``; one seed shows no spread).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..checkpoint import atomic_write_text
from ..errors import ConfigError
from .stats import Verdict, all_of, family_note

ROW_FILE = "row.json"
#: tiny: the tests' smoke budget; cpu: this laptop's; cpu64: this laptop's at the field's 64×64 (the
#: baselines, issue 25); gpu: the papers'. A reproduction names the budgets it has (``budgets``).
BUDGETS = ("tiny", "cpu", "cpu64", "gpu")
VERDICTS = ("holds", "does not hold", "inconclusive")


@dataclass
class Claim:
    """One claim of a paper, as RESULTS.md shows it."""

    claim: str
    paper: str          # the paper's number (or statement), with where it is printed
    ours: str           # ours, mean ± std over seeds
    verdict: str        # one of VERDICTS
    why: str            # one sentence

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @classmethod
    def tested(cls, claim: str, paper: str, ours: str, *tests: tuple[str, Verdict], verdict: str | None = None,
               digits: int = 3, family: bool = False) -> "Claim":
        """A claim decided by :mod:`.stats`: ``ours`` gets each test's n per arm, difference with its 90%
        interval and p (``(label, Verdict)`` pairs), ``why`` each test's "what it would take" sentence.
        ``family``: the claim is the conjunction of the tests (:func:`.stats.all_of`: each holds at α,
        one fails at α/k), and ``why`` says so. ``verdict``: the claim's, when it is not the single
        test's or the family's (e.g. a row not yet run)."""
        if verdict is None:
            if family:
                verdict = all_of([v for _, v in tests])
            elif len(tests) != 1:
                raise ValueError("a claim of several tests needs its verdict, or family=True")
            else:
                verdict = tests[0][1].verdict
        label = lambda name: f"{name}: " if name else ""  # noqa: E731
        shown = "; ".join(f"{label(name)}{v.summary(digits)}" for name, v in tests)
        why = "; ".join(f"{label(name)}{v.decide}" for name, v in tests)
        if family:
            why += family_note([v for _, v in tests], [name for name, _ in tests])
        return cls(claim, paper, f"{ours} [{shown}]" if ours else shown, verdict, why + ".")


@dataclass
class Reproduction:
    """A paper's comparison. ``rows(budget)`` -> {row: settings}; ``run(row, settings, seed, run_dir,
    budget)`` -> numbers; ``page(results, budget)`` -> markdown tables (``results``:
    {row: {seed: numbers}}); ``claims(results, budget)`` -> [Claim]; ``figures(results, out, budget)``
    writes pictures into the results folder and returns their file names."""

    name: str
    title: str
    rows: Callable[[str], dict]
    run: Callable
    page: Callable
    claims: Callable
    seeds: tuple = (0, 1, 2)
    figures: Callable | None = None
    notes: dict = field(default_factory=dict)  # budget -> text printed under the page's header
    protocol: Callable[[str], dict] | None = None  # budget -> what its numbers depend on beyond the row
    budgets: tuple = ("tiny", "cpu", "gpu")  # the budgets this reproduction has
    #: (results folder, budget) -> markdown printed under the page's tables, from records kept there
    appendix: Callable[[Path, str], str] | None = None
    #: ``(row, settings, seed, run_dir, budget, numbers)`` -> the numbers a record made before they were
    #: kept lacks, computed from its trained run ({} when it lacks none, None when the run is not on
    #: this machine): :func:`amend`
    amend: Callable | None = None
    #: ``numbers`` -> why a record of the present protocol must still be run again (it was scored before
    #: a part of the evaluation that its numbers name, e.g. DIP's balanced β-VAE metric), or None. The
    #: page keeps such a record until its re-run replaces it; :func:`reproduce` and :func:`todo` re-run it.
    outdated: Callable[[dict], str | None] | None = None
    #: row -> the row whose run of the same seed it scores (it runs after that one: :func:`todo` says so)
    after: dict = field(default_factory=dict)

    @property
    def default_budget(self) -> str:
        """The laptop budget this reproduction has: ``cpu``, else ``cpu64``."""
        return next(b for b in ("cpu", "cpu64", *self.budgets) if b in self.budgets)

    def why_rerun(self, numbers: dict | None) -> str | None:
        """Why the finished record ``numbers`` must be run again (:attr:`outdated`); None if it stands."""
        return None if numbers is None or self.outdated is None else self.outdated(numbers)

    def protocol_of(self, budget: str):
        """The budget's protocol as a ``row.json`` stores it (JSON round-tripped), ``None`` if unnamed."""
        return None if self.protocol is None else json.loads(json.dumps(self.protocol(budget), default=str))


def stats(values) -> tuple[float, float, int]:
    """(mean, sample std, count) of the finite values; (nan, nan, 0) when there are none."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def column(results: dict, row: str, key: str) -> list:
    """The per-seed values of ``key`` in ``row`` (seeds in order); missing ones are left out."""
    return [numbers[key] for _, numbers in sorted(results.get(row, {}).items()) if key in numbers]


def fmt(values, digits: int = 3) -> str:
    """``mean ± std (n)`` of per-seed values, ``–`` for none."""
    mean, std, n = stats(values)
    if n == 0:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" + ("" if n > 1 else " (1 seed)")


def per_seed(results: dict, row: str, keys) -> dict:
    """{key: values of the seeds that have every key, seeds in order}: columns aligned seed by seed,
    for a paired test."""
    seeds = [s for s, n in sorted(results.get(row, {}).items()) if all(k in n for k in keys)]
    return {k: [results[row][s][k] for s in seeds] for k in keys}


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def device_name() -> str:
    """Where this process trains a reproduction's runs (:func:`inference.runs.train_run` takes CUDA when
    the machine has it): ``cpu``, or ``cuda (<GPU name>)``. Each record keeps it: a GPU's minutes are not
    CPU-hours."""
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu"


def on_cpu(numbers: dict) -> bool:
    """Whether a record's run was trained on a CPU (records from before devices were kept were: no GPU
    had been lent to this project when they were made)."""
    return numbers.get("device", "cpu") == "cpu"


def row_dir(runs: Path, paper: str, budget: str, row: str, seed: int) -> Path:
    return Path(runs) / paper / budget / row / f"seed_{seed}"


def current(repro: Reproduction, path: Path, budget: str) -> dict | None:
    """The ``row.json`` at ``path`` if it exists and was run under the budget's present protocol."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("protocol") == repro.protocol_of(budget) else None


def page_record(repro: Reproduction, results: Path | None, budget: str) -> dict | None:
    """``results/<paper>.json`` if it was written at ``budget`` (``None`` otherwise)."""
    path = None if results is None else Path(results) / f"{repro.name}.json"
    if path is None or not path.is_file():
        return None
    page = json.loads(path.read_text())
    return page if page.get("budget") == budget else None


def collect(repro: Reproduction, runs: Path, budget: str, results: Path | None = None) -> dict:
    """{row: {seed: numbers}} of every finished (row, seed) of ``budget`` (current protocol): the
    records the page in ``results`` keeps, overlaid by the ``row.json`` files under ``runs``. So a
    page can be rewritten from a clean clone, where the run folder of the session that ran it is gone."""
    out = {}
    page = page_record(repro, results, budget)
    if page is not None and page.get("protocol") == repro.protocol_of(budget):
        rows = repro.rows(budget)
        for row, per_seed in page.get("records", {}).items():
            if row in rows:
                out[row] = {int(seed): numbers for seed, numbers in per_seed.items()}
    for row in repro.rows(budget):
        folder = Path(runs) / repro.name / budget / row
        for path in sorted(folder.glob(f"seed_*/{ROW_FILE}")):
            record = current(repro, path, budget)
            if record is None:
                continue
            kept = out.get(row, {}).get(int(record["seed"]))
            if kept is not None and repro.why_rerun(record["numbers"]) and not repro.why_rerun(kept):
                continue  # an old record left in this run folder; the page has its re-run
            out.setdefault(row, {})[int(record["seed"])] = (record["numbers"] | {"wall_s": record["wall_s"]}
                                                            | ({"device": record["device"]} if "device" in record else {}))
    return out


def reproduce(repro: Reproduction, *, budget: str, runs, results, seeds=None, only=(), command: str = "",
              log=print, train: bool = True) -> dict:
    """Run the missing (row, seed) pairs of ``repro`` at ``budget``, then write its page.

    :param runs: the folder of the run directories (keep it outside the work tree).
    :param results: the folder of the pages (``results/``); ``RESULTS.md`` goes to its parent.
    :param only: row names to run (all when empty); the page still shows every finished row.
    :param train: ``False`` runs nothing: the page is rewritten from the rows already finished.
    Returns ``{"results": {row: {seed: numbers}}, "claims": [Claim], "page": Path}``.
    """
    rows = _check(repro, budget, only)
    seeds = tuple(repro.seeds if not seeds else seeds)
    done = collect(repro, runs, budget, results)  # the page's records count as finished
    for row, settings in rows.items():
        if (only and row not in only) or not train:
            continue
        for seed in seeds:
            folder = row_dir(runs, repro.name, budget, row, seed)
            fresh = current(repro, folder / ROW_FILE, budget)  # a record another process wrote meanwhile
            record = fresh["numbers"] if fresh is not None else done.get(row, {}).get(seed)
            if record is not None and repro.why_rerun(record) is None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            log(f"[{repro.name}] {row} seed {seed} -> {folder}")
            t0 = time.perf_counter()
            numbers = repro.run(row, settings, seed, folder, budget)
            record = {"paper": repro.name, "row": row, "seed": seed, "budget": budget, "settings": settings,
                      "protocol": repro.protocol_of(budget), "numbers": numbers, "wall_s": time.perf_counter() - t0,
                      "device": device_name(), "command": command}
            atomic_write_text(folder / ROW_FILE, json.dumps(record, indent=2, default=float) + "\n")
            log(f"[{repro.name}] {row} seed {seed}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in numbers.items() if isinstance(v, (int, float))))
            # the record enters the page (results/<paper>.json) at once: a run of hours is never lost
            # with the run folder, and a later reproduction on another machine skips it
            _rewrite(repro, budget, runs, results, command, final=False)
    found, page = _rewrite(repro, budget, runs, results, command)
    return {"results": found, "claims": judged(repro, found, budget), "page": page}


def todo(repro: Reproduction, *, budget: str, runs, results, seeds=None, only=(), flags=(),
         prefix=("reproduce",)) -> list[dict]:
    """The (row, seed) pairs of ``repro`` at ``budget`` that :func:`reproduce` would still run (missing, or
    kept but :attr:`Reproduction.outdated`: ``rerun`` says why), each with
    the command that runs it alone (``--only ROW --seeds S``: a job of its own, e.g. one task of a
    cluster's array job; the page lock lets them finish in any order) and ``estimate_s``, the mean
    compute of the row's finished CPU records (``None`` for a row without one). ``flags``: arguments
    every command carries (``--runs``/``--results`` when not the defaults); ``prefix``: how the command
    line starts (the script gives its own, ``python scripts/reproduce.py``). A row that scores another
    row's run (:attr:`Reproduction.after`) names that pair in ``after`` while it is not done. Runs nothing."""
    import shlex

    rows = _check(repro, budget, only)
    seeds = tuple(repro.seeds if not seeds else seeds)
    done = collect(repro, runs, budget, results)
    out = []
    for row in rows:
        if only and row not in only:
            continue
        spent = [row_seconds(n) for n in done.get(row, {}).values() if on_cpu(n)]
        for seed in seeds:
            rerun = repro.why_rerun(done.get(row, {}).get(seed))
            if seed in done.get(row, {}) and rerun is None:
                continue
            first = repro.after.get(row)
            waits = first is not None and (seed not in done.get(first, {}) or repro.why_rerun(done[first][seed]))
            out.append({"row": row, "seed": seed, "records": len(spent), "rerun": rerun,
                        "after": (first, seed) if waits else None,
                        "estimate_s": sum(spent) / len(spent) if spent else None,
                        "command": shlex.join([*prefix, repro.name, "--budget", budget,
                                               "--only", row, "--seeds", str(seed), *flags])})
    return out


def format_todo(items: list[dict]) -> str:
    """:func:`todo`'s pairs as shell lines: each pair's command with its estimate as a comment, then the
    total (``# nothing to run`` when every pair is done)."""
    if not items:
        return "# nothing to run: every (row, seed) has its record"

    def plural(n, word):
        return f"{n} {word}{'s' * (n != 1)}"

    def basis(item):
        if item["estimate_s"] is None:  # another row's time says nothing of this one's (a floor, a study)
            return "no estimate: the row has no record on a CPU yet"
        return f"≈ {item['estimate_s'] / 60:.0f} CPU-min (mean of the row's {plural(item['records'], 'record')})"

    lines = [f"{item['command']}  # {basis(item)}" + (f"; a re-run: {item['rerun']}" if item.get("rerun") else "")
             + (f"; after {item['after'][0]} seed {item['after'][1]}, whose run it scores" if item.get("after") else "")
             for item in items]
    known = [i["estimate_s"] for i in items if i["estimate_s"] is not None]
    total = f"≈ {sum(known) / 3600:.1f} CPU-hours" if known else "no estimate yet"
    if known and len(known) < len(items):
        total += f" for {len(known)} of them, no estimate for the rest"
    reruns = sum(bool(i.get("rerun")) for i in items)
    lines.append(f"# {plural(len(items), '(row, seed) pair')} to run" + (f" ({reruns} of them again)" if reruns else "")
                 + f", one core each: {total}")
    return "\n".join(lines)


def _check(repro: Reproduction, budget: str, only=()) -> dict:
    """The rows of ``repro`` at ``budget``; a budget or ``--only`` row it does not have is refused by name."""
    if budget not in BUDGETS:
        raise ConfigError(f"--budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if budget not in repro.budgets:
        raise ConfigError(f"--budget {budget} is not a budget of {repro.name}; its budgets: {', '.join(repro.budgets)}")
    rows = repro.rows(budget)
    unknown = [r for r in only if r not in rows]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r} is not a row of {repro.name}; its rows: {', '.join(rows)}")
    return rows


def amend(repro: Reproduction, *, budget: str, runs, results, command: str = "", log=print) -> dict:
    """Add to each finished record of ``budget`` the numbers it was made without (``repro.amend``),
    computed from its trained run where this machine still has one, then rewrite the page.

    Nothing is trained and no number a record has changes. An amended record is written to its
    ``row.json`` (made for a record that only the page kept), with ``amended``: the keys added and the
    command. A record whose run is gone stays as it was; the page shows how many records have each key.
    Returns ``{"amended": [(row, seed)], "missing": [(row, seed)], "page": Path}``.
    """
    if repro.amend is None:
        raise ConfigError(f"--amend: {repro.name} keeps every number its records need; nothing to amend")
    rows = _check(repro, budget)
    page = page_record(repro, results, budget) or {}
    done, missing = [], []
    for row, per_seed in collect(repro, runs, budget, results).items():
        for seed, numbers in sorted(per_seed.items()):
            folder = row_dir(runs, repro.name, budget, row, seed)
            extra = repro.amend(row, rows[row], seed, folder, budget, numbers)
            if extra is None:
                missing.append((row, seed))
                continue
            new = {k: v for k, v in extra.items() if k not in numbers}
            if not new:
                continue
            path = folder / ROW_FILE
            record = current(repro, path, budget) or {
                "paper": repro.name, "row": row, "seed": seed, "budget": budget, "settings": rows[row],
                "protocol": repro.protocol_of(budget), "wall_s": numbers["wall_s"], "command": page.get("command", ""),
                "numbers": {k: v for k, v in numbers.items() if k not in ("wall_s", "device")},
                **({"device": numbers["device"]} if "device" in numbers else {})}
            record["numbers"] = {**record["numbers"], **new}
            record["amended"] = record.get("amended", []) + [{"keys": sorted(new), "command": command}]
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(record, indent=2, default=float) + "\n")
            done.append((row, seed))
            log(f"[{repro.name}] {row} seed {seed}: added {', '.join(sorted(new))}")
    if missing:
        log(f"[{repro.name}] {len(missing)} record(s) left as they were (their runs are not under {runs}): "
            + ", ".join(f"{r} seed {s}" for r, s in missing))
    _, path = _rewrite(repro, budget, runs, results, page.get("command", command))
    return {"amended": done, "missing": missing, "page": path}


def _rewrite(repro: Reproduction, budget: str, runs, results, command: str, final: bool = True):
    """Collect every finished row and rewrite the page and ``RESULTS.md``, under a lock in the run
    folder, so two processes working on one page (``--only`` different rows) never lose a record.
    ``final=False`` (after each record): a page without records that the rows so far cannot replace
    (:func:`refuse_legacy`) is left as it is, the record kept in the run folder, and the run goes on."""
    import fcntl

    lock_path = Path(runs) / repro.name / budget / ".page.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = collect(repro, runs, budget, results)
        try:
            refuse_legacy(repro, found, budget, Path(results))
        except ConfigError:
            if final:
                raise
            return found, None
        page = write_page(repro, found, budget=budget, results=Path(results), command=command, runs=Path(runs))
        write_index(Path(results))
    return found, page


def refuse_legacy(repro: Reproduction, found: dict, budget: str, results: Path) -> None:
    """Refuse to overwrite a page written before pages kept their row records (its per-seed numbers
    live only in its markdown) unless every row of the paper has each of its seeds: anything less
    could silently drop rows the page shows."""
    page = page_record(repro, results, budget)
    if page is None or "records" in page or not page.get("seeds"):
        return
    missing = [(row, s) for row in repro.rows(budget) for s in page["seeds"] if s not in found.get(row, {})]
    if missing:
        row, s = missing[0]
        raise ConfigError(
            f"{results / (repro.name + '.md')} was written before pages kept their row records, and "
            f"{len(missing)} (row, seed) of it are not under the run folder (first: {row!r} seed {s}): point "
            f"--runs at the folder that holds them, run them again, or delete the page to start it anew")


def judged(repro: Reproduction, found: dict, budget: str) -> list[Claim]:
    """The claims of ``found``; at the ``tiny`` budget every verdict is "inconclusive" (nothing learned)."""
    claims = repro.claims(found, budget)
    if not found:
        claims = [Claim(c.claim, c.paper, "–", "inconclusive", f"not run at the {budget} budget yet")
                  for c in claims] or [Claim(repro.title, "see the page", "–", "inconclusive",
                                             f"not run at the {budget} budget yet")]
    if budget == "tiny":
        for c in claims:
            c.verdict, c.why = "inconclusive", "tiny budget: a smoke test of the code path, nothing has learned"
    return claims


def row_seconds(numbers: dict) -> float:
    """A finished row's compute: its own wall time, or the training time of the stored run it reused
    (``train_s``) when that is longer (a row re-evaluated later took seconds, its training minutes)."""
    train = numbers.get("train_s", 0.0)
    return max(numbers["wall_s"], train if isinstance(train, (int, float)) and math.isfinite(train) else 0.0)


def write_page(repro: Reproduction, found: dict, *, budget: str, results: Path, command: str,
               runs: Path) -> Path:
    """``results/<paper>.md`` (tables, claims, command, seeds, wall time, budget) and ``<paper>.json``."""
    results.mkdir(parents=True, exist_ok=True)
    seeds = sorted({s for per_seed in found.values() for s in per_seed})
    wall = sum(row_seconds(n) for per_seed in found.values() for n in per_seed.values() if on_cpu(n))
    gpu = {}  # GPU records' seconds by device: never counted as CPU time
    for n in (n for per_seed in found.values() for n in per_seed.values() if not on_cpu(n)):
        gpu[n["device"]] = gpu.get(n["device"], 0.0) + row_seconds(n)
    claims = judged(repro, found, budget)
    figures = repro.figures(found, results, budget, runs=runs) if repro.figures and found else []
    asked = sorted(repro.seeds)
    missing = [s for s in asked if s not in seeds]
    lines = [f"# {repro.title}", "",
             f"- Command: `python scripts/reproduce.py {repro.name} --budget {budget}"
             f"{' --seeds ' + ','.join(map(str, seeds)) if seeds else ''}` (resumes: finished rows are kept)",
             f"- Budget: `{budget}`. " + repro.notes.get(budget, ""),
             f"- Seeds: {', '.join(map(str, seeds)) or 'none yet'}; numbers are mean ± std over seeds."
             + (f" This reproduction asks for seeds {', '.join(map(str, asked))}; seeds "
                f"{', '.join(map(str, missing))} are not run yet, so every verdict below rests on the n it shows."
                if missing else ""),
             f"- Wall time: {wall / 60:.1f} minutes of runs (one process each, summed; a trained run reused "
             f"from the run store counts its training time), "
             + "".join(f"and {t / 60:.1f} minutes of runs trained on {d}, " for d, t in sorted(gpu.items()))
             + 
             f"run directories under `{shown_path(runs, results.parent)}/{repro.name}/{budget}`.", ""]
    lines += [repro.page(found, budget), ""]
    if repro.appendix is not None:
        lines += [repro.appendix(results, budget), ""]
    for name in figures:
        lines += [f"![{name}]({name})", ""]
    lines += ["## Claims", "", table(["claim", "paper", "ours", "verdict", "why"],
                                     [[c.claim, c.paper, c.ours, f"**{c.verdict}**", c.why] for c in claims])]
    path = results / f"{repro.name}.md"
    atomic_write_text(path, "\n".join(lines))
    atomic_write_text(results / f"{repro.name}.json", json.dumps(
        {"paper": repro.name, "title": repro.title, "budget": budget, "seeds": seeds, "wall_s": wall,
         **({"gpu_wall_s": gpu} if gpu else {}),
         "command": relative_command(command, results.parent), "claims": [c.__dict__ for c in claims],
         "protocol": repro.protocol_of(budget),
         "records": {row: {str(s): numbers for s, numbers in sorted(per_seed.items())}
                     for row, per_seed in found.items()}}, indent=2, default=float) + "\n")
    return path


def shown_path(path, root: Path) -> str:
    """``path`` as a page prints it: relative to the repository root ``root`` (``../runs/reproduce`` for
    the default run folder), never an absolute path of the machine that ran it."""
    path, root = Path(path), Path(root)
    if not path.is_absolute():
        return path.as_posix()
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def relative_command(command: str, root: Path) -> str:
    """``command`` with every absolute path in it (``--runs /…``) written relative to ``root``."""
    if not command:
        return command
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    out = []
    for w in words:
        key, eq, value = w.partition("=") if w.startswith("--") else ("", "", w)
        out.append(key + eq + shown_path(value, root) if os.path.isabs(value) else w)
    return " ".join(shlex.quote(w) for w in out)


def write_index(results: Path) -> Path:
    """``RESULTS.md`` beside ``results/``: a header generated from the pages' records (budget, seeds,
    records per row, CPU time) and every page's claims in one verdict table. No hand-typed number."""
    rows, header = [], []
    wall = gpu_wall = 0.0
    for path in sorted(results.glob("*.json")):  # the pages' claims, one file per paper
        page = json.loads(path.read_text())
        if "claims" not in page or "paper" not in page:  # a record file that is no page (e.g. a pilot's)
            continue
        wall += page.get("wall_s", 0.0)
        link = f"[{page['paper']}](results/{page['paper']}.md)"
        records = page.get("records")
        if records is None:
            n = ("no per-seed records (the page predates them): its verdicts are the earlier seed-spread rule's, "
                 "and it cannot be regenerated or re-judged without running it again")
        elif not records:
            n = "no records yet"
        else:
            counts = sorted({len(per_seed) for per_seed in records.values()})
            n = (f"{len(records)} rows, {'–'.join(map(str, (counts[0], counts[-1]) if len(counts) > 1 else counts))}"
                 f" seeds per row ({sum(len(v) for v in records.values())} records)")
        gpu = sum(page.get("gpu_wall_s", {}).values())
        gpu_wall += gpu
        header.append([link, f"`{page.get('budget', '?')}`", ", ".join(map(str, page.get("seeds", []))) or "–", n,
                       f"{page.get('wall_s', 0.0) / 3600:.2f}" + (f" (and {gpu / 3600:.2f} GPU-hours)" if gpu else "")])
        for c in page["claims"]:
            if records is None:  # no stated test can be run without per-seed records: no verdict stands
                rows.append([link, c["claim"], c["paper"], c["ours"], "**inconclusive**",
                             f"not judged by a stated test: the page has no per-seed records (its earlier "
                             f"seed-spread rule said '{c['verdict']}'); run it again to judge it"])
                continue
            rows.append([link, c["claim"], c["paper"], c["ours"], f"**{c['verdict']}**", c["why"]])
    text = ["# Results", "",
            "Each paper's claims, reproduced by `python scripts/reproduce.py PAPER` on the procedural data "
            "anyone can regenerate. Each linked page has its tables, its command, seeds, budget and "
            "wall time. Ours is mean ± std over seeds.", "",
            "Every verdict is a stated test (`inference/reproduce/stats.py`): a claim that A beats B is a "
            "one-sided Welch t-test at α = 0.05, shown as n per arm, the difference with its 90% interval and "
            "p. It **holds** when the test rejects in the claimed direction, **does not hold** when the whole "
            "interval lies on the other side of zero, and is **inconclusive** otherwise. Non-inferiority, "
            "threshold and order claims use the same interval against their margin, threshold or (paired, "
            "seed by seed) neighbour. *why* says what it would take to decide: the smallest difference the "
            "page's n detects with 80% power at the observed spread, and for an inconclusive claim the seeds "
            "per arm that would detect the observed difference.", "",
            "What stands behind each page (from its records):", "",
            table(["page", "budget", "seeds", "records", "CPU-hours"], header),
            f"Total run time behind this page: {wall / 3600:.2f} CPU-hours (one core per run)"
            + (f", and {gpu_wall / 3600:.2f} GPU-hours." if gpu_wall else "."), "",
            table(["paper", "claim", "paper's number", "ours", "verdict", "why"], rows)]
    path = results.parent / "RESULTS.md"
    atomic_write_text(path, "\n".join(text))
    return path


__all__ = ["device_name", "on_cpu", "Claim", "Reproduction", "BUDGETS", "VERDICTS", "stats", "column", "per_seed", "fmt", "table",
           "row_dir", "current", "page_record", "collect", "refuse_legacy", "reproduce", "judged", "write_page", "write_index",
           "shown_path", "relative_command"]
