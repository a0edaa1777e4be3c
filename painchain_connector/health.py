"""The HTTP endpoints an orchestrator and Prometheus poll: /healthz, /readyz, /metrics.

- /healthz: the gevent hub is responsive, i.e. the heartbeat greenlet ran recently. A
  CPU-bound loop or a blocking call that starves every greenlet turns it 503, and the
  liveness probe restarts the pod.
- /readyz: whatever `readiness()` says; `readiness_report` builds that answer from the
  connector's state (registered, integrations fetched, every watch settled).
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

# Watch states (as reported by the watching module) and what they mean for readiness.
# Not ready: the first list is not done yet, or the cluster cannot be reached at all (an
# operator must see that). RBAC refusals and passing errors count as settled ("failing").
PENDING_STATES = frozenset({"starting", "listing", "unreachable"})
WATCHING = "watching"
# Anything else ("backoff", "forbidden", "unauthorized", "invalid", or a state this
# module does not know) is settled: the watch will not become ready by waiting, so it
# must not hold the pod out of its Service; it is listed under "failing" instead.


def _split_watch_key(key: str) -> tuple[str, str]:
    """'integ/cluster/pods/*' -> ('integ/cluster', 'pods/*'); tolerates '/' in the ids."""
    parts = key.rsplit("/", 2)
    if len(parts) < 3:
        return key, ""
    return parts[0], f"{parts[1]}/{parts[2]}"


def readiness_report(
    *, registered: bool, local_mode: bool, integrations_fetched: bool, watches: Mapping[object, str]
) -> tuple[bool, dict]:
    """(ready, details) for /readyz; pure.

    Ready iff the connector is registered with the backend (or runs in local mode), has
    fetched its integrations once, and no watch is still starting or listing. `watches`
    maps a WatchKey (or its str, "integ/cluster/resource/namespace") to its state.
    Details group watches by "integration/cluster".
    """
    counts: dict[str, int] = {}
    pending: dict[str, list[str]] = {}
    failing: dict[str, dict[str, str]] = {}
    for key, state in sorted((str(k), v) for k, v in watches.items()):
        counts[state] = counts.get(state, 0) + 1
        cluster, stream = _split_watch_key(key)
        if state in PENDING_STATES:
            pending.setdefault(cluster, []).append(stream)
        elif state != WATCHING:
            failing.setdefault(cluster, {})[stream] = state
    reasons: list[str] = []
    if not (registered or local_mode):
        reasons.append("not registered with the backend yet")
    if not integrations_fetched:
        reasons.append("integrations not fetched yet")
    waiting = sum(len(streams) for streams in pending.values())
    if waiting:
        reasons.append(f"{waiting} watch(es) still listing or unreachable on {len(pending)} cluster(s)")
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
    if pending:
        details["not_ready"] = pending
    if failing:
        details["failing"] = failing
    return ready, details


def _json(start_response, status: str, body: dict) -> list[bytes]:
    data = (json.dumps(body, sort_keys=True) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def make_app(
    *, registry: CollectorRegistry, readiness: Readiness, alive: Callable[[], tuple[bool, dict]]
) -> Callable[[dict, Callable], Iterable[bytes]]:
    """The WSGI application. `alive()` answers /healthz, `readiness()` /readyz."""

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

    routes = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        handler = routes.get(environ.get("PATH_INFO", ""))
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
    ) -> None:
        self._host = host
        self._port = port
        self._clock = clock
        self._heartbeat_max_age = heartbeat_max_age
        self._heartbeat_interval = heartbeat_interval
        self._last_beat = clock()
        self._stopping = False
        self._heartbeat: gevent.Greenlet | None = None
        self.app = make_app(registry=metrics.registry, readiness=readiness, alive=self.liveness)
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
