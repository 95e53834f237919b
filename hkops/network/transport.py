"""Transports carry command lines to an HLR and bring the reply lines back, in order.

A transport knows nothing of retries or of the protocol's meaning: it sends a batch of
lines and returns the replies, or raises a :class:`~hkops.network.errors.TransportError`
holding the replies that did arrive. :class:`TcpTransport` is the real link;
:class:`InProcessTransport` calls a :class:`~hkops.network.simulator.Simulator` directly.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from typing import Sequence

from hkops.network.errors import ConnectionLost, ReplyTimeout


class Transport:
    """The interface: ``exchange(lines, timeout) -> replies`` and ``close()``."""

    def exchange(self, lines: Sequence[str], timeout: float) -> list[str]:
        """Send ``lines`` (commands without line ends) and return one reply line per line.

        Args:
            timeout: seconds to wait for each next reply.

        Raises:
            ConnectionLost, ReplyTimeout: with ``replies`` for the first commands.
        """
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessTransport(Transport):
    """Hands the lines to a simulator in this process (its faults apply, its latency sleeps)."""

    def __init__(self, simulator):
        self.simulator = simulator
        self._lock = threading.Lock()

    def exchange(self, lines: Sequence[str], timeout: float) -> list[str]:
        with self._lock:
            replies, dropped = self.simulator.handle_many(lines)
        if dropped:
            raise ConnectionLost("the simulator dropped the connection", replies)
        return replies


class TcpTransport(Transport):
    """One persistent TCP connection, opened on first use and again after a failure.

    Batches are pipelined: up to ``window`` commands are written before their replies
    are read, so a batch costs one round trip per ``window`` commands.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 7500, *, connect_timeout: float = 3.0,
                 window: int = 256):
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self.window = window
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lines: deque[str] = deque()
        self._lock = threading.Lock()
        self.connects = 0

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as error:
            raise ConnectionLost(f"cannot connect to the HLR at {self.host}:{self.port}: {error}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buffer = b""
        self._lines.clear()
        self.connects += 1

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buffer = b""
        self._lines.clear()

    def _readline(self) -> str:
        while not self._lines:
            data = self._sock.recv(1 << 16)
            if not data:
                raise EOFError
            parts = (self._buffer + data).split(b"\n")
            self._buffer = parts.pop()
            self._lines.extend(part.decode("utf-8", "replace") for part in parts)
        return self._lines.popleft()

    def exchange(self, lines: Sequence[str], timeout: float) -> list[str]:
        with self._lock:
            if self._sock is None:
                self._connect()
            replies: list[str] = []
            try:
                self._sock.settimeout(timeout)
                for start in range(0, len(lines), self.window):
                    chunk = lines[start:start + self.window]
                    self._sock.sendall(("\n".join(chunk) + "\n").encode())
                    for _ in chunk:
                        replies.append(self._readline())
            except socket.timeout:
                self._drop()
                raise ReplyTimeout(f"no reply from {self.host}:{self.port} within {timeout} s", replies) from None
            except (OSError, EOFError) as error:
                self._drop()
                why = "connection closed" if isinstance(error, EOFError) else str(error)
                raise ConnectionLost(f"lost the connection to {self.host}:{self.port}: {why}", replies) from None
            return replies

    def close(self) -> None:
        with self._lock:
            self._drop()
