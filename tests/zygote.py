"""Test processes without paying for their imports: a pre-started Python forks each one.

Every `alembic ...` and `python -m/-c ...` process a test starts spends ~0.45 s of CPU
importing SQLAlchemy, Alembic and psycopg2 before it does anything, and the suite starts
dozens (most of its CPU on two cores). This module's server (the "zygote") is one Python
per pytest process that has imported exactly those three, and nothing of the project:
no `models`, `migrations`, `tests`, sqlmodel or pydantic. For each process a test asks
for, it forks; the child takes the test's stdin/stdout/stderr (passed over a Unix socket),
its environment, working directory and argv, runs `-m module` (runpy, as `python -m`
does) or `-c code`, and exits as that process would (atexit handlers, non-daemon
threads joined, exit status). It is a real process: its own pid, signals, exit code and
pipes; what it imports from the project it imports fresh, from the same files.

Not a shortcut for what a deploy runs: the same entry point (`alembic`'s `__main__`), the
same import path and connection; only the start is warm. Schema check 10 (the command line
builds the same DDL as the checks) and the deploy benchmark still exec a cold
interpreter. `ZYGOTE=0` in the environment turns it off (every process cold).

Client side: `start(argv, env=..., cwd=...)` returns a `subprocess.Popen`-like `Child`.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PRELOAD = ("alembic.config", "sqlalchemy.dialects.postgresql.psycopg2", "psycopg2")
PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL


# ------------------------------------------------------------------ the child's side


def _stdio(env: Mapping[str, str]) -> None:
    """sys.stdin/stdout/stderr on fds 0-2, buffered as a new interpreter buffers them."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
        encoding="utf-8",
        line_buffering=os.isatty(1),
        write_through=unbuffered,
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=unbuffered,
    )


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: take the request's fds, environment, cwd and argv, and run it.
    Raises SystemExit with its status, which ends this interpreter normally."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    env: dict[str, str] = request["env"]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
    _stdio(env)
    mode, what, *args = request["argv"]
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    if mode == "-m":
        import runpy

        sys.argv = [what, *args]  # runpy puts the module's path in argv[0]
        sys.path[0] = os.getcwd()
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        sys.path[0] = ""
        main.__dict__["__builtins__"] = __builtins__
        exec(compile(what, "<string>", "exec"), main.__dict__)
    raise SystemExit(0)


def serve(path: str) -> None:
    """The zygote: preload, then fork a child per request until stdin closes (the pytest
    process that started it has ended)."""
    for name in PRELOAD:
        __import__(name)
    zygote = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    selector.register(sys.stdin, selectors.EVENT_READ, "parent")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in selector.select():
            if key.data == "parent":  # the pytest process is gone: so are we
                if os.getpid() == zygote:
                    os.unlink(path)
                return
            if key.data == "child":
                os.read(wake_r, 4096)
                while waiting:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    conn = waiting.pop(pid, None)
                    if conn is not None:
                        with contextlib.suppress(OSError):
                            conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
                        conn.close()
                continue
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                selector.close()
                listener.close()
                conn.close()
                os.close(wake_r)
                os.close(wake_w)
                for other in waiting.values():
                    other.close()
                _become(request, fds)
            for fd in fds:
                os.close(fd)
            conn.sendall(b"%d\n" % pid)
            waiting[pid] = conn


# ------------------------------------------------------------------ the test's side


