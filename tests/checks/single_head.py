"""1. One head: two branches never merged make `alembic upgrade head` refuse to run."""

from __future__ import annotations

from alembic.config import Config

from tests.checks.common import SchemaCheckError, first_line, name, scripts


def check_single_head(cfg: Config) -> str:
    """1. The history has exactly one head (no branch left unmerged); returns it."""
    script = scripts(cfg)
    try:
        heads = list(script.get_heads())
    except Exception as exc:
        raise SchemaCheckError(f"The revision history cannot be read: {first_line(exc)}") from exc
    if len(heads) == 1:
        return heads[0]
    if not heads:
        raise SchemaCheckError(f"There are no revisions in {script.dir}.")
    lines = []
    for head in sorted(heads):
        rev = script.get_revision(head)
        assert rev is not None
        lines.append(f"  {name(rev)} on top of {rev.down_revision or 'base'}: {rev.doc}")
    raise SchemaCheckError(
        f"The revision history has {len(heads)} heads, so `alembic upgrade head` refuses "
        "to run: two branches were never merged.\n"
        + "\n".join(lines)
        + "\nRebase the newer revision (set its down_revision to the other head), or merge: "
        f"alembic merge -m 'merge heads' {' '.join(sorted(heads))}"
    )
