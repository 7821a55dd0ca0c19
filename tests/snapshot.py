"""Regenerate migrations/schema.sql, the committed DDL of `alembic upgrade head` (and
migrations/adoption/revisions.json, each revision's schema as adoption compares it).

    python -m tests.snapshot            # rewrite migrations/schema.sql
    python -m tests.snapshot --check    # exit 1 with the diff if it is stale

Run from the project root. Needs no DATABASE_URL: it upgrades a database on a throwaway
embedded PostgreSQL (or on TEST_DATABASE_URL's server when that is set).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from migrations.adoption.recognise import REVISIONS
from tests.checks import SNAPSHOT, SchemaCheckError, compare_snapshot, render_snapshot
from tests.legacy.revisions import compare_revisions, render_revisions
from tests.support import ROOT, alembic_config, open_server


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the snapshot; 0 on success, 1 when stale or failed."""
    parser = argparse.ArgumentParser(prog="python -m tests.snapshot", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    parser.add_argument("--output", type=Path, default=SNAPSHOT, help="default: %(default)s")
    args = parser.parse_args(argv)
    notices = logging.getLogger("models")  # the one line naming other tools' tables, if any
    notices.setLevel(logging.INFO)
    notices.addHandler(logging.StreamHandler())
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    try:
        with tempfile.TemporaryDirectory(prefix="pg-") as tmp, open_server(Path(tmp)) as server:
            text = render_snapshot(alembic_config(), server)
            # The revisions' schemas for adoption (migrations/adoption/revisions.json).
            adoption = render_revisions(alembic_config(), server) if args.output == SNAPSHOT else ""
        if args.check:
            compare_snapshot(text, args.output)
            if adoption:
                compare_revisions(adoption)
            print(f"{shown} is current.")
            return 0
    except SchemaCheckError as exc:
        print(exc, file=sys.stderr)
        return 1
    args.output.write_text(text)
    if adoption:
        REVISIONS.write_text(adoption)
    print(f"Wrote {shown}: review the diff and commit it with the revision.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
