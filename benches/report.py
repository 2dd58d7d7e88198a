"""Shared pieces of the benchmark reports: machine facts and one section per script.

``benches/RESULTS.md`` is the concatenation of sections, each owned by one bench script and
fenced by ``<!-- NAME: begin -->`` / ``<!-- NAME: end -->`` markers, so each script can be
re-run alone without losing the others' tables.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replaces section ``name`` of the report (or appends it), keeping every other section."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section + "\n"
    path.write_text(text)
