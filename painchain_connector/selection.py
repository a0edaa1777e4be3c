"""Between the backend's list and the watch pool: last known good configs, and the guard
against a suspicious shrink. Both are pure state machines the Connector owns and feeds
one fetch at a time; neither does I/O nor starts a greenlet.

- `LastKnownGood`: when an edit makes an integration invalid, keep running its previous
  valid config (the tenant is told through the reporter) until it is fixed. A process
  that never saw a valid version has nothing to keep: the integration is rejected.
- `ShrinkGuard`: a fetch that would stop more than half of the running integrations at
  once (and more than one), an empty list included, is suspect (a backend restart, a DB
  hiccup, a proxy's empty page). Everything keeps running until the same shrunken set
  has come back on `confirmations` consecutive fetches. Smaller removals apply at once.
  STYLE: prefer overlap to gaps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ._log import logger
from .logs import set_secrets
from .schemas.integration import Integration, Limits
from .sources import Fetched, watch_count


class LastKnownGood:
    def __init__(self, *, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._good: dict[str, Integration] = {}
        self.kept: dict[str, tuple[str, ...]] = {}  # id -> the errors of the config we refused

    def apply(self, fetched: Fetched) -> Fetched:
        valid_ids = {i.id for i in fetched.integrations}
        kept: list[Integration] = []
        before, self.kept = self.kept, {}
        budget: dict[str, int] = {}
        for integ in fetched.integrations:
            if integ.tenant_id is not None:
                budget[integ.tenant_id] = budget.get(integ.tenant_id, 0) + watch_count(integ)
        for result in fetched.rejected:
            previous = self._good.get(result.integration_id)
            if result.integration is None and previous is not None and result.integration_id not in valid_ids:
                if previous.tenant_id is not None:  # kept configs count against the tenant's budget too
                    used = budget.get(previous.tenant_id, 0) + watch_count(previous)
                    if used > self.limits.watches_per_tenant:
                        continue
                    budget[previous.tenant_id] = used
                kept.append(previous)
                self.kept[result.integration_id] = result.errors
                # the token that still runs is the old config's: keep hiding it
                set_secrets(f"{previous.id}#kept", [v for c in previous.clusters for v in (c.token, c.certificate)])
        for gone in before.keys() - self.kept.keys():
            set_secrets(f"{gone}#kept", ())
        self._good = {i: g for i, g in self._good.items() if i in fetched.present}
        self._good.update({i.id: i for i in fetched.integrations})
        if not kept:
            return fetched
        return dataclasses.replace(fetched, integrations=fetched.integrations + tuple(kept))


@dataclass
class Verdict:
    integrations: tuple[Integration, ...]  # what to run
    present: frozenset[str]  # ids whose queued events and secrets are kept
    held: tuple[str, ...] = ()  # ids kept running against the list's word


class ShrinkGuard:
    def __init__(self, *, confirmations: int = 3) -> None:
        self.confirmations = confirmations
        self._running: dict[str, Integration] = {}
        self._suspect: frozenset[str] | None = None
        self._seen = 0

    def review(self, fetched: Fetched) -> Verdict:
        wanted = {i.id: i for i in fetched.integrations if i.active}
        stopping = [i for i in self._running if i not in wanted]
        suspicious = len(stopping) > 1 and len(stopping) * 2 > len(self._running)
        if suspicious:
            # The same integrations missing again confirms it, whatever else was added meanwhile.
            shrunk = frozenset(stopping)
            self._seen = self._seen + 1 if shrunk == self._suspect else 1
            self._suspect = shrunk
            if self._seen < self.confirmations:
                logger.warning(
                    "the integration list would stop {} of {} running integrations at once: keeping them "
                    "running until {} consecutive fetches agree ({} so far)",
                    len(stopping), len(self._running), self.confirmations, self._seen)
                held = tuple(stopping)
                keep = tuple(self._running[i] for i in held)
                self._running = {**wanted, **{i.id: i for i in keep}}
                return Verdict(fetched.integrations + keep, fetched.present | frozenset(held), held)
            logger.warning("the integration list confirmed {} times: stopping {} integrations",
                           self._seen, len(stopping))
        self._suspect, self._seen = None, 0
        self._running = wanted
        return Verdict(fetched.integrations, fetched.present)
