"""Helpers every kind's detection shares: ids, timestamps, size bounds, compact building blocks
(the workload spec shared by Deployments, StatefulSets and DaemonSets is in workloads.py).

Pure: no I/O and no clock reads (time comes from the objects, from when the Reflector saw
them (`seen_at` on every compact), or from `DetectContext`).
The only module state is the bounded tables behind `Shared`, which let identical
tuples (the labels of 100 replicas, their container specs) be stored once; they change
memory use, never a result.
"""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from ..model import CLUSTER_SCOPE, Change, DetectContext

MAX_EXTERNAL_ID = 254  # the backend's limit is 255
MAX_MESSAGE = 4096  # characters of a free-text message kept in a compact
MAX_SHORT_MESSAGE = 1024  # container state / termination messages (per container)
MAX_LABELS = 64  # label entries kept per map
MAX_ITEMS = 20  # containers, ports, images listed in one change's data
MAX_SUMMARY = 400  # characters of data["summary"], the one line a timeline shows
MAX_DATA_CHARS = 64 * 1024  # hard guard on json.dumps(data); the backend answers 413 at 100 KB
TRUNCATED = "…(truncated)"
TRUNCATED_LABELS_KEY = "…(truncated)"  # never a valid label key, so it cannot collide

intern = sys.intern


class Shared:
    """Canonical instances of equal hashable values, in a bounded table (cleared when full)."""

    __slots__ = ("_limit", "_table")

    def __init__(self, limit: int = 4096) -> None:
        self._table: dict = {}
        self._limit = limit

    def __call__(self, value):
        found = self._table.get(value)
        if found is None:
            if len(self._table) >= self._limit:
                self._table.clear()
            self._table[value] = found = value
        return found

    def clear(self) -> None:
        self._table.clear()


class _Fields:
    """`cls._fields` (and `_field_defaults`) of a Compact class, as a NamedTuple has them."""

    def __init__(self, defaults: bool) -> None:
        self.defaults = defaults

    def __get__(self, obj, cls) -> Any:
        names = cls.__struct_fields__
        if not self.defaults:
            return names
        defaults = cls.__struct_defaults__
        return dict(zip(names[len(names) - len(defaults):], defaults))


class Compact(msgspec.Struct, frozen=True, gc=False):
    """Base of every compact state a Store keeps (one per watched object).

    A frozen msgspec Struct without a GC header (`gc=False`: it only ever holds strings,
    numbers, bytes and tuples of those or of other compacts, so it is in no cycle): 24
    bytes less than the NamedTuple it replaces, per object and per nested compact, and
    nothing for the collector to walk. Keeps the NamedTuple spelling detection and the
    persisted state format use: `_replace`, `_make`, `_fields`, `_field_defaults`."""

    _fields = _Fields(defaults=False)
    _field_defaults = _Fields(defaults=True)

    def _replace(self, **changes: Any):
        return msgspec.structs.replace(self, **changes)

    @classmethod
    def _make(cls, values):
        return cls(*values)


share_labels = Shared()
share_items = Shared()  # container tuples, condition tuples, port tuples, image tuples


# ---------------------------------------------------------------- projection helpers


def clip(text: Any, limit: int = MAX_MESSAGE) -> str | None:
    """A string no longer than `limit` (+ marker), or None for empty input."""
    if not text:
        return None
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED


def istr(value: Any) -> str:
    """An interned string (low-cardinality values: namespaces, phases, reasons, images)."""
    if value is None:
        return ""
    return intern(value if type(value) is str else str(value))


_labels_by_raw = Shared(1024)  # raw items tuple -> its projection (a hit skips interning)


def project_labels(labels: Mapping[str, Any] | None) -> tuple:
    """Flat (k1, v1, k2, v2, ...) tuple of at most MAX_LABELS entries, shared between equals."""
    if not labels:
        return ()
    try:
        raw = tuple(labels.items())
        known = _labels_by_raw._table.get(raw)
    except TypeError:  # an unhashable value in a malformed object: no shortcut
        raw = known = None
    if known is not None:
        return known
    projected = _project_labels(labels)
    if raw is not None:
        _labels_by_raw._table[raw] = projected
        if len(_labels_by_raw._table) > _labels_by_raw._limit:
            _labels_by_raw.clear()
    return projected


