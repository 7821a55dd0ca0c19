"""Validate the CHECKs of 0005-0007 on the rows that existed before them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 06:09:00+00:00

Written by hand (no model change: the CHECKs are already in the models). 0005, 0006 and
0007 added their CHECKs NOT VALID, in the same transaction as their columns, which holds
ACCESS EXCLUSIVE only for a catalog change. VALIDATE CONSTRAINT scans the existing rows
under SHARE UPDATE EXCLUSIVE, which lets reads and writes through, so this revision runs
alone in its own transaction. A row that breaks a rule (possible only if it was written
between 0005 and this revision by a client bypassing the new rules) fails the upgrade with
the constraint's name; fix the row and deploy again. The downgrade puts the CHECKs back to
NOT VALID, exactly as 0007 left them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS = {
    "ck_tasks_recurring_needs_due_date": "recurring = 'none' OR due_date IS NOT NULL",
    "ck_tasks_recurring_end_date_valid": (
        "recurring_end_date IS NULL OR (recurring <> 'none' AND recurring_end_date >= due_date)"
    ),
    "ck_tasks_tags_valid": "tasks_tags_valid(tags)",
}


def upgrade() -> None:
    for name in CHECKS:
        op.execute(f"ALTER TABLE tasks VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    for name, condition in CHECKS.items():
        op.drop_constraint(op.f(name), "tasks", type_="check")
        op.create_check_constraint(op.f(name), "tasks", condition, postgresql_not_valid=True)
