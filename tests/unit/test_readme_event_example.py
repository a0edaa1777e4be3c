"""The crash-loop event the README shows in full is what the connector posts for that update."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext, Route
from painchain_connector.schemas.event import to_outgoing
from tests.unit.test_detecting_pods import pod, running, terminated_state, waiting

README = Path(__file__).resolve().parents[2] / "README.md"


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _crash_loop_event() -> dict:
    first = terminated_state(1, cid="3f9a0c" * 10 + "d2e1", finished="2026-11-30T14:01:31Z")
    second = terminated_state(1, cid="8b1e44" * 10 + "a0c7", finished="2026-11-30T14:02:05Z")
    back_off = "back-off 20s restarting failed container=app pod=api-7d9f_shop(6f1c2d3e-1111-2222-3333-444455556666)"
    old = pod(running(restarts=1, last=first), rv="48211")
    new = pod(waiting(restarts=2, last=second, message=back_off), rv="48377")
    for obj in (old, new):
        for condition in obj["status"]["conditions"]:
            if condition["type"] in ("Ready", "ContainersReady"):
                condition.update(status="False", reason="ContainersNotReady", lastTransitionTime="2026-11-30T14:01:31Z")
    ctx = DetectContext(cluster="prod", observed_at=datetime(2026, 11, 30, 14, 2, 7, tzinfo=UTC))
    changes, _ = detect("pods", project("pods", old, _at("2026-11-30T14:01:53+00:00")),
                        project("pods", new, _at("2026-11-30T14:02:06.412+00:00")), deleted=False, ctx=ctx)
    assert len(changes) == 1
    return to_outgoing(changes[0], Route("cm3x9k2l0000", None, "prod", ("production",))).body


def test_readme_crash_loop_example_is_the_event_the_connector_posts():
    section = README.read_text(encoding="utf-8").split("### One crash-loop event in full", 1)[1]
    shown = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))
    assert shown == json.loads(json.dumps(_crash_loop_event()))
