"""The test server on its own event loop in a daemon thread (tests)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from alambic.testing.openai_server.app import _App
from alambic.testing.openai_server.config import ServerConfig
from alambic.testing.openai_server.protocol import _create_server, _shutdown

# --------------------------------------------------------------------------- in-process


class OpenAITestServer:
    """The test server on its own event loop in a daemon thread.

    ``start()`` returns the base URL (``http://127.0.0.1:PORT/v1``) to give to an OpenAI
    client.  ``stats``, ``reset()`` and ``update()`` run on the server thread, so they
    see a consistent state and are safe to call while requests are in flight.
    """

    def __init__(self, config: ServerConfig | None = None, **knobs: Any) -> None:
        config = dataclasses.replace(config or ServerConfig(), **knobs)
        self._app = _App(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Start serving (idempotent) and return the ``/v1`` base URL."""
        if self._thread is not None:
            return self.base_url
        ready = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(ready, errors), name="openai-test-server", daemon=True
        )
        thread.start()
        ready.wait()
        if errors:
            thread.join()
            raise errors[0]
        self._thread = thread
        return self.base_url

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                server = loop.run_until_complete(_create_server(self._app))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            self._loop, self._server = loop, server
            self._port = int(server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()
            loop.run_until_complete(_shutdown(server, self._app))
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving: close the socket and abort open connections (hung ones too)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = self._loop = self._server = None

    def __enter__(self) -> OpenAITestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ inspection

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """Root URL (control endpoints live here): ``http://127.0.0.1:PORT``."""
        return f"http://{self._app.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    @property
    def config(self) -> ServerConfig:
        """The live configuration (treat as read-only; change it with :meth:`update`)."""
        return self._app.config

    def _call(self, fn: Callable[[], Any]) -> Any:
        loop = self._loop
        if loop is None or not loop.is_running() or self._thread is threading.current_thread():
            return fn()
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout=10)

    @property
    def stats(self) -> dict[str, Any]:
        """Snapshot: ``total_requests``, ``paths``, ``statuses`` (int keys), ``in_flight``,
        ``max_in_flight``, ``arrivals`` and ``departures`` (``time.monotonic()`` values: when
        each counted request came and ended), ``repeated_requests``,
        ``unique_requests``, token totals, ``dropped``, ``hung`` and ``requests`` (bodies,
        only with ``record_requests``)."""
        snap: dict[str, Any] = self._call(self._app.stats.snapshot)
        return snap

    def reset(self) -> None:
        """Zero the counters, rate windows and scripted position; reseed the RNG."""
        self._call(self._app.reset)

    def update(self, **knobs: Any) -> None:
        """Change config knobs live (e.g. ``update(failure_rate=0.5)``).

        Setting ``seed`` reseeds the RNG; setting ``status_sequence`` or ``fail_first_n``
        restarts the script from its first entry.
        """
        self._call(lambda: self._app.update(knobs))
