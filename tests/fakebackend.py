"""A fake PainChain backend: a real loopback HTTP server that keeps the backend contract.

`FakeBackend` is a gevent `pywsgi.WSGIServer` on 127.0.0.1 (port chosen by the OS) that
behaves like the real NestJS backend as /work/shared/painchain-backend-api.md describes it,
quirks included: GET /integrations ignores `?type=`, an unknown integrationId or tenant or
an unparsable body answers 500, a body over 100 KB answers 413, a repeat of
(integrationId, externalId) answers 201 with the ORIGINAL event_id and stored_at (or 409
when `answer_409_for_duplicates`). It records every request it receives, in order.

Faults: `fail_with(status, count)` answers `status` instead of doing the work; `down()`
closes the listening socket and every open connection (new connections are refused,
kept-alive ones are reset); `up()` listens again on the same port; `slow(seconds)` delays
every answer. Wait for outcomes with `wait_for(predicate, timeout)`, never a blind sleep.

Greenlets: the server's own (one per connection); all stop with `stop()`.
"""
from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote

import gevent
from gevent import pywsgi
from gevent.pool import Pool

BODY_LIMIT = 100 * 1024  # the NestJS body parser's 100kb limit
REQUIRED_EVENT_FIELDS = ("title", "connector", "project", "timestamp", "integrationId")
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 409: "Conflict",
            413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, *, interval: float = 0.005,
             message: str = "") -> Any:
    """Poll `predicate` until it returns something truthy (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s{': ' + message if message else ''}")
        gevent.sleep(interval)


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str  # without the /api prefix, e.g. "/events"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_port: int = 0  # tells connections apart (keep-alive checks)
    status: int = 0  # what was answered
    answer: Any = None

    @property
    def tenant(self) -> str | None:
        return self.headers.get("x-tenant-id")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StoredEvent:
    event_id: str
    stored_at: str
    tenant_id: str | None
    body: dict


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: until cleared
    path: str | None
    method: str | None


class _NoDelayServer(pywsgi.WSGIServer):
    """pywsgi writes the status line + headers and the body in separate sends; without
    TCP_NODELAY, Nagle holds the body until the client's delayed ACK (~40 ms a request)."""

    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(sock, address)


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeBackend:
    answer_409_for_duplicates: bool = False
    prefix: str = "/api"
    types: dict[str, dict] = field(default_factory=dict)
    integrations: list[dict] = field(default_factory=list)  # test-settable, returned as-is
    tenants: set[str] = field(default_factory=set)  # known besides the integrations' tenants
    events: list[StoredEvent] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)  # every request, in arrival order

    def __post_init__(self) -> None:
        self._by_key: dict[tuple[str, str], StoredEvent] = {}
        self._ids = itertools.count(1)
        self._faults: list[_Fault] = []
        self._delay = 0.0
        self._server: pywsgi.WSGIServer | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeBackend:
        self._listen(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=0)
            self._server = None

    def __enter__(self) -> FakeBackend:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _listen(self, port: int) -> None:
        # An owned Pool (not the default bare spawn): stop() kills the connection handlers,
        # so down() also resets kept-alive connections.
        server = _NoDelayServer(("127.0.0.1", port), self._app, log=None, error_log=None, spawn=Pool())
        server.start()
        self._server = server
        self.port = server.server_port

    @property
    def url(self) -> str:
        """The BACKEND_API_URL of this fake (ends in /api, like the real one)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # -- faults -------------------------------------------------------------------------

    def down(self) -> None:
        """Close the listening socket and every open connection: connections are refused."""
        self.stop()

    def up(self) -> None:
        if self._server is None:
            self._listen(self.port)

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def fail_with(self, status: int | None, count: int | None = None, *, path: str | None = None,
                  method: str | None = None) -> None:
        """Answer `status` to the next `count` matching requests (all of them if count is None).
        `path` matches a prefix ("/events"); `fail_with(None)` clears every fault."""
        if status is None:
            self._faults.clear()
        else:
            self._faults.append(_Fault(status, count, path, method))

    def heal(self) -> None:
        self._faults.clear()
        self._delay = 0.0

    def slow(self, seconds: float) -> None:
        """Delay every answer by `seconds` (0 restores)."""
        self._delay = seconds

    # -- test helpers -------------------------------------------------------------------

    def add_integration(self, integration_id: str, *, tenant_id: str | None = None, type: str = "kubernetes",
                        status: str = "active", config: dict | None = None, name: str = "") -> dict:
        doc = {
            "id": integration_id,
            "tenantId": tenant_id,
            "type": type,
            "name": name or integration_id,
            "config": config if config is not None else {
                "name": name or integration_id,
                "tags": [],
                "clusters": [{"name": "dev", "context": "kind-dev"}],
            },
            "status": status,
            "lastSync": None,
            "registeredAt": _now_iso(),
        }
        self.integrations.append(doc)
        return doc

    def remove_integration(self, integration_id: str) -> None:
        self.integrations = [d for d in self.integrations if d.get("id") != integration_id]

    def events_for(self, integration_id: str) -> list[dict]:
        """Stored event bodies of one integration, in the order they were stored."""
        return [e.body for e in self.events if e.body.get("integrationId") == integration_id]

    def received_at(self, path: str, method: str | None = None) -> list[Received]:
        return [r for r in self.received if r.path == path and (method is None or r.method == method)]

    @property
    def connections(self) -> int:
        """How many distinct client connections have sent requests."""
        return len({r.client_port for r in self.received})

    def tenant_mismatches(self) -> list[StoredEvent]:
        """Stored events whose x-tenant-id differs from their integration's tenantId."""
        owners = {d.get("id"): d.get("tenantId") for d in self.integrations}
        return [e for e in self.events if e.tenant_id != owners.get(e.body.get("integrationId"), e.tenant_id)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, **kwargs) -> Any:
        return wait_for(predicate, timeout, **kwargs)

    # -- the app ------------------------------------------------------------------------

    def _known_tenants(self) -> set[str]:
        return self.tenants | {d.get("tenantId") for d in self.integrations if d.get("tenantId")}

    def _app(self, environ, start_response):
        raw_path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        body = environ["wsgi.input"].read()
        path = raw_path.removeprefix(self.prefix)
        received = Received(method, path, parse_qs(environ.get("QUERY_STRING", "")), headers, body,
                            int(environ.get("REMOTE_PORT") or 0))
        self.received.append(received)
        if self._delay:
            gevent.sleep(self._delay)
        status, payload = self._answer(received, raw_path)
        received.status, received.answer = status, payload
        data = json.dumps(payload).encode()
        start_response(f"{status} {_REASONS.get(status, 'Status')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _fault_for(self, req: Received) -> int | None:
        for fault in self._faults:
            if fault.path is not None and not req.path.startswith(fault.path):
                continue
            if fault.method is not None and fault.method != req.method:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            return fault.status
        return None

    @staticmethod
    def _error(status: int, message: str) -> tuple[int, dict]:
        return status, {"statusCode": status, "message": message, "error": _REASONS.get(status, "Error")}

    def _answer(self, req: Received, raw_path: str) -> tuple[int, Any]:
        if not raw_path.startswith(self.prefix + "/"):
            return self._error(404, f"Cannot {req.method} {raw_path}")
        injected = self._fault_for(req)
        if injected is not None:
            return self._error(injected, "injected failure")
        if req.method == "POST" and req.path == "/integrations/types/register":
            return self._register(req)
        if req.method == "GET" and req.path == "/integrations":
            tenant = req.tenant
            return 200, [d for d in self.integrations if tenant is None or d.get("tenantId") == tenant]
        if req.method == "PUT" and req.path.startswith("/integrations/"):
            return self._put_integration(req, unquote(req.path[len("/integrations/"):]))
        if req.method == "POST" and req.path == "/events":
            return self._post_event(req)
        return self._error(404, f"Cannot {req.method} {raw_path}")

    def _register(self, req: Received) -> tuple[int, Any]:
        try:
            doc = req.json()
        except ValueError:
            return self._error(500, "Internal server error")
        if not isinstance(doc, dict) or not doc.get("id") or not doc.get("displayName"):
            return self._error(400, "id and displayName are required")
        self.types[doc["id"]] = doc
        return 200, {"id": doc["id"], "displayName": doc["displayName"], "registered": True}

    def _put_integration(self, req: Received, integration_id: str) -> tuple[int, Any]:
        for doc in self.integrations:
            if doc.get("id") == integration_id and (req.tenant is None or doc.get("tenantId") == req.tenant):
                try:
                    update = req.json()
                except ValueError:
                    return self._error(500, "Internal server error")
                if isinstance(update, dict):  # the real backend applies any integration field
                    doc.update({k: v for k, v in update.items() if k != "id"})
                return 200, doc
        return self._error(404, "Integration not found")

    def _post_event(self, req: Received) -> tuple[int, Any]:
        if len(req.body) > BODY_LIMIT:
            return self._error(413, "request entity too large")
        try:
            doc = req.json()
        except ValueError:
            return self._error(500, "Internal server error")
        if not isinstance(doc, dict):
            return self._error(500, "Internal server error")
        missing = [name for name in REQUIRED_EVENT_FIELDS if not doc.get(name)]
        if missing:
            return self._error(400, [f"{name} should not be empty" for name in missing])
        tenant = req.tenant
        if tenant is not None and tenant not in self._known_tenants():
            return self._error(500, "Internal server error")
        integration = next((d for d in self.integrations if d.get("id") == doc["integrationId"]), None)
        if integration is None:
            return self._error(500, "Internal server error")  # the real backend's FK violation
        external_id = doc.get("externalId")
        if external_id:
            existing = self._by_key.get((doc["integrationId"], external_id))
            if existing is not None:
                if self.answer_409_for_duplicates:
                    return self._error(409, "Event already exists")
                return 201, {"event_id": existing.event_id, "stored_at": existing.stored_at}
        stored = StoredEvent(f"evt_{next(self._ids)}", _now_iso(), tenant, doc)
        self.events.append(stored)
        if external_id:
            self._by_key[(doc["integrationId"], external_id)] = stored
        return 201, {"event_id": stored.event_id, "stored_at": stored.stored_at}
