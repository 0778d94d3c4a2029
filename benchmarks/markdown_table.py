"""One markdown table that several benchmarks append rows to (``make gpu-check`` writes runs/gpu-check.md).

Columns: benchmark, variant, batch, images/s, ms/step, note. A file that does not exist yet (or is
empty) gets the header first; anything already above the table (a title) is kept.
"""

from __future__ import annotations

from pathlib import Path

COLUMNS = ("benchmark", "variant", "batch", "images/s", "ms/step", "note")


def append_rows(path, rows) -> None:
    """Append ``rows``: tuples ``(benchmark, variant, batch, images_per_s, s_per_step or None, note)``."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    lines = []
    if "| " + " | ".join(COLUMNS) + " |" not in text:
        lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for bench, variant, batch, rate, seconds, note in rows:
        ms = "" if seconds is None else f"{1000 * seconds:.2f}"
        lines.append(f"| {bench} | {variant} | {batch} | {rate:,.0f} | {ms} | {note} |")
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n")
