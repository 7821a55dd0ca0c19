"""The project's one error type for problems a user can fix."""


class DatabaseError(RuntimeError):
    """A configuration or database problem explained in one line that is safe to print."""
