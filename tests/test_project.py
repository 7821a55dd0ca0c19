"""The project's promises about itself: README commands and CI.

That revisions stand alone (import no application code) is schema check 9:
tests/test_schema_checks.py.
"""

from __future__ import annotations

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


def test_models_exports_resolve_lazily() -> None:
    """Every public name of `models` resolves; importing the engine helpers skips sqlmodel,
    and the data layer (list, writes, sessions) never imports FastAPI (models.api alone);
    without FastAPI installed every module of models/ still imports, as `alembic check`
    and autogenerate import them all (the README's first command installs no `[api]`)."""
    import subprocess
    import sys

    import models

    assert set(models.__all__) == set(models._HOME)
    for name in models.__all__:
        assert getattr(models, name) is not None
    probe = (
        "import sys, models.db; orm = 'sqlmodel' in sys.modules; "
        "import models.listing, models.crud, models.security; "
        "print(orm, 'fastapi' in sys.modules); "
        "sys.modules['fastapi'] = None; import importlib, pkgutil; "  # as if not installed
        "names = [m.name for m in pkgutil.iter_modules(models.__path__)]; "
        "[importlib.import_module('models.' + name) for name in names]; "
        "print('api' in names and 'all')"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.split() == ["False", "False", "all"], done.stderr
