"""What each tenant chose to leave out (issue 19 point 4), between the watch and delivery.

- `excludeNamespaces` (names or shell-style patterns): with a list of namespaces the
  excluded ones are not watched at all (orchestration.wanted_watches); with all-namespace
  watches the changes of excluded namespaces are dropped here.
- `labelSelector`: sent to the apiserver with every list and watch (clusters.ListerWatcher),
  except the Events watch (Events carry no labels of their object). An object that stops
  matching arrives as a watch DELETED: `Gate` asks the apiserver whether it still exists
  before reporting a deletion.
- the opt-out annotation `painchain.io/ignore: "true"`, on an object or on its namespace.
  Namespace annotations come from one list+watch of namespaces per cluster credential set
  (`NamespaceWatch`); where `list namespaces` is forbidden that is logged once and only
  objects' own annotations count. A core Event follows its involved object when the
  connector has seen that object annotated.

Exclusions and annotations apply to the next change without restarting any watch: every
watch's `Gate` reads its integration's current `Filters` from the `FilterBook`, which
`WatchPool.adjust` refreshes at every re-sync. Detection still runs on filtered objects
(its bookkeeping stays right); only their changes are dropped.

Greenlets: one "namespaces:<cluster>" per credential set in use (NamespaceWatch.run),
owned by `ClusterNotesBook` and killed when the last watch of that credential set stops.
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gevent
import orjson
from gevent import Greenlet

from . import detecting
from ._log import logger
from .clusters import ApiError, Forbidden, Gone, ListerWatcher, Oversized, ReadLimits, Unauthorized
from .model import Change, DetectContext
from .objects import SHAPES, Event, ObjectReference, Owner, Status, shaped
from .resources import RESOURCE_TYPES
from .backoff import Backoff

IGNORE_ANNOTATION = "painchain.io/ignore"
NAMESPACES_PATH = "/api/v1/namespaces"
MAX_IGNORED_OBJECTS = 100_000  # per cluster: bounded whatever a cluster holds


def annotated(obj) -> bool:
    """Whether a decoded object (objects.py) opts out with `painchain.io/ignore: "true"`."""
    value = (obj.metadata.annotations or {}).get(IGNORE_ANNOTATION)
    return isinstance(value, str) and value.strip().lower() == "true"


@dataclass(frozen=True)
class Filters:
    """One integration's filters, as `wanted_watches` derives them from its config."""

    exclude_namespaces: tuple[str, ...] = ()
    label_selector: str = ""

    def excludes(self, namespace: str | None) -> bool:
        return bool(namespace) and any(fnmatch.fnmatchcase(namespace, p) for p in self.exclude_namespaces)


class FilterBook:
    """integration id -> its current Filters; replaced as a whole at every re-sync."""

    def __init__(self) -> None:
        self.current: dict[str, Filters] = {}

    def update(self, filters: dict[str, Filters]) -> None:
        self.current = filters

    def get(self, integration_id: str) -> Filters:
        return self.current.get(integration_id) or Filters()


@dataclass
class ClusterNotes:
    """What the watches of one cluster learned about opt-outs (cluster facts, shared by
    every integration watching that cluster with the same credentials)."""

    ignored_namespaces: set[str] = field(default_factory=set)
    ignored_objects: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, namespace, name)
    namespaces_known: bool = False  # False until listed, and for good when forbidden

    def note_object(self, kind: str, namespace: str, name: str, ignored: bool) -> None:
        key = (kind, namespace, name)
        if ignored:
            if len(self.ignored_objects) < MAX_IGNORED_OBJECTS:
                self.ignored_objects.add(key)
        elif self.ignored_objects:
            self.ignored_objects.discard(key)


