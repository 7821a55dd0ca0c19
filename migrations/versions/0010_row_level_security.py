"""Tenant isolation in the database: row-level security on every table with a user_id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 06:10:00+00:00

Written by hand (autogenerate cannot see policies or grants); the declaration it must
match is models/policies.py, and the schema checks compare the two.

For each table in TABLES: row-level security is enabled and FORCED (the owner is not
exempt by accident), the app role may read and write only the rows whose user_id is the
transaction's `app.user_id` (none set, or '', matches no row: fail closed), and the owner
(the role running this migration, and later backfills) keeps every row through a policy
of its own, not through a setting the app role could change. The app role gets SELECT,
INSERT, UPDATE, DELETE on the tables and USAGE on their sequences, nothing more.

The app role `todo_app` is server-wide, so this revision requires it and neither creates
nor drops it (docs/security.md). Only catalog changes: no row is touched, and the
ALTER TABLEs hold their lock for milliseconds. Downgrade removes all of it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "todo_app"
# Every table with a user_id column (the schema checks fail on one left out).
TABLES = ("tasks",)
OWN_ROWS = "user_id = (SELECT NULLIF(current_setting('app.user_id', true), ''))"

OWNED = ", ".join(f"'{table}'::regclass" for table in TABLES)
# The role must exist and be one row-level security restricts: not a superuser, no
# BYPASSRLS, and (a check added after release, no schema change) no member of the tables'
# owner or of such a role, whose rights a member may use (SET ROLE, or inherited), and not
# the owner itself.
REQUIRE_ROLE = f"""
DO $$
DECLARE unsafe boolean;
BEGIN
    SELECT rolsuper OR rolbypassrls INTO unsafe FROM pg_roles WHERE rolname = '{APP_ROLE}';
    IF unsafe IS NULL THEN
        RAISE EXCEPTION 'role {APP_ROLE} does not exist: create it first (CREATE ROLE '
            '{APP_ROLE} LOGIN PASSWORD ''...''; see docs/security.md)';
    ELSIF unsafe THEN
        RAISE EXCEPTION 'role {APP_ROLE} is a superuser or has BYPASSRLS, which row-level '
            'security cannot stop: ALTER ROLE {APP_ROLE} NOSUPERUSER NOBYPASSRLS';
    ELSIF EXISTS (
        SELECT FROM pg_roles r
        WHERE pg_has_role('{APP_ROLE}', r.oid, 'MEMBER')
          AND (r.rolsuper OR r.rolbypassrls OR r.oid IN (
              SELECT relowner FROM pg_class WHERE oid = ANY (ARRAY[{OWNED}])))
    ) THEN
        RAISE EXCEPTION 'role {APP_ROLE} owns the tables, or is a member (directly or through '
            'other roles) of their owner, of a superuser or of a BYPASSRLS role, which '
            'row-level security cannot stop: REVOKE that membership (\\du {APP_ROLE} shows it)';
    END IF;
END $$
"""


def policies(table: str) -> list[tuple[str, str]]:
    """(name, the rest of CREATE POLICY name ON table ...) for one table."""
    app = f"AS PERMISSIVE FOR {{}} TO {APP_ROLE}"
    return [
        (f"pl_{table}_select", f"{app.format('SELECT')} USING ({OWN_ROWS})"),
        (f"pl_{table}_insert", f"{app.format('INSERT')} WITH CHECK ({OWN_ROWS})"),
        (
            f"pl_{table}_update",
            f"{app.format('UPDATE')} USING ({OWN_ROWS}) WITH CHECK ({OWN_ROWS})",
        ),
        (f"pl_{table}_delete", f"{app.format('DELETE')} USING ({OWN_ROWS})"),
        (
            f"pl_{table}_migrations",
            "AS PERMISSIVE FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true)",
        ),
    ]


def upgrade() -> None:
    op.execute(REQUIRE_ROLE)
    for table in TABLES:
        for name, rest in policies(table):
            op.execute(f"CREATE POLICY {name} ON {table} {rest}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"GRANT USAGE ON SEQUENCE {table}_id_seq TO {APP_ROLE}")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"REVOKE USAGE ON SEQUENCE {table}_id_seq FROM {APP_ROLE}")
        op.execute(f"REVOKE SELECT, INSERT, UPDATE, DELETE ON {table} FROM {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        for name, _ in reversed(policies(table)):
            op.execute(f"DROP POLICY {name} ON {table}")
