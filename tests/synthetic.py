"""Small revision histories of the tests' own, to prove that each schema check can fail.

They never build on the project's head: a broken project revision then fails its checks
once (tests/test_schema_checks.py), not once more in every proof.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy import MetaData

from models.naming import NAMING_CONVENTION
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