def _project_labels(labels: Mapping[str, Any]) -> tuple:
    flat: list[str] = []
    for index, (key, value) in enumerate(labels.items()):
        if index == MAX_LABELS:
            flat += (TRUNCATED_LABELS_KEY, f"{len(labels) - MAX_LABELS} more")
            break
        flat += (istr(key), istr(value))
    return share_labels(tuple(flat))


_LABEL_MAPS: dict[tuple, dict[str, str]] = {}


def labels_dict(flat: tuple) -> dict[str, str]:
    """The labels as a map: one per distinct labels tuple (the tuples are shared between
    replicas), never mutated by its readers (event data is read-only once made)."""
    found = _LABEL_MAPS.get(flat)
    if found is None:
        if len(_LABEL_MAPS) >= 4096:
            _LABEL_MAPS.clear()
        found = _LABEL_MAPS[flat] = dict(zip(flat[::2], flat[1::2]))
    return found


# ---------------------------------------------------------------- time


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 (as the apiserver writes Time and MicroTime) to an aware UTC datetime."""
    if not value:
        return None
    try:
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"  # fromisoformat accepts "Z" only from 3.11
        stamp = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def observed(ctx: DetectContext, compact: Any = None) -> datetime:
    """When `compact` (this version of the object) was observed; else the context's time."""
    seen = getattr(compact, "seen_at", None)
    if seen is not None:
        return datetime.fromtimestamp(seen, UTC)
    stamp = ctx.observed_at
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def when(value: str | None, ctx: DetectContext, compact: Any = None) -> datetime:
    """The object's own time when it has one, else when this version was observed."""
    return parse_time(value) or observed(ctx, compact)


def happened(candidates: Iterable[str | None], *, old: Any, new: Any, ctx: DetectContext) -> datetime:
    """When the change from `old` to `new` happened: the first object time in `candidates`
    that is newer than the moment the connector saw `old`, else when `new` was observed.

    An object time that is not newer than our sighting of the previous version cannot be
    this change's time: managedFields times do not move when a manager rewrites a field it
    already owns, and a lastState or condition may still describe an earlier change. The
    observation time is exact for a live watch event and an upper bound after a relist.
    The sighting is the first one of that version (`seen_at`): no object time can move
    without a new resourceVersion, so a later sighting would bound nothing more.
    """
    seen = getattr(old, "seen_at", None)
    for value in candidates:
        stamp = parse_time(value)
        if stamp is not None and (seen is None or stamp.timestamp() > seen):
            return stamp
    return observed(ctx, new)


# ---------------------------------------------------------------- ids and changes


def external_id(ctx: DetectContext, kind: str, namespace: str | None, name: str, uid: str, change: str, *discriminators: Any) -> str:
    """`k8s:{cluster}:{kind}:{namespace}/{name}:{uid}:{change}[:{discriminator}...]`.

    Built only from the cluster's facts, so one change observed twice gets one id. Over
    MAX_EXTERNAL_ID characters, the tail becomes the first 24 hex of sha256(full id).
    """
    head = f"k8s:{ctx.cluster}:{kind}:{namespace or CLUSTER_SCOPE}/{name}"
    full = ":".join([head, uid, change, *(str(part) for part in discriminators)])
    if len(full) <= MAX_EXTERNAL_ID:
        return full
    tail = f":{change[:64]}:{hashlib.sha256(full.encode()).hexdigest()[:24]}"
    return head[: MAX_EXTERNAL_ID - len(tail)] + tail


def bounded(data: dict[str, Any]) -> dict[str, Any]:
    """`data` when its JSON is under MAX_DATA_CHARS; else without its largest fields, marked."""
    size = len(orjson.dumps(data))  # runs for every change: orjson is ~10x cheaper here (bench #1)
    if size <= MAX_DATA_CHARS:
        return data
    sizes = sorted(((len(orjson.dumps(value)), key) for key, value in data.items()), reverse=True)
    kept = dict(data)
    dropped = []
    for field_size, key in sizes:
        if size <= MAX_DATA_CHARS - 200:
            break
        del kept[key]
        dropped.append(key)
        size -= field_size
    kept["truncated"] = True
    kept["droppedFields"] = dropped
    return kept


