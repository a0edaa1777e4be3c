"""This replica's share of the integrations, with a grace period for those it just lost.

`Share.select(ids, now)` answers which integrations to watch: those this replica owns
among the live members, plus those it owned until recently, for `handover` seconds, so
that their new owner can finish its initial list before the old watch stops (the overlap
is harmless: externalIds are deterministic and the backend dedupes). A replica cut off
from the Leases for longer than its partition grace watches nothing (its watch state is
kept on disk for when it is back). Pure: time is passed in; no I/O, no greenlets, no logs
(the moves it returns are logged by the caller).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .ownership import owner_of, share_of


@dataclass(frozen=True)
class Move:
    """One integration changing owner, as seen by this replica."""

    integration_id: str
    source: str | None  # previous owner (None: nobody, e.g. all members were gone)
    target: str | None  # new owner (None: nobody)


class Share:
    def __init__(self, *, me: str, handover: float) -> None:
        self.me = me
        self.handover = handover
        self.members: tuple[str, ...] = ()
        self.cut_off = False
        self.owned: set[str] = set()
        self.releasing: dict[str, float] = {}  # integration id -> deadline (monotonic)
        self._known: set[str] = set()
        self._members_then: tuple[str, ...] | None = None  # members at the previous select

    def select(self, ids: Iterable[str], now: float) -> tuple[set[str], list[Move]]:
        """(integrations to watch, ownership changes since the previous call)."""
        ids = set(ids)
        members = () if self.cut_off else self.members
        mine = share_of(self.me, ids, members)
        before = self._members_then
        moves: list[Move] = []
        for integration_id in sorted(mine - self.owned):
            self.releasing.pop(integration_id, None)
            if before is not None and integration_id in self._known:
                source = owner_of(integration_id, before)
                moves.append(Move(integration_id, source if source != self.me else None, self.me))
        for integration_id in sorted(self.owned - mine):
            if integration_id in ids:
                target = owner_of(integration_id, members)
                moves.append(Move(integration_id, self.me, target))
                if not self.cut_off:
                    self.releasing.setdefault(integration_id, now + self.handover)
        if self.cut_off:
            self.releasing.clear()
        self.releasing = {i: deadline for i, deadline in self.releasing.items()
                          if deadline > now and i in ids and i not in mine}
        self.owned, self._known, self._members_then = mine, ids, members
        return mine | set(self.releasing), moves

    @property
    def started(self) -> bool:
        """Whether select() ran once (the first share is not a move)."""
        return self._members_then is not None

    def next_deadline(self) -> float | None:
        """When the earliest hand-over ends (None when none is in progress)."""
        return min(self.releasing.values(), default=None)
