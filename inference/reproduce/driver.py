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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..checkpoint import atomic_write_text
from ..errors import ConfigError

ROW_FILE = "row.json"
STATUS = "STATUS.md"  # hand-written status in results/, shown at the top of RESULTS.md
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


def separated(a, b) -> float:
    """(mean(a) − mean(b)) in units of the larger seed spread (inf when both spreads are 0)."""
    (ma, sa, _), (mb, sb, _) = stats(a), stats(b)
    spread = max(sa, sb)
    diff = ma - mb
    return diff / spread if spread > 0 else math.copysign(math.inf, diff) if diff else 0.0


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


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
            out.setdefault(row, {})[int(record["seed"])] = record["numbers"] | {"wall_s": record["wall_s"]}
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
    if budget not in BUDGETS:
        raise ConfigError(f"--budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if budget not in repro.budgets:
        raise ConfigError(f"--budget {budget} is not a budget of {repro.name}; its budgets: {', '.join(repro.budgets)}")
    rows = repro.rows(budget)
    unknown = [r for r in only if r not in rows]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r} is not a row of {repro.name}; its rows: {', '.join(rows)}")
    seeds = tuple(repro.seeds if not seeds else seeds)
    done = collect(repro, runs, budget, results)  # the page's records count as finished
    for row, settings in rows.items():
        if (only and row not in only) or not train:
            continue
        for seed in seeds:
            folder = row_dir(runs, repro.name, budget, row, seed)
            if seed in done.get(row, {}) or current(repro, folder / ROW_FILE, budget) is not None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            log(f"[{repro.name}] {row} seed {seed} -> {folder}")
            t0 = time.perf_counter()
            numbers = repro.run(row, settings, seed, folder, budget)
            record = {"paper": repro.name, "row": row, "seed": seed, "budget": budget, "settings": settings,
                      "protocol": repro.protocol_of(budget), "numbers": numbers, "wall_s": time.perf_counter() - t0,
                      "command": command}
            atomic_write_text(folder / ROW_FILE, json.dumps(record, indent=2, default=float) + "\n")
            log(f"[{repro.name}] {row} seed {seed}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in numbers.items() if isinstance(v, (int, float))))
    found = collect(repro, runs, budget, results)
    refuse_legacy(repro, found, budget, Path(results))
    page = write_page(repro, found, budget=budget, results=Path(results), command=command, runs=Path(runs))
    write_index(Path(results))
    return {"results": found, "claims": judged(repro, found, budget), "page": page}


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
    wall = sum(row_seconds(n) for per_seed in found.values() for n in per_seed.values())
    claims = judged(repro, found, budget)
    figures = repro.figures(found, results, budget, runs=runs) if repro.figures and found else []
    lines = [f"# {repro.title}", "",
             f"- Command: `python scripts/reproduce.py {repro.name} --budget {budget}"
             f"{' --seeds ' + ','.join(map(str, seeds)) if seeds else ''}` (resumes: finished rows are kept)",
             f"- Budget: `{budget}`. " + repro.notes.get(budget, ""),
             f"- Seeds: {', '.join(map(str, seeds)) or 'none yet'}; numbers are mean ± std over seeds.",
             f"- Wall time: {wall / 60:.1f} minutes of runs (one process each, summed; a trained run reused "
             f"from the run store counts its training time), "
             f"run directories under `{runs}/{repro.name}/{budget}`.", ""]
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
         "command": command, "claims": [c.__dict__ for c in claims], "protocol": repro.protocol_of(budget),
         "records": {row: {str(s): numbers for s, numbers in sorted(per_seed.items())}
                     for row, per_seed in found.items()}}, indent=2, default=float) + "\n")
    return path


def write_index(results: Path) -> Path:
    """``RESULTS.md`` beside ``results/``: every page's claims in one verdict table."""
    rows = []
    wall = 0.0
    for path in sorted(results.glob("*.json")):  # the pages' claims, one file per paper
        page = json.loads(path.read_text())
        wall += page.get("wall_s", 0.0)
        for c in page["claims"]:
            rows.append([f"[{page['paper']}](results/{page['paper']}.md)", c["claim"], c["paper"], c["ours"],
                         f"**{c['verdict']}**", c["why"]])
    status = results / STATUS
    text = ["# Results", "",
            "Each paper's claims, reproduced by `python scripts/reproduce.py PAPER` on the procedural data "
            "anyone can regenerate. Each linked page has its tables, its command, seeds, budget and "
            "wall time. Ours is mean ± std over seeds.", "",
            *([status.read_text().strip(), ""] if status.is_file() else []),
            f"Total run time behind this page: {wall / 3600:.2f} CPU-hours (one core per run).", "",
            table(["paper", "claim", "paper's number", "ours", "verdict", "why"], rows)]
    path = results.parent / "RESULTS.md"
    atomic_write_text(path, "\n".join(text))
    return path


__all__ = ["Claim", "Reproduction", "BUDGETS", "VERDICTS", "stats", "column", "fmt", "separated", "table",
           "row_dir", "current", "page_record", "collect", "refuse_legacy", "reproduce", "judged", "write_page", "write_index"]