class Gate:
    """One watch's `project` and `detect`: detection's, plus the opt-outs and filters."""

    def __init__(self, *, integration_id: str, resource: str, filters: FilterBook, notes: ClusterNotes,
                 still_exists: Callable[[Any], bool] | None = None,
                 counted: Callable[[str, int], None] | None = None) -> None:
        self.counted = counted  # (reason, how many changes) -> metrics
        self.integration_id = integration_id
        self.resource = resource
        self.kind = RESOURCE_TYPES[resource].kind
        self.filters = filters
        self.notes = notes
        self.still_exists = still_exists  # set when a label selector can hide an object
        self.ignored: set[str] = set()  # uids of this watch's objects that opt out
        self._project, self._detect = detecting.project, detecting.detect

    # Both run for every watch event (pods: the hot path): the common case, no opt-out
    # anywhere, costs two dict lookups and no call.
    def project(self, resource: str, obj, seen_at: float | None = None):
        if type(obj) is dict:
            obj = shaped(obj, SHAPES[resource])
        compact = self._project(resource, obj, seen_at)
        notes = self.notes
        if resource == "events":
            ignored = bool(notes.ignored_objects) and self._involved(obj) in notes.ignored_objects
        else:
            ignored = bool(obj.metadata.annotations) and annotated(obj)
            if ignored or notes.ignored_objects:
                notes.note_object(self.kind, compact.namespace, compact.name, ignored)
        if ignored:
            self.ignored.add(compact.uid)
        elif self.ignored:
            self.ignored.discard(compact.uid)
        return compact

    @staticmethod
    def _involved(obj: Event) -> tuple:
        involved = obj.involved_object or ObjectReference()
        return involved.kind, involved.namespace or "", involved.name

    def detect(self, resource: str, old, new, *, deleted: bool, ctx: DetectContext) -> tuple[list[Change], Any]:
        changes, state = self._detect(resource, old, new, deleted=deleted, ctx=ctx)
        if not changes and not deleted:
            return changes, state
        last = new if new is not None else old
        if changes and last is not None:
            why = self._left_out(last)
            if why is None and deleted and self.still_exists is not None and self.still_exists(last):
                why = "left_selector"  # it stopped matching the label selector: not a deletion
            if why is not None:
                if self.counted is not None:
                    self.counted(why, len(changes))
                changes = []
        if deleted and last is not None:
            self.ignored.discard(last.uid)
            if resource != "events":
                self.notes.note_object(self.kind, last.namespace, last.name, False)
        return changes, state

    def _left_out(self, compact) -> str | None:
        """Why this object's changes are left out (a metrics reason), or None."""
        namespace = compact.namespace
        if compact.uid in self.ignored:
            return "annotation"
        if namespace in self.notes.ignored_namespaces:
            return "namespace_annotation"
        if self.filters.get(self.integration_id).excludes(namespace):
            return "excluded_namespace"
        return None


def exists_checker(api, *, resource: str, connect_timeout: float) -> Callable[[Any], bool]:
    """`still_exists(compact)`: whether the apiserver still has that object (same uid).
    On any doubt (an error, a timeout) it answers False: a deletion reported twice is
    deduplicated, a deletion never reported is lost."""
    rt = RESOURCE_TYPES[resource]

    def still_exists(compact) -> bool:
        path = f"{rt.path(compact.namespace)}/{compact.name}"
        try:
            raw = ListerWatcher(api, path=path, connect_timeout=connect_timeout)._get([], connect_timeout * 2)
        except ApiError:
            return False
        try:
            doc = orjson.loads(raw.read(4 * 2**20))
        except (ValueError, OSError):
            return False
        finally:
            raw.release_conn()
        return isinstance(doc, dict) and (doc.get("metadata") or {}).get("uid") == compact.uid

    return still_exists