def make_change(
    *, title: str, timestamp: datetime, external_id: str, namespace: str | None, kind: str, reason: str,
    summary: str, data: dict[str, Any],
) -> Change:
    """A Change whose data opens with a one-line `summary` and holds no null or empty field
    (PainChain's detail view renders `data` generically: "Signal: null" is clutter)."""
    return Change(
        title=clip(title, 480) or kind,
        timestamp=timestamp,
        external_id=external_id,
        namespace=namespace or None,
        kind=kind,
        reason=reason,
        # summary, then reason: the two lines read first (dicts keep their first key position)
        data=bounded(pruned({"summary": one_line(summary), "reason": data.get("reason"), **data})),
    )


_EMPTY_KINDS = (str, list, dict)


def pruned(data: dict[str, Any]) -> dict[str, Any]:
    """`data` without its None, "", {} or [] fields, and without the unset side of each
    `changed` entry (False and 0 are facts: kept). Nested values are built without empty
    fields instead: a label's empty value is a real value, and this runs for every change."""
    kept = {}
    for key, item in data.items():
        if item is None or (not item and type(item) in _EMPTY_KINDS):
            continue
        if key == "changed":
            item = {field: {side: value for side, value in diff.items() if value is not None} if type(diff) is dict
                    else diff for field, diff in item.items()}
        kept[key] = item
    return kept


def one_line(text: str, limit: int = MAX_SUMMARY) -> str:
    """Whitespace runs (newlines of a termination message) as one space, clipped."""
    return clip(" ".join(text.split()), limit) or ""


def listed(
    items: Iterable[Any], data: dict[str, Any], key: str, describe: Callable[[Any], str] | None = None
) -> None:
    """Put at most MAX_ITEMS of `items` under data[key]; mark data[key + 'Truncated'] if cut.

    With `describe`, data[key + 'Summary'] says the same in one string: a generic renderer
    shows a list as "4 items", hiding what an engineer looks for.
    """
    items = list(items)
    data[key] = items[:MAX_ITEMS]
    if describe is not None and items:
        text = "; ".join(describe(item) for item in items[:MAX_ITEMS])
        if len(items) > MAX_ITEMS:
            text += f"; and {len(items) - MAX_ITEMS} more"
        data[key + "Summary"] = clip(text, MAX_SHORT_MESSAGE)
    if len(items) > MAX_ITEMS:
        data[key + "Truncated"] = True
        data[key + "Total"] = len(items)


def and_join(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def old_new(old: Any, new: Any) -> dict[str, Any]:
    return {"old": old, "new": new}


def lifecycle(
    kind: str, old: Any, new: Any, *, deleted: bool, ctx: DetectContext, data, describe=None
) -> tuple[list[Change], Any] | None:
    """Created / Deleted, shared by every kind but pods; None when neither applies.

    `data(compact)` builds the event data, `describe(compact)` the words after "created: ".
    """
    if deleted:
        last = new or old
        if last is None:
            return [], None
        return [gone(kind, last, ctx, data(last), describe(last) if describe else "")], None
    if new is None:
        return [], old
    if old is None:
        return [born(kind, new, ctx, data(new), describe(new) if describe else "")], new
    return None


def born(kind: str, compact, ctx: DetectContext, data: dict[str, Any], detail: str = "") -> Change:
    return make_change(
        title=f"{kind} Created: {compact.name}",
        timestamp=when(compact.created, ctx, compact),
        external_id=external_id(ctx, kind, compact.namespace, compact.name, compact.uid, "Created"),
        namespace=compact.namespace,
        kind=kind,
        reason="Created",
        summary=f"{kind} {compact.name} created" + (f": {detail}" if detail else ""),
        data={"reason": "Created", **data},
    )


def gone(kind: str, compact, ctx: DetectContext, data: dict[str, Any], detail: str = "") -> Change:
    return make_change(
        title=f"{kind} Deleted: {compact.name}",
        timestamp=when(compact.deleted_at, ctx, compact),
        external_id=external_id(ctx, kind, compact.namespace, compact.name, compact.uid, "Deleted"),
        namespace=compact.namespace,
        kind=kind,
        reason="Deleted",
        summary=f"{kind} {compact.name} deleted" + (f" (was: {detail})" if detail else ""),
        data={"reason": "Deleted", **data},
    )
