"""The registry of known secrets the log redaction hides, and the search that finds them.

Tokens and CA bundles are registered per owner (an integration's id; "" for the operator's
own, which stay for the process's life). Tenants write these strings, so the registry
refuses what could blank ordinary text out of the operator's log: anything under
MIN_SECRET_LENGTH characters, anything with whitespace, anything found inside an
integration's id, tenant id or name; and an owner's secrets leave when the owner leaves
(`retain_secrets`) or rotates them (`set_secrets` replaces). `logs.redact` applies it to
every record. No I/O, no greenlets.
"""
from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterable

REDACTED = "[REDACTED]"
# Shorter strings are not registered: a tenant could otherwise blank "integration" or any
# other word out of every operator log line; bearer tokens and PEM lines are far longer.
MIN_SECRET_LENGTH = 16


class SecretRegistry:
    """The set of known secrets, and the search that finds them in a line.

    Two strategies, chosen by size (measured; see tests/unit/test_logs.py):
    - up to `small` secrets: `secret in text` for each, longest first. About 0.1 us per
      secret for a typical line, and nothing to rebuild.
    - above: an index from each secret's last MIN_SECRET_LENGTH characters to the
      secrets ending so; the line's windows are looked up once each. The cost follows
      the line's length, not the number of secrets, and registering is O(1). A regex
      alternation was slower at every size, and a trie-shaped regex took 0.9 s to
      compile for 10 000 secrets: a stall of every greenlet on each change.
    Readers never lock: writers replace whole tuples, which is atomic.
    """

    def __init__(self, *, small: int = 256) -> None:
        self._small = small
        self._secrets: set[str] = set()
        self._longest_first: tuple[str, ...] = ()
        self._by_tail: dict[str, tuple[str, ...]] = {}
        self._owners: dict[str, frozenset[str]] = {}  # integration id ("" = the operator) -> secrets
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._secrets)

    def register(self, values: Iterable[str | None]) -> None:
        """Secrets that stay for the life of the process (the operator's own)."""
        self.set_owner("", (*self._owners.get("", ()), *values))

    def set_owner(self, owner: str, values: Iterable[str | None], *, public: Iterable[str] = ()) -> None:
        """Replace `owner`'s secrets with `values` (a rotated token leaves the registry)."""
        found: set[str] = set()
        for value in values:
            if value:
                found.update(_expand_secret(value))
        public = tuple(public)
        kept = frozenset(s for s in found if len(s) >= MIN_SECRET_LENGTH and not any(c.isspace() for c in s)
                         and not any(s in word for word in public))
        if self._owners.get(owner, frozenset()) == kept:
            return
        if kept:
            self._owners[owner] = kept
        else:
            self._owners.pop(owner, None)
        self._rebuild()

    def retain(self, owners: Iterable[str]) -> None:
        """Forget the secrets of every owner not in `owners` (the operator's own stay)."""
        keep = set(owners) | {""}
        gone = [o for o in self._owners if o.split("#", 1)[0] not in keep]  # "id#kept" belongs to "id"
        if gone:
            self._owners = {o: v for o, v in self._owners.items() if o not in gone}
            self._rebuild()

    def _rebuild(self) -> None:
        secrets = set().union(*self._owners.values()) if self._owners else set()
        by_tail: dict[str, list[str]] = {}
        for secret in secrets:
            by_tail.setdefault(secret[-MIN_SECRET_LENGTH:], []).append(secret)
        with self._lock:  # readers never lock: each attribute is replaced whole
            self._by_tail = {t: tuple(sorted(v, key=len, reverse=True)) for t, v in by_tail.items()}
            self._longest_first = tuple(sorted(secrets, key=len, reverse=True)) if len(secrets) <= self._small else ()
            self._secrets = secrets

    def redact(self, text: str) -> str:
        # Spans, not str.replace: two overlapping secrets are both hidden whole.
        spans: list[tuple[int, int]] = []
        if len(self._secrets) <= self._small:
            for secret in self._longest_first:
                if secret not in text:  # the common case; `in` is cheaper than find()
                    continue
                start = text.find(secret)
                while start != -1:
                    spans.append((start, start + len(secret)))
                    start = text.find(secret, start + 1)
        else:
            width = MIN_SECRET_LENGTH
            lookup = self._by_tail.get
            for end in range(width, len(text) + 1):
                bucket = lookup(text[end - width:end])
                if bucket:
                    for secret in bucket:  # longest first
                        start = end - len(secret)
                        if start >= 0 and text.startswith(secret, start):
                            spans.append((start, end))
                            break
        return _cut(text, spans) if spans else text


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each span (merged where they overlap) replaced by REDACTED."""
    spans.sort()
    parts: list[str] = []
    position = 0
    for start, end in spans:
        if start < position:  # overlaps the previous span: extend it
            position = max(position, end)
            continue
        parts.extend((text[position:start], REDACTED))
        position = end
    parts.append(text[position:])
    return "".join(parts)


def _expand_secret(value: str) -> list[str]:
    """The secret itself plus, for a PEM or base64-of-PEM, each body line of the PEM."""
    value = value.strip()
    out = [value]
    pem = value if "-----BEGIN" in value else None
    if pem is None and len(value) >= 40:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if b"-----BEGIN" in decoded:
            pem = decoded.decode("ascii", "replace")
    if pem is not None:
        out.extend(line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----"))
    return out


_registry = SecretRegistry()


def register_secrets(values: Iterable[str | None]) -> None:
    """Never log these strings (the operator's own secrets, kept for the process's life).
    None and empty values are skipped; see `set_secrets` for what is refused."""
    _registry.register(values)


def set_secrets(owner: str, values: Iterable[str | None], *, public: Iterable[str] = ()) -> None:
    """The secrets of one integration (tokens, certificates), replacing its previous ones.

    A certificate (PEM, or base64 of PEM as in the integration config) also registers
    the base64 lines of its body, so a PEM printed by a TLS library is caught too.
    Refused: strings under MIN_SECRET_LENGTH, with whitespace, or found inside one of the
    `public` words (ids and names): a tenant must not blank ordinary text out of the log."""
    _registry.set_owner(owner, values, public=public)


def retain_secrets(owners: Iterable[str]) -> None:
    """Forget the secrets of integrations that left."""
    _registry.retain(owners)


