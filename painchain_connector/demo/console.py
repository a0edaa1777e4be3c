"""How the demo shows what the connector reports: one readable line per event, and a summary.

`ReadableSink` has the poster's shape (`post(item)`), like `delivering.sinks.JsonLinesSink`:
the demo hands events to one or the other (or both) through `story.Recorder`. `line()`
and `summary()` are pure (records and times in, text out), so they are unit-tested.
Writes never yield to gevent mid-line. No greenlets.
"""
from __future__ import annotations

import textwrap
from collections import Counter
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence, TextIO

from ..model import Outgoing

FAILURES = ("CrashLoopBackOff", "Terminated", "Warning", "Failed", "Evicted", "ErrImagePull", "ImagePullBackOff",
            "Stuck")
WIDTH = 110


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _old_new(old: Any, new: Any) -> str:
    """`repo:1.4.0 → 1.5.0` when only an image's tag changed."""
    old, new = str(old), str(new)
    repo, sep, _ = old.rpartition(":")
    if sep and "/" not in old[len(repo):] and new.startswith(repo + ":"):
        new = new[len(repo) + 1:]
    return f"{_short(old, 40)} → {_short(new, 40)}"


def _changed(changed: dict) -> list[str]:
    facts = []
    for key, values in changed.items():
        if isinstance(values, dict) and set(values) == {"old", "new"}:
            facts.append(f"{key} {_old_new(values['old'], values['new'])}")
        elif isinstance(values, dict):  # images: {container: {old, new}}
            facts += [f"{key[:-1] if key.endswith('s') else key} {name}: {_old_new(v.get('old'), v.get('new'))}"
                      for name, v in values.items() if isinstance(v, dict)]
    return facts


def facts(body: dict) -> list[str]:
    """The few facts a person wants beside an event's title, from its `data`."""
    data = body.get("data") or {}
    found = _changed(data.get("changed") or {})
    replicas = data.get("replicas")
    if isinstance(replicas, dict) and "desired" in replicas:
        found.append(f"ready {replicas.get('ready')}/{replicas.get('desired')}")
    if not data.get("changed"):  # a change says enough; a creation or an outcome shows the image
        found += [_short(i.get("image")) for i in data.get("images") or () if isinstance(i, dict)][:2]
    termination = data.get("termination") if isinstance(data.get("termination"), dict) else {}
    if data.get("message") or termination.get("message"):  # the title has the exit code already
        found.append(f"“{_short(data.get('message') or termination.get('message'), 70)}”")
    if data.get("clusterIP") or data.get("ports"):
        ports = ",".join(str(p.get("port")) for p in data.get("ports") or () if isinstance(p, dict))
        found.append(f"{data.get('type', 'ClusterIP')} {data.get('clusterIP') or ''}:{ports}".replace(" :", " port "))
    if data.get("node") and "phase" in data and not found:
        found.append(f"on {data['node']}")
    return found


def line(body: dict, *, local_time: str | None = None) -> str:
    """`12:03:04 ✗ Pod CrashLoopBackOff: web-…  · demo:demo · “back-off 10s …”`

    The time is `local_time` (the demo passes when the event was reported, so lines read
    in order), else the event's own timestamp in local time."""
    title = str(body.get("title") or "")
    stamp = local_time or _local_time(body.get("timestamp"))
    mark = "✗" if any(word in title.split(":")[0] for word in FAILURES) else "•"
    text = f"{stamp} {mark} {title}"
    extra = " · ".join([str(body.get("project") or ""), *facts(body)])
    if len(text) + len(extra) + 4 > WIDTH:
        extra = _short(extra, max(WIDTH - len(text) - 4, 20))
    return f"{text}  · {extra}"


def _local_time(stamp: Any) -> str:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


