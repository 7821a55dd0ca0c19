"""12. Reviewed exceptions: a revision may waive one check for itself, in writing.

A revision file declares, at module level, next to the code a reviewer reads:

    schema_check_exceptions = {
        "lint:changing-column-type": "varchar(100) -> varchar(200) is catalog-only",
        "data-survives": "contract step: description_old was copied to description in 0007",
    }

The key is a check id (below, or `lint:<squawk rule>`), the value the reason. Each check
honours it for that revision alone; an unknown key or an empty reason fails.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from alembic.config import Config
from alembic.script import Script

from tests.checks.common import SchemaCheckError, history, name

ATTRIBUTE = "schema_check_exceptions"
LINT = "lint:"
# The checks that judge one revision at a time, so that one revision can be waived.
CHECK_IDS = {
    "stairway": "3. stairway (up, down, up; its downgrade leaves no trace)",
    "no-trace": "4. downgrade to base leaves no trace",
    "data-survives": "5. rows reach head unchanged",
    "offline-matches-online": "6. `--sql` builds the same schema",
    "one-transaction": "11. one transaction, or built to be rerun step by step",
}


def declared(rev: Script) -> dict[str, str]:
    """The revision's exceptions, in the agreed shape (else the check fails, naming it)."""
    raw = getattr(rev.module, ATTRIBUTE, {})
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise SchemaCheckError(
            f"Revision {name(rev)}: {ATTRIBUTE} must be a dict of check id -> reason (strings)"
        )
    return raw


def excepted(rev: Script, check_id: str) -> bool:
    """True when the revision waives check_id (a reviewed, non-empty reason)."""
    return bool(declared(rev).get(check_id, "").strip())


def unknown_squawk_rules(rules: set[str], squawk: str) -> list[str]:
    """The names squawk does not know, among rules (squawk itself validates --exclude)."""
    unknown = []
    with tempfile.TemporaryDirectory(prefix="squawk-") as tmp:
        empty = Path(tmp) / "empty.sql"
        empty.write_text("SELECT 1;\n")
        for rule in sorted(rules):
            run = subprocess.run(
                [squawk, f"--exclude={rule}", str(empty)], capture_output=True, check=False
            )
            if run.returncode == 2:
                unknown.append(rule)
    return unknown


def check_exceptions_are_reviewed(cfg: Config) -> None:
    """12. Every declared exception names a known check and gives its reason."""
    from tests.checks.lint import squawk_binary

    problems = []
    lint_rules: dict[str, list[str]] = {}
    for rev in history(cfg):
        for key, reason in declared(rev).items():
            if not reason.strip():
                problems.append(f"{name(rev)}: {key!r} has no reason; say why it is safe here")
            if key.startswith(LINT):
                lint_rules.setdefault(key.removeprefix(LINT), []).append(rev.revision)
            elif key not in CHECK_IDS:
                problems.append(f"{name(rev)}: {key!r} is not a check id")
    if lint_rules:
        for rule in unknown_squawk_rules(set(lint_rules), squawk_binary()):
            revs = ", ".join(lint_rules[rule])
            problems.append(f"revision {revs}: 'lint:{rule}' is not a squawk rule")
    if problems:
        known = ", ".join([*CHECK_IDS, "lint:<squawk rule>"])
        raise SchemaCheckError(
            f"{ATTRIBUTE} has {len(problems)} problem(s): each key is a check id ({known}), "
            "each value the reviewed reason.\n" + "\n".join(f"  - {p}" for p in problems)
        )
