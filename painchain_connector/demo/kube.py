"""A small raw-JSON client: CRUD on the kinds the connector watches, plus raw watches.

The demo's story writes through it (standing in for the controllers and the kubelet), and
the tests do (tests/envtest/kube.py re-exports it).

Works on plain dicts, never on the kubernetes client's model classes (core/v1 Events with
`eventTime: null` break them, and tests want to see exactly what the apiserver sent).
Built on `requests` with `trust_env = False`: this machine exports REQUESTS_CA_BUNDLE,
which would otherwise override `verify=` and reject the test CA.

How it fails: every non-2xx answer raises `KubeError` carrying the HTTP status and the
apiserver's Status object; watches surface transport errors as requests exceptions.
Starts no greenlets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import requests

CORE = "/api/v1"
APPS = "/apis/apps/v1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


@dataclass(frozen=True)
class Resource:
    plural: str
    prefix: str          # /api/v1 or /apis/<group>/<version>
    namespaced: bool = True

    @property
    def group(self) -> str:
        return "" if self.prefix == CORE else self.prefix.split("/")[2]


RESOURCES = {r.plural: r for r in [
    Resource("pods", CORE), Resource("services", CORE), Resource("events", CORE),
    Resource("configmaps", CORE), Resource("serviceaccounts", CORE), Resource("secrets", CORE),
    Resource("namespaces", CORE, namespaced=False), Resource("nodes", CORE, namespaced=False),
    Resource("deployments", APPS), Resource("statefulsets", APPS), Resource("daemonsets", APPS),
    Resource("replicasets", APPS), Resource("controllerrevisions", APPS),
    Resource("jobs", "/apis/batch/v1"), Resource("cronjobs", "/apis/batch/v1beta1"),  # 1.20: CronJob is v1beta1
    Resource("roles", RBAC), Resource("rolebindings", RBAC),
    Resource("clusterroles", RBAC, namespaced=False), Resource("clusterrolebindings", RBAC, namespaced=False),
]}


def resource(plural: str) -> Resource:
    try:
        return RESOURCES[plural]
    except KeyError:
        raise ValueError(f"unknown resource {plural!r}; known: {sorted(RESOURCES)}") from None


def path_for(plural: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
    r = resource(plural)
    parts = [r.prefix]
    if r.namespaced and namespace:
        parts += ["namespaces", quote(namespace)]
    elif not r.namespaced and namespace:
        raise ValueError(f"{plural} is cluster-scoped: pass namespace=None")
    parts.append(plural)
    if name:
        parts.append(quote(name))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class KubeError(Exception):
    """A non-2xx answer. `status` is the HTTP code, `body` the Status object (or text)."""

    def __init__(self, method: str, url: str, status: int, body):
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {url} -> {status}: {message}")

    @property
    def reason(self) -> str | None:
        return self.body.get("reason") if isinstance(self.body, dict) else None


class Kube:
    """Admin (or any bearer token) access to one apiserver, on raw dicts."""

    def __init__(self, *, server: str, ca_file: str, token: str, timeout: float = 30.0):
        self.server, self.ca_file, self.token, self.timeout = server.rstrip("/"), ca_file, token, timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = ca_file
        self.session.headers["Authorization"] = f"Bearer {token}"

    def with_token(self, token: str, *, server: str | None = None) -> "Kube":
        """The same cluster as another user (or through a proxy: `server=proxy.url`)."""
        return Kube(server=server or self.server, ca_file=self.ca_file, token=token, timeout=self.timeout)

    def via(self, server: str) -> "Kube":
        """The same user through another address, e.g. `kube.via(proxy.url)`."""
        return self.with_token(self.token, server=server)

    def close(self) -> None:
        self.session.close()

    # -- raw -------------------------------------------------------------------------
    def request(self, method: str, path: str, *, body=None, params=None,
                content_type: str = "application/json", **kwargs) -> requests.Response:
        """No raising: for tests that assert on a status code (403, 404, 410...)."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, self.server + path, data=data, params=params,
                                    headers=headers, **kwargs)

    def _json(self, method: str, path: str, **kwargs) -> dict:
        r = self.request(method, path, **kwargs)
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if not 200 <= r.status_code < 300:
            raise KubeError(method, path, r.status_code, body)
        return body

    # -- CRUD ------------------------------------------------------------------------
    def create(self, plural: str, namespace: str | None, body: dict) -> dict:
        return self._json("POST", path_for(plural, namespace), body=body)

    def get(self, plural: str, namespace: str | None, name: str) -> dict:
        return self._json("GET", path_for(plural, namespace, name))

    def list(self, plural: str, namespace: str | None = None, **params) -> dict:
        """The whole List object: `items` and `metadata.resourceVersion`.
        params: labelSelector=, fieldSelector=, limit=, resourceVersion=..."""
        return self._json("GET", path_for(plural, namespace), params=params or None)

    def replace(self, plural: str, namespace: str | None, body: dict) -> dict:
        return self._json("PUT", path_for(plural, namespace, body["metadata"]["name"]), body=body)

    def patch(self, plural: str, namespace: str | None, name: str, patch: dict) -> dict:
        """JSON merge patch (RFC 7386): dicts merge, lists and scalars replace, None deletes."""
        return self._json("PATCH", path_for(plural, namespace, name), body=patch,
                          content_type="application/merge-patch+json")

    def patch_status(self, plural: str, namespace: str | None, name: str, patch: dict) -> dict:
        """Merge patch of the /status subresource: the test plays kubelet / controller.
        `patch` is the whole patch document, e.g. {"status": {"phase": "Running"}}."""
        return self._json("PATCH", path_for(plural, namespace, name, "status"), body=patch,
                          content_type="application/merge-patch+json")

    def delete(self, plural: str, namespace: str | None, name: str, *,
               grace_period_seconds: int | None = 0, missing_ok: bool = False) -> dict | None:
        """Deletes at once (grace period 0 by default: no kubelet would confirm a pod's
        graceful deletion, so a pod deleted with a grace period stays, Terminating)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        try:
            return self._json("DELETE", path_for(plural, namespace, name), body=body)
        except KubeError as e:
            if missing_ok and e.status == 404:
                return None
            raise

    # -- watch -----------------------------------------------------------------------
    def watch(self, plural: str, namespace: str | None = None, *, resource_version: str | None = None,
              timeout_seconds: int | None = None, bookmarks: bool = True,
              read_timeout: float | None = 30.0, **params) -> "WatchStream":
        """A raw watch: `?watch=true&resourceVersion=...&allowWatchBookmarks=true`.
        read_timeout is the client socket timeout for each read (None: wait forever)."""
        query = {"watch": "true", **params}
        if resource_version is not None:
            query["resourceVersion"] = resource_version
        if bookmarks:
            query["allowWatchBookmarks"] = "true"
        if timeout_seconds is not None:
            query["timeoutSeconds"] = str(timeout_seconds)
        response = self.request("GET", path_for(plural, namespace), params=query, stream=True,
                                timeout=(10.0, read_timeout))
        return WatchStream(response)


class WatchStream:
    """One watch response, read line by line as json. Iterate for events; `close()` it
    (or use `with`). A non-200 answer is kept as `status_code` / `error` (not raised),
    because whether the apiserver answers 410 in HTTP or as an ERROR event is what some
    tests check."""

    def __init__(self, response: requests.Response):
        self.response = response
        self.status_code = response.status_code
        self.error = None
        if self.status_code != 200:
            try:
                self.error = response.json()
            except ValueError:
                self.error = response.text
            response.close()
        self._buffer = b""
        self._chunks = response.iter_content(chunk_size=None) if self.status_code == 200 else iter(())

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        """The next event. StopIteration when the server ends the stream cleanly; requests
        exceptions (ChunkedEncodingError, ConnectionError on read timeout) when cut or stalled."""
        while b"\n" not in self._buffer:
            chunk = next(self._chunks)   # StopIteration at the end of the stream
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        if not line.strip():
            return self.__next__()
        return json.loads(line)

    def close(self) -> None:
        self.response.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
