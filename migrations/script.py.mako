"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Review before committing (docs/workflow.md): names come from the naming
convention, server defaults are explicit, an enum is varchar + a named CHECK or a native
type created before its column and dropped after it (new values: ops.add_enum_value, in
a revision of their own), an index on an existing table is built CONCURRENTLY
(migrations/ops.py) in a revision of its own, a CHECK or foreign key on an existing
table is added NOT VALID and validated by the next revision, every
schema_check_exceptions entry has a true reason, downgrade() removes exactly what
upgrade() adds, and nothing is imported from models/.
"""

from collections.abc import Sequence

<%
    body = f"{upgrades or ''}\n{downgrades or ''}".splitlines()
    empty = all(not line.strip() or line.strip() == "pass" or line.strip().startswith("#") for line in body)
%>\
% if not empty:
import sqlalchemy as sa
from alembic import op
% else:
import sqlalchemy as sa  # noqa: F401  (for the code you write below; then drop the noqa)
from alembic import op  # noqa: F401
% endif
${imports if imports else ""}
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
