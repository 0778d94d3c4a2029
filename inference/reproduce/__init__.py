"""Reproductions of the papers' claims at a stated budget, with seeds, on one results page.

``reproduce(paper, budget=..., runs=..., results=...)`` (``scripts/reproduce.py PAPER``) runs one
paper's comparison row by row (:mod:`.driver`), writes ``results/<paper>.md`` and gathers every
page's verdicts into ``RESULTS.md``. The papers: :data:`PAPERS`.
"""

from __future__ import annotations

from .driver import BUDGETS, Claim, Reproduction, collect, format_todo, write_index
from .driver import amend as _amend
from .driver import reproduce as _reproduce
from .driver import todo as _todo
from .experiments import MSVAE_REPRO, ROBUST_REPRO, VITAE_REPRO
from .shapes import BASELINES32_REPRO, BASELINES64_LR1E3_REPRO, BASELINES64_V1_REPRO, BASELINES_REPRO, DIP_REPRO, DPVAE_REPRO, pilot64, pilot64_speed
from ..errors import ConfigError

#: Every reproduction, by the name ``scripts/reproduce.py`` takes.
PAPERS: dict[str, Reproduction] = {r.name: r for r in (
    BASELINES_REPRO, BASELINES64_V1_REPRO, BASELINES64_LR1E3_REPRO, BASELINES32_REPRO, DIP_REPRO, DPVAE_REPRO, MSVAE_REPRO, VITAE_REPRO, ROBUST_REPRO)}


def reproduce(paper: str, *, budget: str = "cpu", runs, results, seeds=None, only=(), command: str = "",
              log=print, train: bool = True) -> dict:
    """Run (or finish) ``paper``'s reproduction; see :func:`.driver.reproduce`."""
    if paper not in PAPERS:
        raise ConfigError(f"unknown paper {paper!r}; known: {', '.join(PAPERS)}")
    return _reproduce(PAPERS[paper], budget=budget, runs=runs, results=results, seeds=seeds, only=only,
                      command=command, log=log, train=train)


def todo(paper: str, *, budget: str, runs, results, seeds=None, only=(), flags=(), prefix=("reproduce",)) -> list[dict]:
    """What ``paper``'s reproduction at ``budget`` still has to run; see :func:`.driver.todo`."""
    if paper not in PAPERS:
        raise ConfigError(f"unknown paper {paper!r}; known: {', '.join(PAPERS)}")
    return _todo(PAPERS[paper], budget=budget, runs=runs, results=results, seeds=seeds, only=only, flags=flags,
                 prefix=prefix)


def amend(paper: str, *, budget: str, runs, results, command: str = "", log=print) -> dict:
    """Add to ``paper``'s records the numbers they were made without; see :func:`.driver.amend`."""
    if paper not in PAPERS:
        raise ConfigError(f"unknown paper {paper!r}; known: {', '.join(PAPERS)}")
    return _amend(PAPERS[paper], budget=budget, runs=runs, results=results, command=command, log=log)


__all__ = ["amend", "todo", "format_todo", "pilot64", "pilot64_speed", "PAPERS", "BUDGETS", "Claim", "Reproduction", "reproduce", "collect", "write_index"]
