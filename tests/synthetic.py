"""Small revision histories of the tests' own, to prove that each schema check can fail.

They never build on the project's head: a broken project revision then fails its checks
once (tests/test_schema_checks.py), not once more in every proof.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy import MetaData

from migrations.rls import INFO_KEY, policy_data
from models.naming import NAMING_CONVENTION
from models.policies import APP_ROLE, Access, own_rows_only, through_parent
from tests.support import alembic_config, revision

# 0001 of every synthetic history: one small table with a CHECK.
BASE = revision(
    "0001",
    None,
    """
    op.create_table(
        "items",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("name <> ''", name=op.f("ck_items_name_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
    )
    """,
    'op.drop_table("items")',
)


def history(tmp_path: Path, **files: str) -> Config:
    """An alembic configuration whose only revisions are BASE (0001) and files (name ->
    source, see tests.support.revision), run by the project's env.py."""
    versions = tmp_path / "versions"
    versions.mkdir(parents=True)
    for file, source in {"0001_base": BASE, **files}.items():
        (versions / f"{file}.py").write_text(source)
    return alembic_config(version_locations=str(versions))


def base_metadata() -> tuple[MetaData, sa.Table]:
    """The models that BASE implements, to change in a test."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    items = sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("note", sa.Text()),
        sa.CheckConstraint("name <> ''", name="name_not_empty"),
    )
    return metadata, items


# A tenant table (folders, with user_id) and a child table reached through it (notes,
# without one), for the row-level security proofs: 0002 creates them, 0003 protects them
# as DECLARED says (what autogenerate writes for them: tests/test_rls_tables.py).
TENANT_TABLES = revision(
    "0002",
    "0001",
    """
    op.create_table(
        "folders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folders")),
    )
    op.create_index(op.f("ix_folders_user_id"), "folders", ["user_id"])
    op.create_table(
        "notes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("folder_id", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name=op.f("fk_notes_folder_id_folders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    op.create_index(op.f("ix_notes_folder_id"), "notes", ["folder_id"])
    """,
    'op.drop_table("notes")\nop.drop_table("folders")',
)


def declared_tenant_tables() -> dict[str, Access]:
    """The row-level security of folders (own rows) and notes (through their folder)."""
    return {
        "folders": Access(
            own_rows_only("folders"),
            ("SELECT", "INSERT (user_id, name)", "UPDATE (name)", "DELETE"),
        ),
        "notes": Access(
            through_parent("notes", parent="folders", fk="folder_id"),
            ("SELECT", "INSERT (folder_id, body)", "UPDATE (folder_id, body)", "DELETE"),
        ),
    }


def protect(rev: str, down: str, declared: dict[str, Access]) -> str:
    """A revision putting each declared table under row-level security in one call."""
    up: list[str] = []
    back: list[str] = []
    for table, access in declared.items():
        args = f"{table!r}, {[policy_data(p) for p in access.policies]!r}, {list(access.grants)!r}"
        up.append(f"ops.enable_row_level_security({args}, to={APP_ROLE!r})")
        back.insert(0, f"ops.disable_row_level_security({args}, to={APP_ROLE!r})")
    return revision(rev, down, "\n".join(up), "\n".join(back), imports="from migrations import ops")


def tenant_history(tmp_path: Path, **files: str) -> Config:
    """BASE, TENANT_TABLES and their row-level security (0003), then files."""
    return history(
        tmp_path,
        a0002_tenant_tables=TENANT_TABLES,
        a0003_protect=protect("0003", "0002", declared_tenant_tables()),
        **files,
    )


def tenant_metadata() -> MetaData:
    """The models of tenant_history: BASE's, folders and notes, and their declaration."""
    metadata, _ = base_metadata()
    sa.Table(
        "folders",
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("user_id", sa.String(255), nullable=False, index=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    sa.Table(
        "notes",
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("folder_id", sa.ForeignKey("folders.id"), nullable=False, index=True),
        sa.Column("body", sa.Text(), nullable=False),
    )
    metadata.info[INFO_KEY] = declared_tenant_tables()
    return metadata
