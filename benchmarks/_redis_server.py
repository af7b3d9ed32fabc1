"""A throw-away redis-server for the benchmarks that talk to Redis.

``LoopbackRedis()`` runs the ``redis-server`` found on PATH (Debian's
package; ``make test`` installs it) on a free 127.0.0.1 port, with no
persistence (no RDB snapshots, no append-only file), so disk writes never
land in a measurement; it returns once the server answers ``PING``.
``close()`` (or leaving the ``with`` block, or the interpreter's exit)
terminates it. One benchmark process starts one and talks to it over
loopback TCP.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

__all__ = ["LoopbackRedis", "redis_server_path"]


def redis_server_path() -> str | None:
    """The redis-server executable on PATH, or None."""
    return shutil.which("redis-server")


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackRedis:
    """A redis-server on 127.0.0.1 at :attr:`port`, up until :meth:`close`."""

    def __init__(self, *, startup: float = 15.0) -> None:
        exe = redis_server_path()
        if exe is None:
            raise RuntimeError("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self.port = _unused_port()
        # The server's log goes to an unnamed file, read back if it fails to start.
        self._log = tempfile.TemporaryFile()
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        atexit.register(self.close)
        self._await_ping(startup)

    def _await_ping(self, startup: float) -> None:
        import redis

        give_up = time.monotonic() + startup
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5,
                            socket_timeout=0.5)
        try:
            while True:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    self._log.seek(0)
                    err = self._log.read()[-2000:].decode(errors="replace")
                    code = self._proc.returncode
                    self.close()
                    raise RuntimeError(f"redis-server exited with {code}: {err}")
                try:
                    if probe.ping():
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        redis.exceptions.BusyLoadingError):
                    pass
                if time.monotonic() > give_up:
                    self.close()
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING "
                                       f"within {startup:g} s")
                time.sleep(0.02)
        finally:
            probe.close()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> Any:
        """A new blocking redis-py client of this server (its own pool)."""
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def async_client(self, **options: Any) -> Any:
        """A new redis.asyncio client of this server (its own pool)."""
        import redis.asyncio
        return redis.asyncio.Redis(host="127.0.0.1", port=self.port, **options)

    def version(self) -> str:
        """The server's ``redis_version``."""
        c = self.client()
        try:
            return str(c.info("server")["redis_version"])
        finally:
            c.close()

    def close(self) -> None:
        """Terminates the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._log.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self) -> LoopbackRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