class ReadableSink:
    """Local mode's poster for a person at a terminal: one line per event (not JSON)."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], datetime] = datetime.now) -> None:
        self._stream = stream
        self._clock = clock

    def post(self, item: Outgoing) -> str:
        self._stream.write(line(dict(item.body), local_time=self._clock().strftime("%H:%M:%S")) + "\n")
        self._stream.flush()
        return "stored"


# -- the summary -------------------------------------------------------------------------

def _kind(record) -> str:
    return record.kind or str(record.title).split(" ")[0]


def _words(record) -> str:
    if record.title.startswith("K8s Event ["):  # K8s Event [Warning]: BackOff - Pod/x
        kind, _, rest = record.title[len("K8s Event ["):].partition("]: ")
        return f"{kind} {rest.split(' - ')[0]}"
    head = record.title.split(":")[0]
    return head.split(" ", 1)[1] if " " in head else head


def _belongs(record, labels: dict) -> bool:
    """Does this event concern the workload with these labels (its pods, their Events, its Services)?"""
    data = record.body.get("data") or {}
    mine = data.get("labels") or {}
    return bool(labels) and all(mine.get(k) == v for k, v in labels.items())


def summary(records: Sequence, *, expected: Sequence[str], elapsed: float, keep_hint: bool = True) -> list[str]:
    """One screen: events by kind, what they share, what went wrong after what, where next."""
    titles = [r.title for r in records]
    out = ["", "─" * 72, f"PainChain events reported: {len(records)} in {elapsed:.0f} s"]
    if titles == list(expected):
        out[-1] += " — the story's events, in order, and nothing else."
    else:
        missing = [t for t in expected if t not in titles]
        extra = [t for t in titles if t not in expected]
        out.append(f"  differs from the story: missing {missing or 'none'}; unexpected {extra or 'none'}")
    by_kind: dict[str, Counter] = {}
    for record in records:
        by_kind.setdefault(_kind(record), Counter())[_words(record)] += 1
    for kind, words in by_kind.items():
        detail = ", ".join(f"{w} {n}" if n > 1 else w for w, n in words.items())
        out.append(f"  {kind:<11} {sum(words.values()):>2}   {detail}")
    out += _correlation(records)
    out += [
        "",
        "Where next:",
        "  your own cluster        tox -e run                            (the current kubeconfig context)",
        "  a file of integrations  tox -e run -- --config integrations.yaml   (README, 'Local mode')",
        "  PainChain               tox -e run -- --backend http://painchain-app:8000/api",
    ]
    if keep_hint:
        out.append("  try it yourself         tox -e demo -- --keep                 (the cluster stays up for kubectl)")
    out.append("─" * 72)
    return [wrapped for text in out for wrapped in (textwrap.wrap(text, WIDTH, subsequent_indent="    ") or [""])]


def _correlation(records: Sequence) -> list[str]:
    workloads = [r for r in records if _kind(r) == "Deployment" and _words(r) == "Created"]
    out = []
    for workload in workloads:
        data = workload.body.get("data") or {}
        name, labels = data.get("name"), data.get("labels") or {}
        related = [r for r in records if r is workload or _belongs(r, labels) or _about_pod_of(r, records, labels)]
        shown = ",".join(f"{k}={v}" for k, v in labels.items())
        out += ["", f"What they share: {len(related)} of {len(records)} events concern Deployment {name} "
                    f"(its labels {shown}, its pods, their Events; no correlation engine runs yet)."]
        out += _cause(related)
    return out


def _about_pod_of(record, records: Sequence, labels: dict) -> bool:
    involved = ((record.body.get("data") or {}).get("involvedObject") or {})
    if involved.get("kind") != "Pod":
        return False
    return any(_kind(r) == "Pod" and (r.body.get("data") or {}).get("pod") == involved.get("name")
               and _belongs(r, labels) for r in records)


def _cause(related: Iterable) -> list[str]:
    related = list(related)
    failures = [r for r in related if any(w in _words(r) for w in FAILURES) or "[Warning]" in r.title]
    if not failures:
        return []
    first = failures[0]
    updates = [r for r in related if _words(r) == "Updated" and r.at <= first.at]
    if not updates:
        return [f"  First failure: {first.title}."]
    cause = updates[-1]
    changes = "; ".join(_changed((cause.body.get("data") or {}).get("changed") or {})) or "its spec changed"
    out = [f"  What changed just before it broke: “{cause.title}” ({changes}), "
           f"{first.at - cause.at:.0f} s before the first failure, “{first.title}”."]
    fixes = [r for r in related if _words(r) == "Updated" and r.at > first.at]
    if fixes:
        last = failures[-1]
        out.append(f"  {len(failures)} failure events until “{fixes[0].title}” "
                   f"({'; '.join(_changed((fixes[0].body.get('data') or {}).get('changed') or {}))}); "
                   f"none after it." if last.at <= fixes[0].at else "  Failures went on after the next update.")
    return out
