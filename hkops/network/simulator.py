"""The HLR/HSS simulator: the registry plus injected faults, in-process or as a TCP server.

In-process (notebooks, unit tests)::

    sim = Simulator("data/hlr", error_rate=0.1, seed=1)
    client = ProvisioningClient(InProcessTransport(sim))

As its own process (``hkops hlr serve`` calls :func:`serve`)::

    python -m hkops.network.simulator --port 7500 --data data/hlr --error-rate 0.2 --drop-rate 0.1

Faults, drawn per command from one seeded generator: with ``error_rate`` the command is
answered ``RETCODE = 5001 System busy`` and not applied; with ``drop_rate`` the connection
closes at that command, half the time before applying it and half the time after applying
it but before answering (the client cannot tell which: it must resend with the same REQ).
``latency_ms`` delays every command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass

from hkops.network.protocol import MAX_LINE, ResultCode, format_reply, make_reply, redact
from hkops.network.registry import Registry

log = logging.getLogger("hkops.network.simulator")

DEFAULT_PORT = 7500
_REQ = re.compile(r'REQ\s*=\s*"([A-Za-z0-9._:-]{1,64})"', re.I)


@dataclass
class Faults:
    """What the simulator does wrong on purpose. Rates are shares of commands (0..1)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0

    def __post_init__(self):
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        for name in ("error_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_rate + self.drop_rate > 1.0:
            raise ValueError("error_rate + drop_rate must not exceed 1")


@dataclass
class FaultCounts:
    busy: int = 0
    dropped_before: int = 0
    dropped_after: int = 0


class Simulator:
    """One HLR: a :class:`Registry` (on disk when ``data_dir`` is given) behind fault injection.

    Args:
        data_dir: folder of the registry; None keeps it in memory only.
        latency_ms, error_rate, drop_rate: see :class:`Faults` (also settable later
            through ``simulator.faults``).
        seed: seed of the fault generator (the same seed gives the same faults).
        fsync: make every commit durable; False is faster and survives a process crash
            but not a power cut.
    """

    def __init__(self, data_dir=None, *, latency_ms: float = 0.0, error_rate: float = 0.0, drop_rate: float = 0.0,
                 seed: int | None = None, fsync: bool = True, remember: int = 200_000):
        self.faults = Faults(latency_ms, error_rate, drop_rate)
        self.registry = Registry(data_dir, fsync=fsync, remember=remember)
        self.fault_counts = FaultCounts()
        self._rng = random.Random(seed)
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._commit_waiter: asyncio.Future | None = None

    @property
    def stats(self):
        return self.registry.stats

    def step(self, line: str) -> str | None:
        """Run one command line with faults but without latency or commit: the reply, or
        None when the connection is to be dropped here."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("<< %s", redact(line))
        faults = self.faults
        if faults.error_rate or faults.drop_rate:
            draw = self._rng.random()
            if draw < faults.error_rate:
                self.fault_counts.busy += 1
                found = _REQ.search(line)
                reply = format_reply(make_reply(ResultCode.SYSTEM_BUSY, [("REQ", found[1])] if found else []))
                log.debug(">> %s (injected)", reply)
                return reply
            if draw < faults.error_rate + faults.drop_rate:
                if self._rng.random() < 0.5:
                    self.fault_counts.dropped_before += 1
                    log.debug("-- dropping the connection before applying (injected)")
                else:
                    self.registry.execute(line)
                    self.fault_counts.dropped_after += 1
                    log.debug("-- dropping the connection after applying, reply lost (injected)")
                return None
        reply = self.registry.execute(line)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(">> %s", reply)
        return reply

    def commit(self) -> None:
        self.registry.commit()

    def handle_many(self, lines) -> tuple[list[str], bool]:
        """Run command lines in order as one connection would: (replies, dropped). When
        dropped, the replies cover only the commands before the drop."""
        replies: list[str] = []
        try:
            for line in lines:
                if self.faults.latency_ms:
                    time.sleep(self.faults.latency_ms / 1000)
                reply = self.step(line)
                if reply is None:
                    return replies, True
                replies.append(reply)
            return replies, False
        finally:
            self.commit()

    def handle(self, line: str) -> str | None:
        """One command: its reply, or None when the (imagined) connection dropped."""
        replies, dropped = self.handle_many([line])
        return None if dropped else replies[0]

    def close(self) -> None:
        self.registry.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ TCP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log.info("connection from %s", peer)
        self._connections[asyncio.current_task()] = writer
        buffer = b""
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > 4 * MAX_LINE:
                    log.warning("closing %s: a line longer than %d bytes", peer, 4 * MAX_LINE)
                    break
                if not await self._answer(lines, writer):
                    log.info("dropped %s (injected)", peer)
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # e.g. the journal cannot be written: no reply may claim success
            log.exception("closing %s", peer)
        finally:
            self._connections.pop(asyncio.current_task(), None)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        log.info("connection from %s closed", peer)

    def _commit_soon(self) -> asyncio.Future:
        """Group commit across connections: every connection that finishes a batch in this
        turn of the event loop waits for the same commit (one fsync), made in the next turn."""
        if self._commit_waiter is None:
            loop = asyncio.get_running_loop()
            self._commit_waiter = loop.create_future()
            loop.call_soon(self._commit_now)
        return self._commit_waiter

    def _commit_now(self) -> None:
        waiter, self._commit_waiter = self._commit_waiter, None
        try:
            self.commit()
        except Exception as error:  # the replies must not go out: the commands are not on disk
            log.exception("cannot write the journal")
            waiter.set_exception(error)
        else:
            waiter.set_result(None)

    async def _answer(self, lines: list[bytes], writer: asyncio.StreamWriter) -> bool:
        """Answer a batch of lines (one commit, one write). False: drop the connection."""
        out: list[str] = []
        latency = self.faults.latency_ms / 1000
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line.strip():
                continue
            if latency:
                await asyncio.sleep(latency)
            reply = self.step(line)
            if reply is None:
                await self._commit_soon()
                if out:
                    writer.write(("\n".join(out) + "\n").encode())
                    await writer.drain()
                return False
            out.append(reply)
            if latency:  # a slow HLR answers each command as it finishes it
                await self._commit_soon()
                writer.write((reply + "\n").encode())
                await writer.drain()
                out.clear()
        await self._commit_soon()
        if out:
            writer.write(("\n".join(out) + "\n").encode())
            await writer.drain()
        return True

    async def close_connections(self) -> None:
        """Close every open client connection and wait for their handlers to finish."""
        tasks = list(self._connections)
        for writer in self._connections.values():
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def start_server(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> asyncio.AbstractServer:
        """Listen on host:port (port 0: any free port) in the running event loop."""
        return await asyncio.start_server(self._connection, host, port, limit=1 << 20)


def _address(server: asyncio.AbstractServer) -> tuple[str, int]:
    host, port = server.sockets[0].getsockname()[:2]
    return host, port


class BackgroundServer:
    """The simulator served over TCP from a thread of this process (tests, notebooks).

    ``with BackgroundServer(sim) as server: TcpTransport(*server.address)``; leaving the
    block stops the server and closes its connections (the simulator stays open).
    """

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0):
        self.simulator = simulator
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.address: tuple[str, int] | None = None

    def start(self) -> "BackgroundServer":
        self._thread = threading.Thread(target=self._run, name="hlr-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if self.address is None:
            raise RuntimeError("the simulator did not start within 10 s")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to the starting thread
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await self.simulator.start_server(self._host, self._port)
        self.address = _address(server)
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            await self.simulator.close_connections()
        self.simulator.commit()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(port: int = DEFAULT_PORT, data_dir="hlr-data", *, host: str = "127.0.0.1", latency_ms: float = 0.0,
          error_rate: float = 0.0, drop_rate: float = 0.0, seed: int | None = None, fsync: bool = True,
          announce=print) -> None:
    """Run the HLR simulator over TCP until SIGINT or SIGTERM; the registry is kept in ``data_dir``.

    ``announce`` gets one line once the server listens (``HLR simulator listening on
    127.0.0.1:7500, registry ...``), with the real port when ``port`` is 0.
    """
    simulator = Simulator(data_dir, latency_ms=latency_ms, error_rate=error_rate, drop_rate=drop_rate,
                          seed=seed, fsync=fsync)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                pass
        server = await simulator.start_server(host, port)
        bound = _address(server)
        announce(f"HLR simulator listening on {bound[0]}:{bound[1]}, registry {data_dir} "
                 f"({len(simulator.registry.subscribers)} subscribers), latency {latency_ms} ms, "
                 f"error rate {error_rate}, drop rate {drop_rate}")
        async with server:
            await stop.wait()
            server.close()
            await simulator.close_connections()

    try:
        asyncio.run(main())
    finally:
        simulator.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hkops.network.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--data", default="hlr-data", help="folder of the registry (created if missing)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-fsync", action="store_true", help="flush without fsync (faster, not power-cut safe)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command (keys redacted)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(args.port, args.data, host=args.host, latency_ms=args.latency_ms, error_rate=args.error_rate,
              drop_rate=args.drop_rate, seed=args.seed, fsync=not args.no_fsync,
              announce=lambda text: print(text, flush=True))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
