"""The HTTP endpoints an orchestrator and Prometheus poll: /healthz, /readyz, /metrics.

- /healthz: the gevent hub is responsive, i.e. the heartbeat greenlet ran recently. A
  CPU-bound loop or a blocking call that starves every greenlet turns it 503, and the
  liveness probe restarts the pod.
- /readyz: whatever `readiness()` says; `readiness_report` builds that answer from the
  connector's state (registered, integrations fetched, engine and delivery running, every
  watch past its first list attempt). Counts only: no tenant's ids or cluster names.
- /status: per-integration detail (watch states, the last error of each), for loopback
  clients only unless the operator sets STATUS_PUBLIC.
- /metrics: the Connector's own prometheus CollectorRegistry.

`make_app` is the WSGI application, a plain function testable without a socket.
`HealthServer` serves it with gevent's pywsgi and starts two greenlets: the server's
and "health-heartbeat". How it fails: binding raises OSError from `start()`; an
exception in a handler (e.g. `readiness()` raising) is logged and answered with 500 or
503, never printed raw; a heartbeat greenlet that stops on its own is logged loudly,
and /healthz then turns 503 so the orchestrator notices too.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping

import gevent
from gevent import pywsgi
from gevent.pool import Pool
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ._log import logger
from .logs import redact
from .metrics import Metrics

Readiness = Callable[[], tuple[bool, dict]]

# A watch is pending until its first list has either succeeded or failed once: readiness
# is about the connector, not the tenants. A cluster that is unreachable, forbidden or
# unauthorized is that tenant's problem (metrics, its integration's status): it never takes
# the shared pod out of its Service.
PENDING_STATES = frozenset({"starting", "listing"})


def readiness_report(
    *, registered: bool, local_mode: bool, integrations_fetched: bool, watches: Mapping[object, str],
    tried: Iterable[object] = (), running: bool = True, was_ready: bool = False,
) -> tuple[bool, dict]:
    """(ready, details) for /readyz; pure.

    Ready iff the connector is registered with the backend (or runs in local mode), has
    fetched its integrations, its watch engine and delivery are `running`, and no watch is
    still on its first list (`watches` maps a WatchKey or its str to its state; `tried`
    holds the keys that have failed at least once: a retry is not a first list). Once
    ready (`was_ready`), watches added later never make it unready again. The details
    carry counts only: no integration id or cluster name of any tenant.
    """
    counts: dict[str, int] = {}
    tried = {str(k) for k in tried}
    waiting = 0
    for key, state in watches.items():
        counts[state] = counts.get(state, 0) + 1
        if state in PENDING_STATES and str(key) not in tried:
            waiting += 1
    reasons: list[str] = []
    if not (registered or local_mode):
        reasons.append("not registered with the backend yet")
    if not integrations_fetched:
        reasons.append("integrations not fetched yet")
    if not running:
        reasons.append("the watch engine or delivery is not running")
    if waiting and not was_ready:
        reasons.append(f"{waiting} watch(es) still on their first list")
    ready = not reasons
    details: dict = {
        "ready": ready,
        "registered": registered,
        "local_mode": local_mode,
        "integrations_fetched": integrations_fetched,
        "watches": {"total": len(watches), **dict(sorted(counts.items()))},
    }
    if reasons:
        details["reasons"] = reasons
    return ready, details


def _json(start_response, status: str, body: dict) -> list[bytes]:
    data = (json.dumps(body, sort_keys=True) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


_LOOPBACK = ("127.", "::1", "::ffff:127.")


def make_app(
    *, registry: CollectorRegistry, readiness: Readiness, alive: Callable[[], tuple[bool, dict]],
    status: Callable[[], dict] | None = None, status_public: bool = False,
) -> Callable[[dict, Callable], Iterable[bytes]]:
    """The WSGI application. `alive()` answers /healthz, `readiness()` /readyz, and
    `status()` /status: every tenant's integrations and clusters with their watch states,
    so only for loopback clients (kubectl port-forward, exec) unless `status_public`."""

    def healthz(start_response):
        ok, details = alive()
        return _json(start_response, "200 OK" if ok else "503 Service Unavailable", details)

    def readyz(start_response):
        try:
            ready, details = readiness()
        except Exception as exc:  # noqa: BLE001 - a failing check is a 503, not a crash
            logger.exception("readiness check failed")
            details = {"ready": False, "reasons": [redact(f"readiness check failed: {type(exc).__name__}: {exc}")]}
            ready = False
        return _json(start_response, "200 OK" if ready else "503 Service Unavailable", details)

    def metrics(start_response):
        data = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(data)))])
        return [data]

    def detailed(start_response):
        return _json(start_response, "200 OK", status())

    routes = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}
    if status is not None:
        routes["/status"] = detailed

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        handler = routes.get(path)
        if path == "/status" and not status_public and not str(environ.get("REMOTE_ADDR", "")).startswith(_LOOPBACK):
            return _json(start_response, "403 Forbidden", {"error": "/status answers loopback clients only "
                                                                     "(STATUS_PUBLIC=true to change)"})
        if handler is None:
            return _json(start_response, "404 Not Found", {"error": "not found"})
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            data = b'{"error": "method not allowed"}\n'
            start_response(
                "405 Method Not Allowed",
                [("Content-Type", "application/json"), ("Allow", "GET, HEAD"), ("Content-Length", str(len(data)))],
            )
            return [data]
        try:
            body = handler(start_response)
        except Exception:  # noqa: BLE001 - any handler bug is a logged 500
            # Logged here (redacted), not by pywsgi, which would print the raw traceback.
            logger.exception("health endpoint {} failed", environ.get("PATH_INFO"))
            return _json(start_response, "500 Internal Server Error", {"error": "internal error"})
        return [] if method == "HEAD" else body

    return app


class _ErrorLog:
    """pywsgi's error_log (bad requests, socket errors) -> loguru."""

    @staticmethod
    def write(message: str) -> None:
        message = message.strip()
        if message:
            logger.warning("health server: {}", message)

    @staticmethod
    def flush() -> None:
        pass

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)


