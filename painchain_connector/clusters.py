"""One Kubernetes ApiClient per distinct cluster credential set, and the raw ListerWatcher.

Credentials never touch a world-readable file: token mode passes the CA bundle in memory
(`ca_cert_data`); kubeconfig and in-cluster modes use the official loaders. Requests go
through the client's own REST layer with `_preload_content` off, so lists and watch
streams are read as raw JSON and decoded straight into the typed shapes of objects.py
(msgspec: only the fields detection reads; never the client's model classes, 23x slower).
Failures are typed (`ApiError` subclasses) so the Reflector's retry policy is a set of
`except` clauses, not string checks. Nothing here starts a greenlet.
"""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Iterator

import msgspec
import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.keepalive import tcp_keepalive_socket_options

from .egress import EgressPolicy, EgressRefused, guard_connections
from .logs import redact
from .metadata import USER_AGENT
from .objects import Malformed, WatchEvent, decode_event, decode_list, event_decoder
from .schemas.integration import Cluster


class ApiError(Exception):
    """A failed call to a cluster. `str()` is safe to log (redacted, no secrets)."""

    reason = "error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(redact(message))
        self.status = status


class Unreachable(ApiError):
    """Connection refused, DNS, TLS handshake/verification, timeouts: retry with backoff."""

    reason = "unreachable"


class StreamCut(ApiError):
    """An open watch stream broke mid-way (connection reset, incomplete chunk)."""

    reason = "cut"


class Stalled(ApiError):
    """Nothing (not even a bookmark) arrived within the watch's read timeout."""

    reason = "stall"


class Gone(ApiError):
    """410: the resourceVersion is too old (compacted): relist and diff."""

    reason = "gone"


class Forbidden(ApiError):
    """403: RBAC does not allow this list/watch; retried on the next re-sync."""

    reason = "forbidden"


class Unauthorized(ApiError):
    """401: the token (or kubeconfig credential) was rejected; retried on the next re-sync."""

    reason = "unauthorized"


class Refused(ApiError):
    """The egress policy refused the server's address (a tenant pointing at loopback,
    link-local, a denied network): a config problem, retried on the next re-sync."""

    reason = "refused"


class ServerError(ApiError):
    """5xx, 429 or another unexpected answer: retry with backoff."""

    reason = "error"


class Oversized(ApiError):
    """The cluster answered more than a bound allows (a list page, a watch line, objects or
    pages of one list): not read further, retried on the next re-sync. The message names
    the bound and its setting, never the content."""

    reason = "oversized"


@dataclass(frozen=True)
class ReadLimits:
    """What one cluster's answer may cost, whoever runs that "cluster" (issue 11 point 3).

    Defaults fit real clusters with room: the apiserver stores objects of at most 1.5 MiB
    and 150,000 pods is the Kubernetes scalability limit."""

    max_list_page_bytes: int = 32 * 2**20
    max_watch_line_bytes: int = 4 * 2**20
    max_list_objects: int = 150_000
    max_list_pages: int = 2_000


def _status_error(status: int, body: bytes) -> ApiError:
    # Only a Kubernetes Status message, shortened: whatever else a tenant's "apiserver"
    # answers must not be copied into the operator's log.
    message = ""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("kind") == "Status" and isinstance(doc.get("message"), str):
            message = doc["message"][:200]
    except ValueError:
        pass
    if not message and status not in (401, 403, 410):
        message = "the answer is not a Kubernetes Status"
    if status == 410 or (status == 504 and "too large resource version" in message.lower()):
        # 504 "Too large resource version": our RV is ahead of this server (a restored etcd,
        # another cluster behind the same URL): relist, like for an expired one.
        return Gone(message or "resource version too old", status=status)
    if status == 403:
        return Forbidden(message or "forbidden", status=status)
    if status == 401:
        return Unauthorized("the cluster rejected the credentials (401 Unauthorized)", status=status)
    return ServerError(f"HTTP {status}: {message}", status=status)


# TCP keepalive on every socket to a cluster: a silently dead peer (a host that vanished,
# a NAT that dropped the flow) is noticed after idle + interval * count = 60 s of silence
# instead of the watch's read timeout (issue 13 point 3). A peer that answers keepalive
# but forwards nothing (a proxy holding the stream) is the stall probe's job.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 30, 10, 3
CLIENT_POOL_SIZE = 256
VERSION_MAX_BYTES = 64 * 1024  # a /version answer is about 400 bytes


