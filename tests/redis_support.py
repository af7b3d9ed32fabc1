"""A real redis-server for the cluster tests, and a loopback TCP proxy that
adds latency or drops connections between a client and it.

``RedisServer`` starts Debian's redis-server on a free 127.0.0.1 port with
no persistence; ``kill()`` sends SIGKILL, ``start()`` brings it back on the
same port (empty: no persistence), ``stop()`` ends it. ``FaultProxy`` sits
in front of a port: ``delay`` seconds added to every chunk each way,
``drop()`` closes every connection and refuses new ones until ``heal()``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str, up: bool = True) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
            assert proc is None or proc.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not {'start' if up else 'stop'}"
        time.sleep(0.02)


class RedisServer:
    """One redis-server process on 127.0.0.1, restartable on its port."""

    def __init__(self, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (make test installs it)"
        self.exe = exe
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--enable-debug-command", "local"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "redis-server")
        client = self.client()
        deadline = time.monotonic() + 10
        while True:  # answering PING, not only accepting
            try:
                client.ping()
                break
            except Exception:
                assert time.monotonic() < deadline, "redis-server does not answer"
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, with its data."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def client(self, **kwargs: Any) -> Any:
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def async_client(self, **kwargs: Any) -> Any:
        import redis.asyncio
        return redis.asyncio.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def flush(self) -> None:
        c = self.client()
        c.flushall()
        c.close()


class FaultProxy:
    """A loopback TCP proxy to ``127.0.0.1:target`` on its own ``port``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.delay = 0.0
        self._dropped = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._dropped:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop(self) -> None:
        """Closes every connection; new ones are closed at once until heal()."""
        self._dropped = True
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def heal(self) -> None:
        self._dropped = False

    def close(self) -> None:
        self._closed = True
        self.drop()
        self._listener.close()

    def client(self, **kwargs: Any) -> Any:
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the test module, emptied before each test that
    also takes ``redis_clean``."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_clean(redis_server: RedisServer) -> RedisServer:
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    redis_server.flush()
    return redis_server
