"""Who owns which integration: rendezvous (highest random weight) hashing. Pure functions.

Every replica computes the same owner from the same member set, with no coordination:
the owner of an integration is the member whose hash of (member, integration id) is the
highest. When a member joins, it takes exactly the integrations it now wins (about
1/(N+1) of them, taken evenly from every other member); when one leaves, only its own
integrations move, each to the member that scored second for it. No virtual nodes to
tune: the balance is that of a fair dice (max/mean about 1.07 for 1,000 integrations over
5 members, bench #8).

No I/O, no clock, no greenlets.
"""
from __future__ import annotations

from hashlib import blake2b
from typing import Iterable, Sequence


def score(member: str, key: str) -> int:
    """A stable 64-bit weight of (member, key): the same on every replica and Python version
    (not `hash()`, which is salted per process)."""
    digest = blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(key: str, members: Iterable[str]) -> str | None:
    """The member that owns `key`, or None when there are no members. Ties (a 64-bit
    collision) go to the greater member name, so the answer never depends on order."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (score(member, key), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best else None


def assign(keys: Iterable[str], members: Sequence[str]) -> dict[str, str | None]:
    """key -> owner for every key (None for all when there are no members)."""
    members = tuple(members)
    return {key: owner_of(key, members) for key in keys}


def share_of(me: str, keys: Iterable[str], members: Sequence[str]) -> set[str]:
    """The keys `me` owns among `members` (empty when `me` is not a member)."""
    members = tuple(members)
    if me not in members:
        return set()
    return {key for key in keys if owner_of(key, members) == me}


def moved(keys: Iterable[str], before: Sequence[str], after: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """The keys whose owner differs between two member sets: key -> (from, to)."""
    before, after = tuple(before), tuple(after)
    changes = {}
    for key in keys:
        old, new = owner_of(key, before), owner_of(key, after)
        if old != new:
            changes[key] = (old, new)
    return changes