class NamespaceWatch:
    """List+watch of namespaces for one credential set: which ones carry the opt-out."""

    def __init__(self, *, api, notes: ClusterNotes, label: str, connect_timeout: float,
                 watch_timeout: float = 300.0, forbidden_retry: float = 600.0,
                 limits: ReadLimits = ReadLimits(),
                 sleep: Callable[[float], None] = gevent.sleep) -> None:
        # bounded like every read of a tenant's cluster (sizes, pages, objects)
        self.lw = ListerWatcher(api, path=NAMESPACES_PATH, connect_timeout=connect_timeout, limits=limits,
                                shape=Owner)  # a namespace's name and annotations
        self.notes = notes
        self.label = label
        self.watch_timeout = watch_timeout
        self.forbidden_retry = forbidden_retry
        self.sleep = sleep
        self.said_forbidden = False

    def run(self) -> None:
        backoff = Backoff()
        resource_version = None
        while True:
            try:
                if resource_version is None:
                    resource_version = self.relist()
                started = time.monotonic()
                resource_version = self.watch_once(resource_version)
                if time.monotonic() - started < 1.0:
                    self.sleep(backoff.next_delay())  # cut at once (a proxy): not at full speed
                else:
                    backoff.healthy()
            except Gone:
                resource_version = None
            except (Forbidden, Unauthorized) as exc:
                if not self.said_forbidden:
                    self.said_forbidden = True
                    logger.info("{}: cannot list namespaces ({}): the {} annotation is honoured on objects only",
                                self.label, exc.reason, IGNORE_ANNOTATION)
                self.sleep(self.forbidden_retry)
            except ApiError as exc:
                logger.debug("{}: namespace watch: {}", self.label, exc)
                resource_version = None
                self.sleep(backoff.next_delay())
            except Exception as exc:  # noqa: BLE001 - a bug here must not end the opt-outs silently
                logger.opt(exception=exc).error("{}: namespace watch crashed: {}; restarting it", self.label,
                                                type(exc).__name__)
                resource_version = None
                self.sleep(backoff.next_delay())

    def relist(self) -> str:
        ignored, token, resource_version = set(), None, ""
        limits, pages, seen = self.lw.limits, 0, 0
        while True:
            pages += 1
            if pages > limits.max_list_pages:
                raise Oversized(f"the namespace list has more than {limits.max_list_pages} pages (MAX_LIST_PAGES)")
            page = self.lw.list_page(limit=500, continue_token=token)
            seen += len(page.items)
            if seen > limits.max_list_objects:
                raise Oversized(f"the namespace list has more than {limits.max_list_objects} objects (MAX_LIST_OBJECTS)")
            ignored.update(ns.metadata.name for ns in page.items if ns.metadata.name and annotated(ns))
            resource_version, token = page.resource_version, page.continue_token
            if not token:
                break
        self.notes.ignored_namespaces = ignored
        self.notes.namespaces_known = True
        return resource_version

    def watch_once(self, resource_version: str) -> str:
        for event in self.lw.watch(resource_version=resource_version, timeout_seconds=int(self.watch_timeout),
                                   read_timeout=self.watch_timeout + 30):
            obj = event.object
            if event.type == "ERROR":
                code = obj.code if isinstance(obj, Status) else None
                raise Gone("namespace watch expired") if code == 410 else ApiError(f"namespace watch error {code}")
            if obj is None:
                continue
            resource_version = obj.metadata.resource_version or resource_version
            name = obj.metadata.name
            if event.type == "BOOKMARK" or not name:
                continue
            if event.type != "DELETED" and annotated(obj):
                self.notes.ignored_namespaces.add(name)
            else:
                self.notes.ignored_namespaces.discard(name)
        return resource_version


class ClusterNotesBook:
    """ClusterNotes and their NamespaceWatch per credential set, counted by the watches using them."""

    def __init__(self, *, connect_timeout: float, watch_namespaces: bool = True,
                 limits: ReadLimits = ReadLimits()) -> None:
        self.connect_timeout = connect_timeout
        self.watch_namespaces = watch_namespaces
        self.limits = limits
        self._entries: dict[str, list] = {}  # credential fingerprint -> [notes, refcount, greenlet]

    def acquire(self, cluster, api) -> ClusterNotes:
        fp = cluster.credential_fingerprint
        entry = self._entries.get(fp)
        if entry is None:
            notes = ClusterNotes()
            greenlet = None
            if self.watch_namespaces:
                watch = NamespaceWatch(api=api, notes=notes, label=f"cluster {cluster.name!r}",
                                       connect_timeout=self.connect_timeout, limits=self.limits)
                greenlet = Greenlet(watch.run)
                greenlet.name = f"namespaces:{cluster.name}"
                greenlet.start()
            entry = self._entries[fp] = [notes, 0, greenlet]
        entry[1] += 1
        return entry[0]

    def release(self, cluster) -> None:
        fp = cluster.credential_fingerprint
        entry = self._entries.get(fp)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._entries[fp]
            if entry[2] is not None:
                entry[2].kill(block=False)

    def __len__(self) -> int:
        return len(self._entries)