class HealthServer:
    """Serves make_app on host:port and runs the heartbeat greenlet behind /healthz.

    port=0 binds any free port (tests); after start(), `port` is the bound one. The
    connector never passes 0: Settings.health_port == 0 means "no health server", and
    the caller then does not construct one.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: Metrics,
        readiness: Readiness,
        heartbeat_max_age: float = 5.0,
        heartbeat_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 32,
        status: Callable[[], dict] | None = None,
        status_public: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._clock = clock
        self._heartbeat_max_age = heartbeat_max_age
        self._heartbeat_interval = heartbeat_interval
        self._last_beat = clock()
        self._stopping = False
        self._heartbeat: gevent.Greenlet | None = None
        self.app = make_app(registry=metrics.registry, readiness=readiness, alive=self.liveness, status=status,
                            status_public=status_public)
        # A pool, so that stop() also ends keep-alive connections (Prometheus keeps one);
        # bounded, since requests are finite work and nobody needs more at once.
        self._server = pywsgi.WSGIServer(
            (host, port), self.app, log=None, error_log=_ErrorLog(), spawn=Pool(max_connections)
        )

    @property
    def port(self) -> int:
        return self._server.server_port if self._server.started else self._port

    def beat(self) -> None:
        """One heartbeat: the hub got round to running this greenlet."""
        self._last_beat = self._clock()

    def liveness(self) -> tuple[bool, dict]:
        age = self._clock() - self._last_beat
        if age <= self._heartbeat_max_age:
            return True, {"status": "ok"}
        return False, {"status": "stalled", "heartbeat_age_seconds": round(age, 3)}

    def _heartbeat_loop(self) -> None:
        while True:
            self.beat()
            gevent.sleep(self._heartbeat_interval)

    def _heartbeat_ended(self, greenlet: gevent.Greenlet) -> None:
        if self._stopping:
            return
        if greenlet.exception is not None:
            logger.opt(exception=greenlet.exc_info).error("health heartbeat died; /healthz will report stalled")
        else:
            logger.error("health heartbeat returned; it should run until stop(); /healthz will report stalled")

    def start(self) -> None:
        """Bind and serve (OSError if the port is taken), and start the heartbeat."""
        self._stopping = False
        self.beat()
        self._server.start()
        self._heartbeat = gevent.Greenlet(self._heartbeat_loop)
        self._heartbeat.name = "health-heartbeat"
        self._heartbeat.link(self._heartbeat_ended)
        self._heartbeat.start()
        logger.info("health server listening on {}:{}", self._host, self.port)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving (open connections get `timeout` to finish), then the heartbeat."""
        self._stopping = True
        self._server.stop(timeout=timeout)
        if self._heartbeat is not None:
            self._heartbeat.kill(block=True, timeout=timeout)
            if not self._heartbeat.dead:
                logger.warning("health heartbeat did not stop within {}s", timeout)
            self._heartbeat = None
