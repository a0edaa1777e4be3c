"""The PainChain backend API client: register the type, read integrations, post events.

Owns one `requests.Session` with a kept-alive connection pool (there is no batch endpoint:
throughput comes from concurrent posts over reused connections). Starts no greenlets;
callers (the outbox's senders, the re-sync loop) call it from their own greenlets.

How it fails: every HTTP-level problem becomes a `BackendError` whose type is the retry
policy (STYLE habit 3): `TransientError` for 5xx, timeouts and connection errors,
`PermanentError` for other 4xx. Messages are short and never carry a token, a CA bundle
or an integration config: they name the method, the path and the status only (plus the
backend's own validation message for event/register posts, which holds no secrets).
`register` turns repeated failure into `RegistrationFailed`; `mark_synced` never raises.

The session ignores the environment (`trust_env = False`): no proxies from HTTP(S)_PROXY,
no CA bundle from REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, no credentials from ~/.netrc. The
backend URL is configuration; what the host shell happens to export must not change where
events go or which CA validates them. Cookies are never stored either, so nothing the
backend sets for one tenant's request can ride along with another's.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import gevent
import requests
from ._log import logger
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from .metadata import USER_AGENT
from .model import Outgoing
from .schemas.event import iso_utc

CONNECTOR_TYPE = "kubernetes"
TENANT_HEADER = "x-tenant-id"
_MAX_DETAIL = 200  # characters of the backend's own error message kept in ours


class BackendError(Exception):
    """A request to the backend failed. `status` is None when no HTTP answer came back."""

    def __init__(self, message: str, *, status: int | None = None, reached_backend: bool = True,
                 unavailable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # The backend as a whole is unavailable (502/503/504, a timeout, a refused or reset
        # connection): delivery pauses, and no event is charged an attempt for it.
        self.unavailable = unavailable
        self.retry_after = retry_after  # seconds, from a Retry-After header
        # False when the request never got an HTTP answer and likely never reached the
        # backend (refused, reset, connect timeout): the event itself is not to blame.
        self.reached_backend = reached_backend


class TransientError(BackendError):
    """Worth retrying with backoff: 5xx, timeouts, connection errors."""


class PermanentError(BackendError):
    """Retrying the same request will not help: 4xx other than 409 (and 3xx, bad URLs)."""


class RegistrationFailed(Exception):
    """The backend never accepted the connector type registration."""


def _detail(response: requests.Response) -> str:
    """The backend's `message` (NestJS error body), shortened; '' if there is none."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    message = payload.get("message") if isinstance(payload, dict) else None
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    if not isinstance(message, str):
        return ""
    return message if len(message) <= _MAX_DETAIL else message[:_MAX_DETAIL] + "…"


def _error_for(response: requests.Response, what: str, *, with_detail: bool) -> BackendError:
    status = response.status_code
    text = f"{what}: HTTP {status}"
    detail = _detail(response) if with_detail else ""
    if detail:
        text += f" ({detail})"
    if status in _UNAVAILABLE:
        return TransientError(text, status=status, unavailable=True,
                              retry_after=_retry_after(response.headers.get("Retry-After")))
    cls = TransientError if status >= 500 else PermanentError
    return cls(text, status=status)


_UNAVAILABLE = frozenset({502, 503, 504})


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped at 5 minutes."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), 300.0)


