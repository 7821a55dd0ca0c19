"""8. Migration lint: squawk on each revision's own `upgrade <parent>:<rev> --sql`, for
locks and rewrites on a live table. Rules off for every revision: .squawk.toml; for one
revision: its schema_check_exceptions ({"lint:<rule>": "<reason>"})."""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import Script

from tests.checks.common import SchemaCheckError, history, name, revision_sql
from tests.checks.exceptions import LINT, excepted
from tests.support import ROOT

SQUAWK_CONFIG = ROOT / ".squawk.toml"


def squawk_binary() -> str:
    """The squawk executable of this environment (pip install -e '.[test]')."""
    found = shutil.which("squawk", path=sysconfig.get_path("scripts")) or shutil.which("squawk")
    if found is None:
        raise SchemaCheckError("squawk is not installed: run pip install -e '.[test]'")
    return found


def squawk(files: dict[str, str], squawk_config: Path) -> list[dict[str, Any]]:
    """squawk's findings (JSON) on SQL files given as name -> text."""
    with tempfile.TemporaryDirectory(prefix="squawk-") as tmp:
        for file, sql in files.items():
            (Path(tmp) / file).write_text(sql)
        run = subprocess.run(
            [squawk_binary(), "--config", str(squawk_config), "--reporter", "json", *files],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        found: list[dict[str, Any]] = json.loads(run.stdout or "[]")
    except json.JSONDecodeError:
        found = []
    if run.returncode not in (0, 1) or (run.returncode == 1 and not found):
        raise SchemaCheckError(f"squawk failed to run: {(run.stderr or run.stdout).strip()}")
    return found


def check_lint(cfg: Config, squawk_config: Path = SQUAWK_CONFIG) -> None:
    """8. squawk finds nothing that locks or rewrites a live table in any revision's SQL."""
    files: dict[str, tuple[Script, str]] = {
        Path(rev.path).stem + ".sql": (rev, revision_sql(cfg, rev)) for rev in history(cfg)
    }
    found = squawk({f: sql for f, (_, sql) in files.items()}, squawk_config)
    report = []
    for v in found:
        rev, sql = files[Path(v["file"]).name]
        if excepted(rev, LINT + v["rule_name"]):
            continue
        lines, line = sql.splitlines(), int(v["line"])
        statement = lines[line].strip() if 0 <= line < len(lines) else ""
        report.append(
            f"  - revision {name(rev)}, SQL line {line + 1}: {v['rule_name']}: {v['message']}"
            + (f" Help: {v['help']}" if v.get("help") else "")
            + (f"\n      {statement}" if statement else "")
        )
    if report:
        raise SchemaCheckError(
            f"squawk found {len(report)} operation(s) that lock or rewrite a live table "
            "(SQL from `alembic upgrade <parent>:<revision> --sql`).\n"
            + "\n".join(report)
            + "\nChange the revision; if a rule cannot apply to it (e.g. a varchar widening, "
            "which rewrites nothing), waive it there with the reason: "
            'schema_check_exceptions = {"lint:<rule>": "<why>"}'
        )
