"""Where a tenant's cluster `server` may point: the egress policy, checked at connect time.

A tenant writes `server`; the shared connector then sends a bearer token there and reads
the answer. Without a policy that is a server-side request forgery: cloud metadata
(169.254.169.254), the pod's own loopback, the backend itself. Two checks, as envoy's and
Smokescreen's egress filters do it:

- the URL's shape, when the config is parsed (`url_problem`): https only for tenant
  clusters; no userinfo, query or fragment for any cluster (the client appends the API path
  to the string, so `?` or `#` would turn it into an arbitrary GET);
- every address the host resolves to, when the connection is made (`guard_connections`
  installs connection classes whose `_new_conn` resolves, checks every address, then
  connects to a checked address), so DNS rebinding between parse and connect cannot
  bypass it.

Refused by default: loopback, link-local (cloud metadata included), unspecified and
multicast. `EgressPolicy.allowed` re-allows ranges of those (a test cluster on
127.0.0.0/8); `denied` adds ranges (the host cluster's pod and service CIDRs) and always
wins. Tenant-less integrations and local mode are the operator's own: never restricted.
Nothing here starts a greenlet; the refusal message names the address and the range,
never the token.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, NameResolutionError, NewConnectionError
from urllib3.util import connection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_BUILT_IN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    # cloud metadata endpoints outside link-local: AWS and GCP over IPv6, Alibaba
    ("cloud metadata", ("fd00:ec2::254/128", "fd20:ce::254/128", "100.100.100.200/32")),
    ("unspecified", ("0.0.0.0/8", "::/128")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
)
_NETWORKS = tuple((name, tuple(ipaddress.ip_network(r) for r in ranges)) for name, ranges in _BUILT_IN)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_networks(text: str | Iterable[str] | None) -> tuple[Network, ...]:
    """'10.0.0.0/8, fd00::/8' -> networks. Raises ValueError naming the bad entry."""
    if text is None:
        return ()
    parts = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    networks = []
    for part in parts:
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR network") from None
    return tuple(networks)


class EgressRefused(HTTPError):
    """A connection to an address the policy refuses; the message is safe to log."""


@dataclass(frozen=True)
class EgressPolicy:
    allowed: tuple[Network, ...] = ()
    denied: tuple[Network, ...] = ()

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be connected to, or None."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
        elif isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)  # 64:ff9b::a9fe:a9fe is 169.254.169.254
        for network in self.denied:
            if ip.version == network.version and ip in network:
                return f"{ip} is in a denied network ({network}, DENIED_SERVER_NETWORKS)"
        if any(ip.version == n.version and ip in n for n in self.allowed):
            return None
        for name, networks in _NETWORKS:
            if any(ip.version == n.version and ip in n for n in networks):
                return f"{ip} is a {name} address (not allowed for tenant clusters; see ALLOWED_SERVER_NETWORKS)"
        return None


def url_problem(server: str, *, restricted: bool) -> str | None:
    """Why a cluster `server` URL is unacceptable, or None. Never echoes the URL."""
    try:
        parts = urlsplit(server)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "not a valid URL."
    if parts.username is not None or parts.password is not None:
        return "must not carry a user or password (use token)."
    if parts.query or parts.fragment or "?" in server or "#" in server:
        return "must not have a query or fragment (https://host[:port][/path])."
    if restricted and parts.scheme != "https":
        return "must be https:// (a token must not travel in clear)."
    return None


def _checked_addresses(conn: HTTPConnection, policy: EgressPolicy) -> list[tuple]:
    try:
        infos = socket.getaddrinfo(conn._dns_host, conn.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    for info in infos:
        why = policy.refusal(info[4][0])
        if why:
            raise EgressRefused(f"refused to connect to {conn.host}: {why}")
    return infos


class _Guarded:
    """Mixed into urllib3's connection classes: resolve, check every address, connect."""

    egress_policy: EgressPolicy = EgressPolicy()

    def _new_conn(self):
        infos = _checked_addresses(self, self.egress_policy)
        last: OSError | None = None
        for _family, _type, _proto, _name, sockaddr in infos:
            try:
                return connection.create_connection(
                    (sockaddr[0], self.port), self.timeout,
                    source_address=self.source_address, socket_options=self.socket_options,
                )
            except OSError as exc:  # try the next checked address, like create_connection does
                last = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}")


def guard_connections(api, policy: EgressPolicy) -> None:
    """Make every connection of this kubernetes ApiClient go through the policy. A proxy
    would check its own address, not the tenant's: a guarded client never has one."""
    manager = api.rest_client.pool_manager
    if isinstance(manager, ProxyManager):
        raise EgressRefused("a proxy is configured for a tenant's cluster; refusing (the proxy would reach any address)")
    https = type("GuardedHTTPSConnection", (_Guarded, HTTPSConnection), {"egress_policy": policy})
    http = type("GuardedHTTPConnection", (_Guarded, HTTPConnection), {"egress_policy": policy})
    manager.pool_classes_by_scheme = {
        "http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }
    manager.clear()
