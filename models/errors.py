"""The project's error types: problems a user can fix, each explained in one line."""

from __future__ import annotations

from typing import Any


class DatabaseError(RuntimeError):
    """A configuration or database problem explained in one line that is safe to print."""


class InvalidArgument(ValueError):
    """A bad argument to a data-access function: an HTTP API answers it with 422.

    Raised for an invalid owner id, a page size out of range, a malformed cursor, or a
    task that breaks a rule (never a pydantic or driver exception). `errors()` is in the
    shape of FastAPI's 422 `detail`: `[{"loc": [...], "msg": ..., "type": ...}]`.
    """

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self._errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))

    @classmethod
    def of(cls, field: str, message: str, type_: str = "value_error") -> InvalidArgument:
        """One bad argument."""
        return cls([{"loc": [field], "msg": message, "type": type_}])

    def errors(self) -> list[dict[str, Any]]:
        """The problems, FastAPI-style: what a route puts in a 422's `detail`."""
        return [dict(e) for e in self._errors]


class NothingToUpdate(InvalidArgument):
    """An update that sets no field: CLIENT.md's PATCH answers it with 400 "No fields to update"."""

    status_code = 400
    MESSAGE = "No fields to update"

    def __init__(self) -> None:
        super().__init__([{"loc": ["body"], "msg": self.MESSAGE, "type": "no_fields"}])


class Conflict(RuntimeError):
    """An update's precondition failed: the task changed (its updated_at moved) since the
    client read it. An HTTP API answers 412 Precondition Failed (If-Match) or 409; the
    client reads the task again, applies its change, and retries."""

    status_code = 412