def build_api_client(cluster: Cluster, *, connect_timeout: float, egress: EgressPolicy | None = None) -> k8s.ApiClient:
    """A client for one credential set. Raises ApiError for unusable credentials. A
    restricted (tenant-written) cluster's connections go through the egress policy."""
    api = _build_api_client(cluster)
    if cluster.restricted:
        try:
            guard_connections(api, egress or EgressPolicy())
        except EgressRefused as exc:
            api.close()
            raise Refused(str(exc)) from None
    return api


def _build_api_client(cluster: Cluster) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    if cluster.context:
        try:
            k8s_config.load_kube_config(context=cluster.context, client_configuration=cfg, persist_config=False)
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            raise ApiError(f"kubeconfig context {cluster.context!r} cannot be loaded: {exc}") from None
    elif cluster.in_cluster:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException as exc:
            raise ApiError(f"in-cluster credentials unavailable: {exc}") from None
    else:
        cfg.host = cluster.server.rstrip("/")
        if cluster.restricted:
            cfg.proxy = None  # HTTPS_PROXY: the proxy, not the policy, would pick the address
        cfg.api_key = {"BearerToken": cluster.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        cfg.verify_ssl = not cluster.skip_tls_verify
        if cluster.certificate:
            cfg.ca_cert_data = cluster.ca_pem.decode("utf-8", "replace")
    return client_with_settings(cfg)


def client_with_settings(cfg: k8s.Configuration) -> k8s.ApiClient:
    """The one place every ApiClient is made, whatever its credentials: the connector's
    client settings apply to all of them (a hook that must see every client goes here)."""
    # urllib3 retries would hide a dead connection behind silent re-tries; the
    # Reflector owns retry policy. Streams are lazy, so a large pool costs nothing.
    cfg.retries = False
    cfg.connection_pool_maxsize = CLIENT_POOL_SIZE
    cfg.socket_options = tcp_keepalive_socket_options(
        idle=KEEPALIVE_IDLE, interval=KEEPALIVE_INTERVAL, count=KEEPALIVE_COUNT)
    api = k8s.ApiClient(cfg)
    api.user_agent = USER_AGENT
    return api


@dataclass(frozen=True)
class ListPage:
    items: list
    resource_version: str
    continue_token: str | None


class ListerWatcher:
    """Raw list and watch of one collection path through one ApiClient, within `limits`."""

    def __init__(self, api: k8s.ApiClient, *, path: str, connect_timeout: float,
                 limits: ReadLimits = ReadLimits(), label_selector: str = "", shape: type = dict) -> None:
        self._api = api
        self.shape = shape  # objects.py: what list items and watch objects decode into
        self._path = path
        self._connect_timeout = connect_timeout
        self.limits = limits
        self._label_selector = label_selector  # applied by the apiserver to every list and watch

    def _get(self, query: list[tuple[str, str]], read_timeout: float):
        if self._label_selector:
            query = [*query, ("labelSelector", self._label_selector)]
        method, url, headers, body, post = self._api.param_serialize(
            method="GET",
            resource_path=self._path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            resp = self._api.call_api(
                method, url, header_params=headers, body=body, post_params=post,
                _request_timeout=(self._connect_timeout, read_timeout),
            )
        except EgressRefused as exc:
            raise Refused(str(exc)) from None
        except ApiException as exc:
            # The client turns every urllib3 SSLError (bad CA, verification failure, https
            # to a plain-HTTP port) into ApiException(status=0): a reachability problem.
            raise Unreachable(f"cannot reach the cluster (TLS): {exc.reason}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"cannot reach the cluster: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise Unreachable(f"cannot reach the cluster: {type(exc).__name__}: {exc}") from None
        raw = resp.response
        if resp.status != 200:
            try:
                data = raw.read()
            except (urllib3.exceptions.HTTPError, OSError):
                data = b""
            finally:
                raw.release_conn()
            raise _status_error(resp.status, data)
        return raw

    def list_page(self, *, limit: int, continue_token: str | None, read_timeout: float = 60.0) -> ListPage:
        query = [("limit", str(limit))]
        if continue_token:
            query.append(("continue", continue_token))
        raw = self._get(query, read_timeout)
        most = self.limits.max_list_page_bytes
        finished = False
        try:
            body = raw.read(most + 1)  # never more than the bound (+1 to tell "too large")
            if len(body) > most:
                raise Oversized(f"a list page is larger than {_size(most)} (MAX_LIST_PAGE_BYTES)")
            finished = True
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StreamCut(f"list interrupted: {type(exc).__name__}") from None
        finally:
            if not finished:
                raw.close()  # the rest of an oversized answer is never read
            raw.release_conn()
        try:
            page = decode_list(body, self.shape)
        except Malformed as exc:
            if exc.not_json:
                raise StreamCut("list answer is not JSON") from None
            raise ServerError(str(exc)) from None
        del body
        items = page.items or []
        if len(items) > self.limits.max_list_objects:
            raise Oversized(f"a list page has more than {self.limits.max_list_objects} objects (MAX_LIST_OBJECTS)")
        return ListPage(items, page.metadata.resource_version or "", page.metadata.continue_ or None)

    def watch(self, *, resource_version: str, timeout_seconds: int, read_timeout: float) -> WatchStream:
        """Open the watch now (errors raise here); iterating the stream yields decoded
        events until the server ends it cleanly."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        raw = self._get(query, read_timeout)
        return WatchStream(raw, _stream(raw, read_timeout, max_line=self.limits.max_watch_line_bytes, shape=self.shape))


class WatchStream:
    """One open watch response. `abort()` may be called from another greenlet: the
    connection is closed under the reader, whose iteration then fails with StreamCut."""

    def __init__(self, raw, events: Iterator[dict]) -> None:
        self._raw, self._events = raw, events

    def __iter__(self) -> Iterator[dict]:
        return self._events

    def abort(self) -> None:
        # Not close(): the reader greenlet is inside the response's buffered read, and
        # closing that under it raises "reentrant call". Shutting the connection down on a
        # duplicate descriptor ends the read with EOF instead (TLS or not).
        sock = getattr(getattr(self._raw, "connection", None), "sock", None)
        if sock is None:
            return
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return  # closed meanwhile: the read has ended anyway
        try:
            dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            dup.close()

    def close(self) -> None:
        """The reader is done with it (same greenlet): the rest is never read."""
        self._events.close()


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:g} MiB"
    return f"{n / 1024:g} KiB" if n >= 1024 else f"{n} bytes"


def _stream(raw, read_timeout: float, *, max_line: int, shape: type) -> Iterator[WatchEvent]:
    finished = False
    try:
        yield from _lines(raw, max_line, shape)
        finished = True
    except Malformed as exc:
        raise StreamCut("watch stream sent a line that is not JSON" if exc.not_json else str(exc)) from None
    except urllib3.exceptions.ReadTimeoutError:
        raise Stalled(f"no data for {read_timeout:.0f}s") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if "timed out" in str(exc):  # a socket timeout wrapped in ProtocolError
            raise Stalled(f"no data for {read_timeout:.0f}s") from None
        raise StreamCut(f"watch stream broke: {type(exc).__name__}") from None
    finally:
        if not finished:
            raw.close()  # never hand a half-read stream back to the pool
        raw.release_conn()


def _lines(raw, max_line: int, shape: type) -> Iterator[WatchEvent]:
    """Split a chunked watch response into events as chunks arrive; a line longer than
    `max_line` is Oversized (a complete line up to 64 KiB over it can slip through: the
    check is per chunk, which keeps it off the per-event path).

    Each line decodes straight into its shape (objects.py): the fields nobody reads are
    skipped in C, never built as Python objects (bench #1)."""
    decode = event_decoder(shape)  # the msgspec Decoder itself: no call in between (bench #1)
    tail = b""
    for chunk in raw.stream(65536, decode_content=False):
        if tail:
            chunk = tail + chunk
        parts = chunk.split(b"\n")
        tail = parts.pop()
        if len(tail) > max_line:
            raise Oversized(f"a watch event is larger than {_size(max_line)} (MAX_WATCH_LINE_BYTES)")
        for line in parts:
            if line:
                try:
                    event = decode(line)
                except (msgspec.MsgspecError, RecursionError):
                    event = decode_event(line, shape)  # an ERROR's Status, or a clear Malformed
                if event.type == "ERROR":
                    event = decode_event(line, shape)
                yield event
    if tail.strip():
        yield decode_event(tail, shape)


def check_connection(api: k8s.ApiClient, *, connect_timeout: float) -> str:
    """GET /version: reachability and TLS only (no RBAC needed). Returns the server version.

    Every failure is an ApiError, whatever the answer was (not JSON, not an object, cut)."""
    lw = ListerWatcher(api, path="/version", connect_timeout=connect_timeout)  # ApiError on failure
    raw = lw._get([], read_timeout=connect_timeout)
    try:
        body = raw.read(VERSION_MAX_BYTES + 1)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unreachable(f"cannot reach the cluster: /version interrupted: {type(exc).__name__}") from None
    finally:
        raw.release_conn()
    try:
        doc = orjson.loads(body) if len(body) <= VERSION_MAX_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("gitVersion", ""), str):
        raise ServerError("the answer to GET /version is not a Kubernetes version document")
    return doc.get("gitVersion") or "?"
