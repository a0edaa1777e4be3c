"""One Kubernetes ApiClient per distinct cluster credential set, and the raw ListerWatcher.

Credentials never touch a world-readable file: token mode passes the CA bundle in memory
(`ca_cert_data`); kubeconfig and in-cluster modes use the official loaders. Requests go
through the client's own REST layer with `_preload_content` off, so lists and watch
streams are read as raw JSON (never deserialised into model classes: 23x slower here).
Failures are typed (`ApiError` subclasses) so the Reflector's retry policy is a set of
`except` clauses, not string checks. Nothing here starts a greenlet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from ._log import logger

from .egress import EgressPolicy, EgressRefused, guard_connections
from .logs import redact
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


def build_api_client(cluster: Cluster, *, connect_timeout: float, egress: EgressPolicy | None = None) -> k8s.ApiClient:
    """A client for one credential set. Raises ApiError for unusable credentials. A
    restricted (tenant-written) cluster's connections go through the egress policy."""
    api = _build_api_client(cluster, connect_timeout=connect_timeout)
    if cluster.restricted:
        guard_connections(api, egress or EgressPolicy())
    return api


def _build_api_client(cluster: Cluster, *, connect_timeout: float) -> k8s.ApiClient:
    if cluster.context:
        try:
            return k8s_config.new_client_from_config(context=cluster.context, persist_config=False)
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            raise ApiError(f"kubeconfig context {cluster.context!r} cannot be loaded: {exc}") from None
    cfg = k8s.Configuration()
    if cluster.in_cluster:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException as exc:
            raise ApiError(f"in-cluster credentials unavailable: {exc}") from None
    else:
        cfg.host = cluster.server.rstrip("/")
        cfg.api_key = {"BearerToken": cluster.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        cfg.verify_ssl = not cluster.skip_tls_verify
        if cluster.certificate:
            cfg.ca_cert_data = cluster.ca_pem.decode("utf-8", "replace")
    # urllib3 retries would hide a dead connection behind silent re-tries; the
    # Reflector owns retry policy. Streams are lazy, so a large pool costs nothing.
    cfg.retries = False
    cfg.connection_pool_maxsize = 256
    api = k8s.ApiClient(cfg)
    api.user_agent = "painchain-kubernetes-connector"
    return api


@dataclass(frozen=True)
class ListPage:
    items: list
    resource_version: str
    continue_token: str | None


class ListerWatcher:
    """Raw list and watch of one collection path through one ApiClient."""

    def __init__(self, api: k8s.ApiClient, *, path: str, connect_timeout: float, label_selector: str = "") -> None:
        self._api = api
        self._path = path
        self._connect_timeout = connect_timeout
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
        try:
            doc = orjson.loads(raw.read())
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StreamCut(f"list interrupted: {type(exc).__name__}") from None
        except ValueError:
            raise StreamCut("list answer is not JSON") from None
        finally:
            raw.release_conn()
        meta = doc.get("metadata") or {}
        return ListPage(doc.get("items") or [], meta.get("resourceVersion", ""), meta.get("continue") or None)

    def watch(self, *, resource_version: str, timeout_seconds: int, read_timeout: float) -> Iterator[dict]:
        """Open the watch now (errors raise here), then yield decoded events until the
        server ends the stream cleanly."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        raw = self._get(query, read_timeout)
        return _stream(raw, read_timeout)


def _stream(raw, read_timeout: float) -> Iterator[dict]:
    finished = False
    try:
        yield from _lines(raw)
        finished = True
    except ValueError:
        raise StreamCut("watch stream sent a line that is not JSON") from None
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


def _lines(raw) -> Iterator[dict]:
    """Split a chunked watch response into JSON events as chunks arrive.

    orjson, not json: decoding is the largest single cost of the watch path (bench #1)."""
    loads = orjson.loads
    tail = b""
    for chunk in raw.stream(65536, decode_content=False):
        if tail:
            chunk = tail + chunk
        parts = chunk.split(b"\n")
        tail = parts.pop()
        for line in parts:
            if line:
                yield loads(line)
    if tail.strip():
        yield loads(tail)


def check_connection(api: k8s.ApiClient, *, cluster_label: str, connect_timeout: float) -> str:
    """GET /version: reachability and TLS only (no RBAC needed). Returns the server version."""
    lw = ListerWatcher(api, path="/version", connect_timeout=connect_timeout)  # ApiError on failure
    raw = lw._get([], read_timeout=connect_timeout)
    try:
        doc = json.loads(raw.read())
    finally:
        raw.release_conn()
    version = doc.get("gitVersion", "?")
    logger.debug("connection test passed for {}: server {}", cluster_label, version)
    return version