class Child:
    """A process forked by the zygote, with the part of `subprocess.Popen` tests use."""

    def __init__(
        self,
        argv: Sequence[str],
        conn: socket.socket,
        pid: int,
        stdin: IO[str] | None,
        stdout: IO[str] | None,
        stderr: IO[str] | None,
    ) -> None:
        self.args = list(argv)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._conn = conn
        self._buffer = b""

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not self._read(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def _read(self, timeout: float | None) -> bool:
        """Wait up to timeout for the exit status; True once known."""
        self._conn.settimeout(timeout)
        try:
            while b"\n" not in self._buffer:
                chunk = self._conn.recv(64)
                if not chunk:
                    raise RuntimeError(f"the zygote lost process {self.pid}")
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            return False
        self.returncode = int(self._buffer.split(b"\n", 1)[0])
        self._conn.close()
        return True

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[Any, Any]:
        """Send input, read stdout and stderr to their end, and wait (as Popen does)."""
        out: dict[int, list[str]] = {}

        def drain(stream: IO[str] | None) -> threading.Thread | None:
            if stream is None:
                return None
            out[id(stream)] = parts = []
            reader = threading.Thread(target=lambda: parts.append(stream.read()), daemon=True)
            reader.start()
            return reader

        readers = [drain(self.stdout), drain(self.stderr)]
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                if input:
                    self.stdin.write(input)
                self.stdin.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            if reader is not None:
                reader.join(None if deadline is None else max(0, deadline - time.monotonic()))
                if reader.is_alive():
                    raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0, deadline - time.monotonic()))
        results: list[str | None] = []
        for stream in (self.stdout, self.stderr):
            if stream is None:
                results.append(None)
            else:
                results.append("".join(out[id(stream)]))
                stream.close()
        return results[0], results[1]

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.returncode is None:
            self.wait()


class Zygote:
    """The client of one zygote process (started on first use, one per pytest process)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="zygote-")
        self.path = str(Path(self._dir) / "sock")
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self._process = subprocess.Popen(
            [sys.executable, __file__, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=self._dir,
            env=base,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the test zygote did not start")
        atexit.register(self.close)

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(10)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | os.PathLike[str],
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> Child:
        """Fork a child running `python *argv` (argv starts with -m or -c)."""
        if argv[0] not in ("-m", "-c"):
            raise ValueError("the zygote runs `-m module ...` or `-c code ...` only")
        mine: list[int] = []  # our ends of pipes
        theirs: list[int] = []  # what the child gets as 0, 1, 2
        streams: list[IO[str] | None] = []
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for fd_number, how in enumerate((stdin, stdout, stderr)):
                if how == PIPE:
                    read, write = os.pipe()
                    ours, child = (write, read) if fd_number == 0 else (read, write)
                    mine.append(ours)
                    theirs.append(child)
                    streams.append(open(ours, "w" if fd_number == 0 else "r", encoding="utf-8"))  # noqa: SIM115
                elif how == STDOUT and fd_number == 2:
                    theirs.append(os.dup(theirs[1]))
                    streams.append(None)
                elif how == DEVNULL or how is None:
                    theirs.append(os.dup(devnull) if how == DEVNULL else os.dup(fd_number))
                    streams.append(None)
                else:
                    theirs.append(os.dup(how))
                    streams.append(None)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(self.path)
            request = {"argv": list(argv), "env": dict(env), "cwd": str(cwd)}
            socket.send_fds(conn, [json.dumps(request).encode()], theirs)
        finally:
            os.close(devnull)
            for fd in theirs:
                os.close(fd)
        pid = b""
        while not pid.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                raise RuntimeError("the test zygote did not fork")
            pid += chunk
        return Child(argv, conn, int(pid), *streams)


_zygote: Zygote | None = None
_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get("ZYGOTE", "1") != "0" and hasattr(socket, "send_fds")


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> Child | subprocess.Popen[str]:
    """`python *argv` as a child of the zygote (a cold `subprocess.Popen` when it is off)."""
    global _zygote
    if not enabled():
        return subprocess.Popen(
            [sys.executable, *argv],
            env=dict(env),
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    with _lock:
        if _zygote is None:
            _zygote = Zygote()
        zygote = _zygote
    return zygote.start(argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python *argv` to its end, its output captured (as `subprocess.run`)."""
    child = start(argv, env=env, cwd=cwd, stdin=PIPE, stdout=PIPE, stderr=PIPE)
    try:
        out, err = child.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    assert child.returncode is not None
    return subprocess.CompletedProcess(list(argv), child.returncode, out, err)


if __name__ == "__main__":
    sys.path[0] = os.getcwd()  # not tests/: nothing of the project importable from here
    serve(sys.argv[1])
