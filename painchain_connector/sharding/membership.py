"""Sharding of one connector replica: its Lease, the live members, its share, hand-overs.

`Sharding` is owned by the Connector. It starts one greenlet, `sharding:leases`, that
renews this replica's Lease every `renew_interval` and lists the group's Leases (one
iteration is `tick()`). The Connector's main greenlet asks it, at every re-sync and
whenever it signals a change, which integrations to watch (`adjust()`), and sleeps in
`pause()`, which wakes early when the members change, a hand-over ends, or this replica
has been cut off from the Leases for longer than its partition grace.

How it fails: the host cluster being down never stops a watch at once. A replica that
cannot renew keeps its last known share (others may take the same integrations: overlap,
deduplicated by the backend) for `partition_grace` = lease + hand-over seconds, then stops
its watches, keeping their saved state, and recomputes its share as soon as it can renew
and read the Leases again. Every ownership change is logged once, by its new owner.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

import gevent
from gevent import Greenlet
from gevent.event import Event
from prometheus_client import Counter, Gauge

from .._log import logger
from .ownership import owner_of
from .handover import Share
from .leases import LeaseUnavailable, MemberView


@dataclass(frozen=True)
class ShardTiming:
    """client-go's leader election numbers scaled to the lease: 15 s lease, renew
    attempts every 2 s, a request given up after 10 s."""

    lease: int = 15
    handover: float = 30.0

    @property
    def renew_interval(self) -> float:
        return max(0.1, self.lease / 7.5)

    @property
    def request_timeout(self) -> float:
        return max(0.5, self.lease * 2 / 3)

    @property
    def partition_grace(self) -> float:
        """Unrenewed this long, a replica stops: the others saw its Lease expire (lease)
        and had the hand-over time to list what they took (handover)."""
        return self.lease + self.handover


class ShardMetrics:
    def __init__(self, registry, *, per_integration: bool) -> None:
        self.members = Gauge("painchain_shard_members", "Live replicas of this group, as seen here", registry=registry)
        self.owned = Gauge("painchain_shard_integrations_owned", "Integrations this replica owns", registry=registry)
        self.handovers = Gauge("painchain_shard_handovers", "Integrations lost and still watched for their new owner",
                               registry=registry)
        self.moves = Counter("painchain_shard_ownership_changes_total", "Integrations gained or lost",
                             ["direction"], registry=registry)
        self.renewals = Counter("painchain_shard_lease_renewals_total", "Lease renewals by result", ["result"],
                                registry=registry)
        self.cut_off = Gauge("painchain_shard_cut_off", "1 while cut off from the Leases beyond the partition grace",
                             registry=registry)
        # Opt-in like the other per-integration series: which integrations have watches here.
        self.watched = (Gauge("painchain_shard_watched", "1 per integration watched by this replica", ["integration"],
                              registry=registry) if per_integration else None)


class Sharding:
    def __init__(self, *, leases, identity: str, timing: ShardTiming, metrics: ShardMetrics,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 sleep: Callable[[float], None] = gevent.sleep) -> None:
        self.leases = leases
        self.identity = identity
        self.timing = timing
        self.metrics = metrics
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.view = MemberView(settle=2 * timing.renew_interval)
        self.share = Share(me=identity, handover=timing.handover)
        self.last_renewed: float | None = None
        self.first_view = Event()  # set once we renewed and read the members
        self.changed = Event()  # set when the main loop should recompute the share
        self._loop: Greenlet | None = None
        self._renew_error: str | None = None
        self._list_error: str | None = None
        self._watched: set[str] = set()

    # -- the membership greenlet ---------------------------------------------------------

    def start(self) -> None:
        self._loop = Greenlet(self._run)
        self._loop.name = "sharding:leases"
        self._loop.start()

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - a bug here must not end the membership loop
                logger.opt(exception=exc).error("sharding: membership tick crashed: {}", type(exc).__name__)
            self.sleep(self.timing.renew_interval)

    def tick(self) -> None:
        """Renew our Lease, then read the group's: one iteration of the membership loop."""
        now = self.clock()
        try:
            self.leases.renew(duration=self.timing.lease, now=self.wall())
        except LeaseUnavailable as exc:
            self.metrics.renewals.labels("failed").inc()
            if self._renew_error is None:
                logger.warning("sharding: cannot renew Lease {!r}: {}; keeping the current share for up to {:.0f}s",
                               self.identity, exc, self.timing.partition_grace)
            self._renew_error = str(exc)
        else:
            self.metrics.renewals.labels("ok").inc()
            if self._renew_error is not None:
                logger.info("sharding: Lease {!r} renewed again", self.identity)
            self._renew_error = None
            self.last_renewed = now
        try:
            leases = self.leases.list()
        except LeaseUnavailable as exc:
            self.view.failed(now)
            if self._list_error is None:
                logger.warning("sharding: cannot read the group's Leases: {}", exc)
            self._list_error = str(exc)
        else:
            self._list_error = None
            self.view.observe(leases, self.clock())
            if self.last_renewed is not None and not self.first_view.is_set():
                self.first_view.set()
        self._update_members()

    def _update_members(self) -> None:
        if self.first_view.is_set() and self._list_error is None:
            members = self.view.alive(self.clock())
            if members != self.share.members:
                if self.share.members:
                    logger.info("sharding: members {} -> {}", ",".join(self.share.members) or "-", ",".join(members) or "-")
                self.share.members = members
                self.metrics.members.set(len(members))
                self.changed.set()
        if self.share.cut_off != self.is_cut_off():
            self.changed.set()

    def is_cut_off(self) -> bool:
        if self.last_renewed is None:
            return False
        return self.clock() - self.last_renewed > self.timing.partition_grace

    # -- what the Connector calls --------------------------------------------------------

    def owns(self, integration_id: str) -> bool:
        """Whether this replica owns an integration now (it alone reports its status)."""
        return not self.share.cut_off and owner_of(integration_id, self.share.members) == self.identity

    def wait_first_view(self) -> None:
        """Block until this replica holds its Lease and has read the members once."""
        if not self.first_view.wait(timeout=self.timing.lease):
            logger.warning("sharding: no view of the group's Leases yet; watching nothing until there is one")
            self.first_view.wait()

    def select(self, integrations: Iterable) -> list:
        """The integrations this replica watches: its share plus hand-overs in progress."""
        integrations = list(integrations)
        cut_off = self.is_cut_off()
        if cut_off and not self.share.cut_off:
            logger.warning("sharding: cut off from the Leases for over {:.0f}s: stopping the watches of {} integrations "
                           "(their state is kept) until the Leases can be read again",
                           self.timing.partition_grace, len(self.share.owned) + len(self.share.releasing))
        elif self.share.cut_off and not cut_off:
            logger.info("sharding: Leases reachable again: recomputing this replica's share")
        self.share.cut_off = cut_off
        self.metrics.cut_off.set(1 if cut_off else 0)
        first = not self.share.started
        wanted, moves = self.share.select((i.id for i in integrations), self.clock())
        for move in moves:
            if move.target == self.identity:
                self.metrics.moves.labels("gained").inc()
                logger.bind(integration=move.integration_id).info(
                    "sharding: integration {} moves from {} to {}", move.integration_id, move.source or "-", move.target)
            else:
                self.metrics.moves.labels("lost").inc()
                logger.bind(integration=move.integration_id).debug(
                    "sharding: integration {} handed over to {}; watching it {:.0f}s more", move.integration_id,
                    move.target or "-", 0 if cut_off else self.timing.handover)
        if first:
            logger.info("sharding: {} owns {} of {} integrations (members: {})", self.identity, len(self.share.owned),
                        len(integrations), ",".join(self.share.members) or "-")
        self.metrics.owned.set(len(self.share.owned))
        self.metrics.handovers.set(len(self.share.releasing))
        return [i for i in integrations if i.id in wanted]

    def adjust(self, pool, integrations, *, wanted_watches) -> dict[str, int]:
        """pool.adjust() to this replica's part of `integrations`.

        Watches stopped because this replica is cut off keep their saved state: when it is
        back, the relist diffs against it and reports what changed while nobody may have
        watched (everyone cut off by a host outage). Watches handed over to a live owner
        drop theirs like removed integrations: the new owner reports from now on, and a
        stale state coming back months later would only replay what it already reported."""
        integrations = list(integrations)
        selected = self.select(integrations)
        handed_over = set() if self.share.cut_off else {i.id for i in integrations} - {i.id for i in selected}
        if self.share.cut_off:
            pool.flush_state()
        counts = pool.adjust(wanted_watches(selected), drop_state=handed_over)
        self.observe_watches(pool.running)
        return counts

    def observe_watches(self, running) -> None:
        if self.metrics.watched is None:
            return
        now = {key.integration_id for key in running}
        for gone in self._watched - now:
            self.metrics.watched.remove(gone)
        for integration_id in now - self._watched:
            self.metrics.watched.labels(integration_id).set(1)
        self._watched = now

    def pause(self, seconds: float, *, reshard: Callable[[], object]) -> None:
        """Sleep until the next re-sync, calling `reshard()` whenever the share may have
        changed: members changed, a hand-over ended, or the partition grace ran out."""
        deadline = self.clock() + seconds
        while True:
            now = self.clock()
            if now >= deadline:
                return
            wake = deadline
            if (handover_end := self.share.next_deadline()) is not None:
                wake = min(wake, handover_end)
            if self.last_renewed is not None and not self.share.cut_off:
                wake = min(wake, self.last_renewed + self.timing.partition_grace + 0.01)
            signalled = self.changed.wait(timeout=max(0.0, wake - now))
            if signalled or (wake < deadline and self.clock() >= wake):
                self.changed.clear()
                try:
                    reshard()
                except Exception as exc:  # noqa: BLE001 - the next change or re-sync tries again
                    logger.opt(exception=exc).error("sharding: re-share crashed: {}", type(exc).__name__)
                    self.sleep(self.timing.renew_interval)  # never spin on a failing re-share

    def stop(self, *, hand_over: bool = True) -> None:
        """Stop renewing. With hand_over: delete our Lease first (the others take over at
        their next look) and keep watching for the hand-over time, then return."""
        if self._loop is not None:
            self._loop.kill(block=True, timeout=5)
        if hand_over and self.last_renewed is not None:
            try:
                self.leases.release()
            except LeaseUnavailable as exc:
                logger.warning("sharding: could not release Lease {!r} ({}); it expires in {}s",
                               self.identity, exc, self.timing.lease)
            others = [m for m in self.share.members if m != self.identity]
            if others and not self.share.cut_off:  # someone to hand over to
                logger.info("sharding: Lease {!r} released; watching {:.0f}s more while {} take over",
                            self.identity, self.timing.handover, ",".join(others))
                self.sleep(self.timing.handover)
        self.leases.close()
