"""The naming convention: every constraint and index gets a predictable name from it.

Its own module, free of sqlmodel and pydantic, so that `alembic upgrade` (migrations/env.py)
applies the very same convention to a revision's operations as the models' metadata does,
without importing the models.
"""

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
