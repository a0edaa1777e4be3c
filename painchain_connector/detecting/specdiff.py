"""The spec a person edits in a Deployment, StatefulSet or DaemonSet, flattened to
person-readable paths (`containers[main].image`, `containers[main].env.LOG_LEVEL`), and
the diff of two such flattenings: what an Updated event says changed (issue 19).

Kept for workload kinds only (they are few next to pods): `flatten` gives a flat tuple
(path1, value1, path2, value2, ...), at most MAX_PATHS entries, every value clipped, and
`pack` stores it, with the images and labels, as raw deflate of their JSON with a preset
dictionary of Kubernetes field names (a typical Deployment's 35 paths, images and labels
take ~650 bytes instead of ~2,300 as tuples); `unpack` runs only to report a change.
Never over status, managedFields, resourceVersion, generation or
`kubectl.kubernetes.io/last-applied-configuration`: only spec.template and the few spec
fields that change how a workload rolls out.

Never a secret: a value that may hold one (a literal env value, command, args, an exec
probe's command) is kept as an 8-byte digest salted with the object's uid and the path,
never as text, and a diff reports it as `changed`, `added` or `removed` without old or
new. References (`secretKeyRef`, `configMapKeyRef`, secret and configMap volumes,
envFrom) are shown by name and key: no Secret or ConfigMap content is ever read.
Pure: no I/O, no clock.
"""
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from .common import TRUNCATED, clip, istr

MAX_PATHS = 200  # entries kept per workload; beyond, one marker entry says how many more
MAX_VALUE = 200  # characters of one shown value
MAX_CHANGES = 20  # entries of data["changes"] (common.MAX_ITEMS)
SKIPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
OTHER_FIELDS = "spec (other fields)"
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
# Pod spec scalars worth a line of their own; everything else is compared by digest below.
_POD_SCALARS = ("serviceAccountName", "priorityClassName", "runtimeClassName", "schedulerName", "hostNetwork",
                "dnsPolicy", "terminationGracePeriodSeconds", "restartPolicy")
# Structures without secrets but without a short rendering: shown as "changed" only.
_POD_DIGESTS = ("affinity", "securityContext", "topologySpreadConstraints", "dnsConfig", "hostAliases")


class _Flat:
    """Builds the flat tuple; `hidden` values become salted digests (bytes)."""

    __slots__ = ("items", "salt", "cut")

    def __init__(self, salt: str) -> None:
        self.items: list = []
        self.salt = salt.encode()[:64]
        self.cut = 0

    def shown(self, path: str, value: Any) -> None:
        if value is None or value == "" or value == [] or value == {}:
            return
        if isinstance(value, (dict, list)):
            value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        if not isinstance(value, (bool, int, float)):
            value = clip(value, MAX_VALUE)
            value = istr(value) if len(value) <= 64 else value
        self._add(path, value)

    def hidden(self, path: str, value: Any) -> None:
        if value is None or value == [] or value == {}:
            return
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        self._add(path, hashlib.blake2b(path.encode() + b"\0" + raw, digest_size=8, key=self.salt).digest())

    def _add(self, path: str, value: Any) -> None:
        if len(self.items) >= 2 * MAX_PATHS:
            self.cut += 1
            return
        self.items += (istr(path), value)

    def done(self) -> tuple:
        if self.cut:
            self.items += (TRUNCATED, f"{self.cut} more paths not compared")
        return tuple(self.items)


