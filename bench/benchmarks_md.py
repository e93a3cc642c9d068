"""BENCHMARKS.md: each benchmark script owns one `## ` section and replaces only that one."""

from __future__ import annotations

import platform
from pathlib import Path

from pipeline.report_results import replace_section as replace_markdown_section
from tcwae.atomic import write_text_atomically

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def cpu_model() -> str:
    """The CPU's model name, so that every section says which machine its figures come from."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def replace_section(path: Path, heading: str, body: str) -> None:
    """Put `heading` and `body` in place of the section with that heading (or append them),
    keeping the rest of the file; written under a temporary name and renamed."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    write_text_atomically(path, replace_markdown_section(text, heading, body), mode | 0o444)
