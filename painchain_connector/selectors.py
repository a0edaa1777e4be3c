"""Kubernetes label selector syntax, checked before a selector is sent to any apiserver.

The apiserver applies the selector (`labelSelector` on every list and watch); this only
refuses, with a reason naming the requirement's position, a text it would answer with a
400 on every request. Grammar (k8s.io/apimachinery labels.Parse): requirements separated
by commas, each `key`, `!key`, `key=value`, `key==value`, `key!=value`,
`key in (v1, v2)`, `key notin (v1, v2)`, `key > 3` or `key < 3`. Pure; no I/O.
"""
from __future__ import annotations

import re

MAX_SELECTOR = 1024
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"
_KEY = rf"(?:{_PREFIX}/)?{_NAME}"
_VALUE = rf"(?:{_NAME})?"
_REQUIREMENT = re.compile(
    rf"""^(?:
        !\s*{_KEY}
      | {_KEY}
      | {_KEY}\s*(?:==|=|!=)\s*{_VALUE}
      | {_KEY}\s+(?:in|notin)\s*\(\s*{_VALUE}(?:\s*,\s*{_VALUE})*\s*\)
      | {_KEY}\s*[<>]\s*-?[0-9]+
    )$""",
    re.X,
)


def requirements(selector: str) -> list[str]:
    """The comma-separated requirements, commas inside `( )` kept with their set."""
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def selector_problem(selector: str) -> str | None:
    """Why `selector` is not a label selector (never quoting it), or None when it is one."""
    if not selector:
        return None
    if len(selector) > MAX_SELECTOR:
        return f"longer than {MAX_SELECTOR} characters."
    for index, part in enumerate(requirements(selector), start=1):
        if not _REQUIREMENT.match(part):
            return (f"requirement {index} is not a label selector requirement (key, !key, key=value, key!=value, "
                    "key in (a,b), key notin (a,b)).")
    return None