class BackendClient:
    """PainChain API client over one kept-alive `requests.Session` (safe to share between greenlets)."""

    def __init__(self, *, base_url: str, connect_timeout: float, read_timeout: float, pool_size: int) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = (connect_timeout, read_timeout)
        session = requests.Session()
        session.trust_env = False  # see the module docstring
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # store no cookies
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        # pool_block=False: a burst beyond pool_size opens extra connections that are
        # closed after use, rather than parking greenlets; size the pool to the senders.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def close(self) -> None:
        self._session.close()

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        """One request; requests' exceptions become Transient/PermanentError (no HTTP status check)."""
        try:
            return self._session.request(
                method, self.base_url + path, timeout=self._timeout, allow_redirects=False, **kwargs
            )
        except requests.exceptions.ConnectTimeout:
            raise TransientError(f"{what}: connect timeout", reached_backend=False, unavailable=True) from None
        except requests.exceptions.Timeout:
            raise TransientError(f"{what}: read timeout", unavailable=True) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise PermanentError(f"{what}: invalid backend URL", reached_backend=False) from None
        except requests.exceptions.ConnectionError as exc:
            # Name the cause's class, not its text (the text repeats the URL and is long).
            reason = exc.args[0] if exc.args else None
            reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError -> its cause
            # Refused / unresolvable: the request never left. A reset after sending may
            # be the backend choking on this very request, so that one counts.
            never_sent = isinstance(reason, NewConnectionError)
            raise TransientError(
                f"{what}: connection error ({type(reason or exc).__name__})", reached_backend=not never_sent,
                unavailable=True,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"{what}: {type(exc).__name__}") from None

    @staticmethod
    def _json_headers(tenant_id: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if tenant_id:
            headers[TENANT_HEADER] = tenant_id
        return headers

    # -- API ----------------------------------------------------------------------------

    def register(
        self,
        metadata: Mapping[str, Any],
        *,
        attempts: int = 5,
        delay: float = 2.0,
        sleep: Callable[[float], Any] = gevent.sleep,
    ) -> dict:
        """POST /integrations/types/register (an upsert). Retries transient failures with
        doubling delays; a 4xx or the last failure raises RegistrationFailed."""
        what = "POST /integrations/types/register"
        body = json.dumps(dict(metadata))
        last: BackendError | None = None
        for attempt in range(1, attempts + 1):
            try:
                response = self._send("POST", "/integrations/types/register", what, data=body,
                                      headers=self._json_headers(None))
                if response.ok:
                    try:
                        answer = response.json()
                    except ValueError:
                        answer = {}
                    return answer if isinstance(answer, dict) else {}
                raise _error_for(response, what, with_detail=True)
            except PermanentError as exc:
                raise RegistrationFailed(
                    f"the backend at {self.base_url} refused the connector type registration: {exc.message}"
                ) from None
            except TransientError as exc:
                last = exc
                if attempt < attempts:
                    wait = delay * 2 ** (attempt - 1)
                    logger.warning("registration attempt {}/{} failed: {}; retrying in {:.1f}s",
                                   attempt, attempts, exc.message, wait)
                    sleep(wait)
        raise RegistrationFailed(
            f"could not register the connector type with the backend at {self.base_url} "
            f"after {attempts} attempts: {last.message if last else 'no attempt made'}"
        )

    def list_integrations(self) -> list[dict]:
        """GET /integrations?type=kubernetes without a tenant header: every tenant's documents,
        unfiltered (the backend ignores `type`; see `sources.select`). Any failure,
        including a 4xx or a body that is not a JSON list, raises TransientError: the caller
        keeps what it has and tries again at the next re-sync."""
        what = "GET /integrations"
        response = self._send("GET", "/integrations", what, params={"type": CONNECTOR_TYPE})
        if not response.ok:
            raise TransientError(f"{what}: HTTP {response.status_code}", status=response.status_code)
        try:
            documents = response.json()
        except ValueError:
            raise TransientError(f"{what}: answer is not JSON", status=response.status_code) from None
        if not isinstance(documents, list):
            raise TransientError(f"{what}: answer is not a JSON list", status=response.status_code)
        return documents

    def post_event(self, item: Outgoing) -> str:
        """POST /events. Returns "stored" (2xx) or "duplicate" (409). The tenant header is
        sent exactly when the item has a tenant. 5xx/timeouts/connection errors raise
        TransientError; 413 and every other 4xx raise PermanentError."""
        what = "POST /events"
        response = self._send("POST", "/events", what, data=item.payload,
                              headers=self._json_headers(item.tenant_id))
        if response.status_code == 409:
            return "duplicate"
        if 200 <= response.status_code < 300:
            # A repeat also answers 201 (with the original id); we cannot tell it apart
            # without remembering ids, and both mean the same thing to us: stored.
            return "stored"
        raise _error_for(response, what, with_detail=True)

    post = post_event  # the outbox's poster interface: post(item) -> "stored" | "duplicate"

    def update_integration(self, integration_id: str, tenant_id: str | None, fields: Mapping[str, Any]) -> bool:
        """PUT /integrations/{id} with `fields` (status, lastSync) and the tenant header. Not
        critical: failures are logged at debug level and swallowed (returns False)."""
        what = "PUT /integrations/{id}"
        try:
            response = self._send("PUT", f"/integrations/{quote(integration_id, safe='')}", what,
                                  data=json.dumps(dict(fields)), headers=self._json_headers(tenant_id))
            if not response.ok:
                raise _error_for(response, what, with_detail=False)
        except BackendError as exc:
            logger.bind(integration=integration_id).debug("could not update the integration: {}", exc.message)
            return False
        return True

    def mark_synced(self, integration_id: str, tenant_id: str | None, when: datetime) -> None:
        """PUT /integrations/{id} {"lastSync": ...}. Never raises."""
        self.update_integration(integration_id, tenant_id, {"lastSync": iso_utc(when)})
