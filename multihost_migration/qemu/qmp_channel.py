"""A thread-safe, synchronous face on the asyncio `qemu.qmp.QMPClient`.

Each channel owns one asyncio event loop running in its own daemon thread.
Callers in any Python thread submit coroutines to it with
`asyncio.run_coroutine_threadsafe` and wait on the future with a deadline, so
several threads (a migration thread, a console thread, the test) may issue
QMP commands to the same VM at once; QMP itself serialises them by id.

Events are copied, as they arrive, into an `EventLog`: an append-only list
guarded by a condition variable that threads wait on with deadlines.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, Optional, TypeVar

from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient
from qemu.qmp import QMPError as LibQMPError
from qemu.qmp.message import Message

from ..errors import QMPCommandError, QMPError

T = TypeVar("T")

Event = dict[str, Any]


class EventLog:
    """Every QMP event seen on a channel, in order, waitable from any thread."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._cond = threading.Condition()

    def append(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def mark(self) -> int:
        """A cursor: events appended after this call have index >= mark."""
        with self._cond:
            return len(self._events)

    def since(self, mark: int) -> list[Event]:
        with self._cond:
            return list(self._events[mark:])

    def wait_for(self, match: Callable[[Event], bool], mark: int,
                 timeout: float) -> Optional[Event]:
        """The first event at index >= mark accepted by `match`, or None at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events[mark:]:
                    if match(event):
                        return event
                mark = len(self._events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)


class _SinkListener(EventListener):
    """Forwards every event to an EventLog instead of queueing it."""

    def __init__(self, sink: EventLog, logger: logging.Logger) -> None:
        super().__init__()
        self._sink = sink
        self._logger = logger

    async def put(self, event: Message) -> None:
        data = dict(event)
        self._logger.debug("QMP event: %s", data)
        self._sink.append(data)


class QMPChannel:
    """Synchronous, thread-safe QMP connection to one QEMU (client side)."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self.events = EventLog()
        self._logger = logger
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[QMPClient] = None
        self._fd_lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._client is not None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._loop is None:
            coro.close()
            raise QMPError(f"{self.name}: QMP channel is not open")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever,
                                  name=f"qmp-{self.name}", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

    def connect(self, path: Path, timeout: float,
                alive: Callable[[], bool]) -> None:
        """Connect to QEMU's QMP unix socket, retrying until `timeout`.

        `alive` is polled between attempts so a QEMU that exits early is
        noticed at once instead of at the deadline.
        """
        if self._loop is None:
            self._start_loop()
        deadline = time.monotonic() + timeout
        last_error: Optional[BaseException] = None
        while time.monotonic() < deadline:
            if not alive():
                raise QMPError(f"{self.name}: QEMU exited before QMP was up "
                               f"(last error: {last_error})")
            if path.exists():
                try:
                    self._client = self._run(self._connect_once(str(path)),
                                             max(0.1, deadline - time.monotonic()))
                    self._logger.debug("QMP connected on %s", path)
                    return
                except (ConnectError, OSError, TimeoutError) as err:
                    last_error = err
            time.sleep(0.05)
        raise QMPError(f"{self.name}: could not connect to QMP at {path} within "
                       f"{timeout:.1f}s (last error: {last_error})")

    async def _connect_once(self, path: str) -> QMPClient:
        client = QMPClient(self.name)
        client.register_listener(_SinkListener(self.events, self._logger))
        try:
            await client.connect(path)
        except BaseException:
            await client.disconnect()
            raise
        return client

    def execute(self, command: str, arguments: Optional[dict[str, Any]] = None,
                timeout: float = 30.0) -> Any:
        """Run one QMP command; raise QMPCommandError on an error reply."""
        client = self._client
        if client is None:
            raise QMPError(f"{self.name}: QMP not connected (command {command})")
        self._logger.debug("QMP -> %s %s", command, arguments or {})
        try:
            result = self._run(client.execute(command, arguments), timeout)
        except ExecuteError as err:
            self._logger.debug("QMP <- error %s: %s", err.error_class, str(err))
            raise QMPCommandError(self.name, command, arguments or {},
                                  err.error_class, str(err)) from err
        except TimeoutError as err:
            raise QMPError(f"{self.name}: QMP {command} got no reply within "
                           f"{timeout:.1f}s") from err
        except (LibQMPError, OSError, EOFError) as err:
            raise QMPError(f"{self.name}: QMP {command} failed: "
                           f"{type(err).__name__}: {err}") from err
        self._logger.debug("QMP <- %s", result)
        return result

    def send_fd(self, fd: int, fdname: str, timeout: float = 30.0) -> None:
        """Pass `fd` to QEMU over SCM_RIGHTS and name it with `getfd`."""
        client = self._client
        if client is None:
            raise QMPError(f"{self.name}: QMP not connected (getfd {fdname})")

        async def _send() -> None:
            client.send_fd_scm(fd)
            await client.execute("getfd", {"fdname": fdname})

        with self._fd_lock:
            self._logger.debug("QMP -> getfd %s (fd %d via SCM_RIGHTS)", fdname, fd)
            try:
                self._run(_send(), timeout)
            except ExecuteError as err:
                raise QMPCommandError(self.name, "getfd", {"fdname": fdname},
                                      err.error_class, str(err)) from err
            except (LibQMPError, OSError, TimeoutError) as err:
                raise QMPError(f"{self.name}: getfd {fdname} failed: {err}") from err

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect and stop the loop thread; safe to call repeatedly."""
        client, self._client = self._client, None
        loop, thread = self._loop, self._thread
        try:
            if client is not None and loop is not None:
                try:
                    self._run(client.disconnect(), timeout)
                except Exception as err:  # noqa: BLE001 - best effort on close
                    self._logger.debug("QMP disconnect: %s", err)
        finally:
            self._loop = self._thread = None
            if loop is not None:
                loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout)
            if loop is not None and (thread is None or not thread.is_alive()):
                loop.close()
