"""Output of the bench scripts: a Markdown table printed, and optionally written to a file."""

from __future__ import annotations

from pathlib import Path


def emit_table(lines: list[str], out: Path | None) -> str:
    """Print the table made of `lines` and write it to `out` (folders created) when given."""
    table = "\n".join(lines)
    print(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
    return table