def flatten(spec: Mapping[str, Any], *, uid: str, strategy_key: str, strategy: str) -> tuple:
    """The person-editable spec of a workload as a flat (path, value, ...) tuple."""
    flat = _Flat(uid)
    template = spec.get("template") or {}
    meta = template.get("metadata") or {}
    pod = template.get("spec") or {}
    for kind in ("containers", "initContainers"):
        for container in pod.get(kind) or ():
            if isinstance(container, Mapping):
                _container(flat, f"{kind}[{container.get('name') or '?'}]", container)
    for name in _POD_SCALARS:
        flat.shown(name, pod.get(name))
    for key, value in sorted((pod.get("nodeSelector") or {}).items()):
        flat.shown(f"nodeSelector.{key}", value)
    flat.shown("tolerations", "; ".join(_toleration(t) for t in pod.get("tolerations") or () if isinstance(t, Mapping)))
    flat.shown("imagePullSecrets", ", ".join(str(s.get("name")) for s in pod.get("imagePullSecrets") or ()
                                             if isinstance(s, Mapping)))
    for volume in pod.get("volumes") or ():
        if isinstance(volume, Mapping):
            flat.shown(f"volumes[{volume.get('name') or '?'}]", _volume(volume))
    for name in _POD_DIGESTS:
        flat.hidden(name, pod.get(name))
    for key, value in sorted((meta.get("labels") or {}).items()):
        flat.shown(f"template.labels.{key}", value)
    for key, value in sorted((meta.get("annotations") or {}).items()):
        if key not in SKIPPED_ANNOTATIONS:
            flat.shown(f"template.annotations.{key}", value)
    flat.shown(strategy_key, strategy)
    for name in ("paused", "minReadySeconds", "podManagementPolicy", "serviceName"):
        flat.shown(name, spec.get(name))
    flat.shown("volumeClaimTemplates", ", ".join(
        _claim(c) for c in spec.get("volumeClaimTemplates") or () if isinstance(c, Mapping)))
    return flat.done()


def _container(flat: _Flat, at: str, c: Mapping[str, Any]) -> None:
    flat.shown(f"{at}.image", c.get("image"))
    resources = c.get("resources") or {}
    for side in ("requests", "limits"):
        for name, quantity in sorted((resources.get(side) or {}).items()):
            flat.shown(f"{at}.resources.{side}.{name}", quantity)
    for var in c.get("env") or ():
        if not isinstance(var, Mapping):
            continue
        path = f"{at}.env.{var.get('name') or '?'}"
        source = var.get("valueFrom")
        if source:
            flat.shown(path, _env_source(source))
        else:
            flat.hidden(path, var.get("value") or "")  # a literal: where people paste passwords
    flat.shown(f"{at}.envFrom", "; ".join(_env_from(e) for e in c.get("envFrom") or () if isinstance(e, Mapping)))
    flat.hidden(f"{at}.command", c.get("command"))
    flat.hidden(f"{at}.args", c.get("args"))
    flat.shown(f"{at}.ports", "; ".join(_port(p) for p in c.get("ports") or () if isinstance(p, Mapping)))
    for probe in _PROBES:
        found = c.get(probe)
        if isinstance(found, Mapping):
            flat.shown(f"{at}.{probe}", _probe(found))
            flat.hidden(f"{at}.{probe}.exec", (found.get("exec") or {}).get("command"))
    flat.shown(f"{at}.volumeMounts", "; ".join(_mount(m) for m in c.get("volumeMounts") or () if isinstance(m, Mapping)))
    flat.shown(f"{at}.imagePullPolicy", c.get("imagePullPolicy"))
    flat.hidden(f"{at}.securityContext", c.get("securityContext"))
    flat.hidden(f"{at}.lifecycle", c.get("lifecycle"))


def _env_source(source: Mapping[str, Any]) -> str:
    for key, word in (("secretKeyRef", "secret"), ("configMapKeyRef", "configMap")):
        ref = source.get(key)
        if isinstance(ref, Mapping):
            return f"{word} {ref.get('name')}/{ref.get('key')}" + (" (optional)" if ref.get("optional") else "")
    field = source.get("fieldRef")
    if isinstance(field, Mapping):
        return f"field {field.get('fieldPath')}"
    resource = source.get("resourceFieldRef")
    if isinstance(resource, Mapping):
        return f"resource {resource.get('resource')}" + (f" of {resource['containerName']}"
                                                        if resource.get("containerName") else "")
    return "from " + ", ".join(sorted(source))


