"""A pytest plugin (`-p bench.suite_plugin`) that writes where a test run's time went as JSON."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Generator
from typing import Any

import pytest

OUT = "BENCH_SUITE_OUT"
FIXTURES = {"pg_server": "postgres_start", "engine": "migrate"}
marks: dict[str, float] = defaultdict(float)
per_test: dict[str, float] = defaultdict(float)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Generator[None, object, object]:
    """Time the set-up of the session fixtures that start and migrate PostgreSQL."""
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        if fixturedef.argname in FIXTURES:
            marks[FIXTURES[fixturedef.argname]] += time.perf_counter() - start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    """Time the last teardown: it drops the database and stops the server."""
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        if nextitem is None:
            marks["final_teardown"] += time.perf_counter() - start


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    marks["loop_start"] = time.time()
    try:
        return (yield)
    finally:
        marks["loop_end"] = time.time()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        per_test[report.nodeid] = report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(OUT)
    if path:
        with open(path, "w") as out:
            json.dump({"marks": marks, "tests": per_test, "failed": session.testsfailed}, out)
