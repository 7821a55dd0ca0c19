"""9. Revisions stand alone: no revision imports application code (models/, sqlmodel,
tests/, bench/), directly or through a helper module, so it keeps working after the
models change."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic.config import Config

from tests.checks.common import SchemaCheckError, history
from tests.support import ROOT

FORBIDDEN_IMPORTS = ("models", "sqlmodel", "tests", "bench")
_ISOLATED_IMPORT = """
import importlib.abc, importlib.util, json, sys
blocked = set(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"it needs {name}, which a revision must not import")
sys.meta_path.insert(0, Block())
for path in sys.argv[2:]:
    spec = importlib.util.spec_from_file_location("revision_under_test", path)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except Exception as exc:
        print(f"{path}: {type(exc).__name__}: {exc}")
"""


def _imports(path: str, forbidden: Sequence[str]) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(Path(path).read_text(), path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for imported in names:
            if imported.split(".")[0] in forbidden:
                problems.append(f"{Path(path).name}:{node.lineno} imports {imported}")
    return problems


def check_revisions_stand_alone(cfg: Config, forbidden: Sequence[str] = FORBIDDEN_IMPORTS) -> None:
    """9. No revision imports application code, directly or through a helper module.

    The source of each revision is searched for imports of the forbidden packages, and
    each revision is loaded in a fresh interpreter in which they cannot be imported.
    """
    revisions = history(cfg)
    problems = [p for rev in revisions for p in _imports(rev.path, forbidden)]
    loaded = subprocess.run(
        [sys.executable, "-c", _ISOLATED_IMPORT, json.dumps(list(forbidden))]
        + [rev.path for rev in revisions],
        cwd=ROOT,
        # The same import path as this process, so helper modules resolve as they do here.
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        capture_output=True,
        text=True,
        check=False,
    )
    problems += [
        f"{Path(line.split(': ', 1)[0]).name} cannot be loaded without application code: "
        f"{line.split(': ', 1)[-1]}"
        for line in loaded.stdout.splitlines()
    ]
    if loaded.returncode != 0:
        problems.append(f"loading the revisions failed: {loaded.stderr.strip()}")
    if problems:
        raise SchemaCheckError(
            f"Revisions depend on application code ({', '.join(forbidden)}): they break "
            "when the models change. Copy the value or the type into the revision.\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
