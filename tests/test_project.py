"""The project's promises about itself: README commands, CI, revisions that stand alone."""

from __future__ import annotations

import ast
import re

from tests.support import ROOT


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_starts_with_two_one_line_commands() -> None:
    """The README's first two code blocks are one line each: upgrade head, then the tests."""
    main, tests = readme_commands()
    assert main.endswith("alembic upgrade head") and "\n" not in main
    assert tests.endswith("pytest") and "\n" not in tests


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run contains the README's test command verbatim, plus ruff and mypy."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()
    assert "ruff check" in ci and "ruff format --check" in ci and "mypy" in ci


def test_revisions_import_nothing_from_the_app() -> None:
    """No revision imports models/ (or sqlmodel), so old revisions survive model changes."""
    for path in (ROOT / "migrations" / "versions").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in {"models", "sqlmodel", "tests"}, path.name