def _env_from(e: Mapping[str, Any]) -> str:
    prefix = f" (prefix {e['prefix']})" if e.get("prefix") else ""
    for key, word in (("secretRef", "secret"), ("configMapRef", "configMap")):
        ref = e.get(key)
        if isinstance(ref, Mapping):
            return f"{word} {ref.get('name')}{prefix}"
    return "?" + prefix


def _port(p: Mapping[str, Any]) -> str:
    name = f"{p['name']} " if p.get("name") else ""
    return f"{name}{p.get('containerPort')}/{p.get('protocol') or 'TCP'}"


def _probe(p: Mapping[str, Any]) -> str:
    if isinstance(p.get("httpGet"), Mapping):
        get = p["httpGet"]
        handler = f"httpGet {get.get('path') or '/'} port {get.get('port')}"
    elif isinstance(p.get("tcpSocket"), Mapping):
        handler = f"tcpSocket port {p['tcpSocket'].get('port')}"
    elif isinstance(p.get("grpc"), Mapping):
        handler = f"grpc port {p['grpc'].get('port')}"
    elif p.get("exec"):
        handler = "exec"  # the command itself is compared by digest: it may carry a password
    else:
        handler = "?"
    timings = [f"{word}={p[key]}" for key, word in (("initialDelaySeconds", "delay"), ("periodSeconds", "period"),
               ("timeoutSeconds", "timeout"), ("failureThreshold", "failures"), ("successThreshold", "successes"))
               if p.get(key) is not None]
    return " ".join([handler, *timings])


def _mount(m: Mapping[str, Any]) -> str:
    sub = f" (subPath {m['subPath']})" if m.get("subPath") else ""
    return f"{m.get('name')}:{m.get('mountPath')}{' ro' if m.get('readOnly') else ''}{sub}"


def _toleration(t: Mapping[str, Any]) -> str:
    key = t.get("key") or "*"
    what = f"{key}={t['value']}" if t.get("value") else (f"{key} exists" if t.get("operator") == "Exists" else key)
    effect = f":{t['effect']}" if t.get("effect") else ""
    seconds = f" for {t['tolerationSeconds']}s" if t.get("tolerationSeconds") is not None else ""
    return what + effect + seconds


_VOLUME_NAMES = {"configMap": "name", "secret": "secretName", "persistentVolumeClaim": "claimName",
                 "hostPath": "path", "nfs": "path"}


def _volume(v: Mapping[str, Any]) -> str:
    """'secret db-creds', 'configMap app-config', 'emptyDir', 'persistentVolumeClaim data'."""
    for kind, value in v.items():
        if kind == "name":
            continue
        detail = value.get(_VOLUME_NAMES.get(kind, "")) if isinstance(value, Mapping) else None
        if kind == "emptyDir" and isinstance(value, Mapping) and value.get("medium"):
            detail = value["medium"]
        if kind == "projected" and isinstance(value, Mapping):
            detail = ", ".join(_volume({"name": "", **source}) for source in value.get("sources") or ()
                               if isinstance(source, Mapping))
        return f"{kind} {detail}" if detail else kind
    return "?"


