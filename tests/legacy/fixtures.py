"""Fixtures for the adoption tests: each legacy shape built once per session as a template
database, and copied (CREATE DATABASE ... TEMPLATE, 0.02 s) for each test.
Test modules load them with `pytest_plugins = ("tests.legacy.fixtures",)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.checks.common import schema_ddl
from tests.legacy.build import build
from tests.legacy.run import FOREIGN, execute
from tests.support import PgServer

CopyOf = Callable[..., str]


class Templates:
    """Each legacy shape built once (on first use) as a template database."""

    def __init__(self, server: PgServer, stack: ExitStack) -> None:
        self.server, self.stack, self.built = server, stack, dict[str, str]()

    def __getitem__(self, shape: str) -> str:
        if shape not in self.built:
            name = self.stack.enter_context(self.server.database("legacy"))
            build(self.server.url(name), shape)
            self.built[shape] = name
        return self.built[shape]


@pytest.fixture(scope="session")
def legacy(pg_server: PgServer) -> Iterator[Templates]:
    """legacy[shape] -> the template database of that shape (tests/legacy/build.py)."""
    with ExitStack() as stack:
        yield Templates(pg_server, stack)


@pytest.fixture
def copy_of(pg_server: PgServer, legacy: Templates) -> Iterator[CopyOf]:
    """copy_of(shape, foreign=False) -> the name of a new copy of that legacy shape
    (foreign: with other tools' tables and rows beside it), dropped after the test."""
    with ExitStack() as stack:

        def make(shape: str, *, foreign: bool = False) -> str:
            name = stack.enter_context(pg_server.database("adopt", template=legacy[shape]))
            if foreign:
                execute(pg_server, name, FOREIGN)
            return name

        yield make


@pytest.fixture(scope="module")
def fresh_ddl(pg_server: PgServer, head_template: str) -> str:
    """pg_dump of a database `alembic upgrade head` built, with the same neighbours."""
    with pg_server.database("fresh", template=head_template) as name:
        execute(pg_server, name, FOREIGN)
        return schema_ddl(pg_server, name)
