"""The schema checks CI runs on every pull request, as plain functions (no pytest needed).

Every check takes an alembic `Config` (its script_location / version_locations are the
revision history under test) and, when it needs a database, a `PgServer` on which it
creates and drops its own throwaway databases. A check returns None when it passes and
raises `SchemaCheckError` when it fails; the message's first line says what is wrong,
the lines below show the difference and what to do. One module per check; what they
share is in `common.py`.

    check_single_head(cfg)                          1. one head, no unmerged branch
    check_models_match(cfg, server)                 2. models == migrations (+ CHECKs, enums)
    check_stairway(cfg, server)                     3. each revision: up, down (no trace), up
    check_downgrade_leaves_no_trace(cfg, server)    4. head -> base gives back every schema
    check_data_survives(cfg, server)                5. rows from every revision reach head intact
    check_offline_matches_online(cfg, server)       6. `upgrade head --sql` via psql == online
    check_snapshot(cfg, server)                     7. migrations/schema.sql is current
    check_lint(cfg)                                 8. squawk on each revision's offline SQL
    check_revisions_stand_alone(cfg)                9. no revision imports application code
    check_cli_matches_checks(cfg, server)          10. the `alembic` process builds the same DDL
    check_one_transaction_or_rerunnable(cfg)       11. no revision mixes both
    check_exceptions_are_reviewed(cfg)             12. waivers name a check and a reason
    check_row_level_security(cfg, server)          13. RLS and grants as declared, every table
    check_definer_functions(cfg, server)           14. SECURITY DEFINER: the bound user's rows only

A revision may waive a per-revision check for itself: `exceptions.py`. Other tools' tables
in a check's database (a server whose template1 holds them) are left out of checks 2, 5
and 7 and named once per Alembic run (migrations/ownership.py, env.py).
"""

from tests.checks.cli import check_cli_matches_checks
from tests.checks.common import SchemaCheckError, history, offline_sql, schema_ddl
from tests.checks.data_survives import check_data_survives
from tests.checks.definer import check_definer_functions
from tests.checks.exceptions import check_exceptions_are_reviewed
from tests.checks.lint import check_lint
from tests.checks.models_match import check_models_match
from tests.checks.no_trace import check_downgrade_leaves_no_trace
from tests.checks.offline import check_offline_matches_online
from tests.checks.rls import check_row_level_security
from tests.checks.single_head import check_single_head
from tests.checks.snapshot import SNAPSHOT, check_snapshot, compare_snapshot, render_snapshot
from tests.checks.stairway import check_stairway
from tests.checks.stand_alone import check_revisions_stand_alone
from tests.checks.transactions import check_one_transaction_or_rerunnable

__all__ = [
    "SNAPSHOT",
    "SchemaCheckError",
    "check_cli_matches_checks",
    "check_data_survives",
    "check_definer_functions",
    "check_downgrade_leaves_no_trace",
    "check_exceptions_are_reviewed",
    "check_lint",
    "check_models_match",
    "check_offline_matches_online",
    "check_one_transaction_or_rerunnable",
    "check_revisions_stand_alone",
    "check_row_level_security",
    "check_single_head",
    "check_snapshot",
    "check_stairway",
    "compare_snapshot",
    "history",
    "offline_sql",
    "render_snapshot",
    "schema_ddl",
]