def _claim(c: Mapping[str, Any]) -> str:
    storage = (((c.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    return f"{(c.get('metadata') or {}).get('name')}" + (f" {storage}" if storage else "")


# ---------------------------------------------------------------- storage

# Generic vocabulary only (field names, defaults), never tuned to one data set. Changing
# it makes stored specs unreadable: bump PACK_VERSION, and `unpack` answers None for old
# ones (the next update then says "spec changed" without a diff, once).
PACK_VERSION = b"\x01"
_ZDICT = orjson.dumps([
    "RollingUpdate(maxSurge=25%, maxUnavailable=25%)", "OnDelete", "Recreate", "updateStrategy", "strategy",
    "template.annotations.", "template.labels.app.kubernetes.io/name", "template.labels.app",
    "securityContext", "affinity", "tolerations", "nodeSelector.", "volumes[", "configMap ", "secret ", "emptyDir",
    "persistentVolumeClaim ", "restartPolicy", "Always", "terminationGracePeriodSeconds", "dnsPolicy", "ClusterFirst",
    "schedulerName", "default-scheduler", "serviceAccountName", "IfNotPresent", "Always", ".imagePullPolicy",
    ".volumeMounts", " ro", ".lifecycle", ".securityContext", "httpGet / port  period=10 timeout=1 failures=3 successes=1",
    "tcpSocket port ", "exec", ".startupProbe", ".readinessProbe", ".livenessProbe", ".livenessProbe.exec",
    "/TCP", "http ", ".ports", ".args", ".command", ".envFrom", "secret /", "configMap /",
    ".env.", ".resources.limits.memory", ".resources.limits.cpu", ".resources.requests.memory",
    ".resources.requests.cpu", "Mi", "Gi", "m", "containers[main].image", "initContainers[", "containers[",
])


def pack(*, images: tuple, labels: tuple, spec: tuple) -> bytes:
    """What a workload's events report but its detection never reads, as stored: its images,
    its labels and `flatten`'s tuple (a digest becomes [hex]: no shown value is a list)."""
    text = orjson.dumps({"i": images, "l": labels, "s": [[v.hex()] if type(v) is bytes else v for v in spec]})
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zdict=_ZDICT)
    return PACK_VERSION + packer.compress(text) + packer.flush()


def unpack(packed: bytes | None) -> tuple[tuple, tuple, tuple | None]:
    """(images, labels, spec) as `pack` got them; ((), (), None) when there is nothing
    readable (a state kept by an older version)."""
    if not packed or packed[:1] != PACK_VERSION:
        return (), (), None
    try:
        unpacker = zlib.decompressobj(-15, zdict=_ZDICT)
        doc = orjson.loads(unpacker.decompress(packed[1:], 1 << 20))
    except (zlib.error, ValueError):
        return (), (), None
    spec = tuple(bytes.fromhex(v[0]) if type(v) is list else v for v in doc["s"])
    return tuple(tuple(pair) for pair in doc["i"]), tuple(doc["l"]), spec


# ---------------------------------------------------------------- the diff


def diff(old: tuple, new: tuple) -> list[dict[str, Any]]:
    """`[{path, change, old?, new?}]`: what differs between two flattenings, in the new
    one's order, removed paths last. A hidden value (a digest) shows no old or new. A side
    cut at MAX_PATHS says nothing about the paths it lost: they are neither added nor removed."""
    before = dict(zip(old[::2], old[1::2]))
    after = dict(zip(new[::2], new[1::2]))
    old_cut, new_cut = TRUNCATED in before, TRUNCATED in after
    found = []
    for path, value in after.items():
        if path not in before:
            if not old_cut or path == TRUNCATED:
                found.append(_entry(path, "added", None, value))
        elif before[path] != value:
            found.append(_entry(path, "changed", before[path], value))
    if not new_cut:
        found.extend(_entry(path, "removed", value, None) for path, value in before.items() if path not in after)
    return found


def _entry(path: str, change: str, old: Any, new: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "change": change}
    if type(old) is bytes or type(new) is bytes:
        return entry  # a digest: that it changed is all anyone may learn
    if old is not None:
        entry["old"] = old
    if new is not None:
        entry["new"] = new
    return entry


def words(entry: Mapping[str, Any], limit: int = MAX_VALUE) -> str:
    """'containers[main].image a:1 → a:2', 'containers[main].env.LOG_LEVEL changed'."""
    path, change = entry["path"], entry["change"]
    old, new = entry.get("old"), entry.get("new")
    if change == "changed" and "old" in entry and "new" in entry:
        return f"{path} {clip(str(old), limit)} → {clip(str(new), limit)}"
    if change == "added" and "new" in entry:
        return f"{path} added ({clip(str(new), limit)})"
    if change == "removed" and "old" in entry:
        return f"{path} removed (was {clip(str(old), limit)})"
    return f"{path} {change}"
