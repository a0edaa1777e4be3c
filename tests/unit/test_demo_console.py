"""The demo's display: readable event lines, the summary, and DEMO_PACE validation (pure functions)."""
import pytest

from painchain_connector.demo.console import line, summary
from painchain_connector.demo.entry import demo_options
from painchain_connector.demo.story import Record, expected_titles, steps
from painchain_connector.settings import SettingsError


def _record(title, data, *, kind, at):
    return Record(kind, title, {"title": title, "project": "demo:demo", "data": data}, at)


UPDATED = _record("Deployment Updated: web", {
    "name": "web", "labels": {"app": "web"},
    "changed": {"images": {"main": {"old": "ghcr.io/example/web:1.4.0", "new": "ghcr.io/example/web:1.5.0"}}}},
    kind="Deployment", at=100.0)
CREATED = _record("Deployment Created: web", {"name": "web", "labels": {"app": "web"},
                                              "replicas": {"desired": 2, "ready": 0}}, kind="Deployment", at=90.0)
LOOP = _record("Pod CrashLoopBackOff: web-1", {"pod": "web-1", "labels": {"app": "web", "pod-template-hash": "x"},
                                               "message": "back-off 10s restarting failed container"},
               kind="Pod", at=104.0)
WARNING = _record("K8s Event [Warning]: BackOff - Pod/web-1", {"involvedObject": {"kind": "Pod", "name": "web-1"},
                                                                "message": "Back-off"}, kind="Event", at=105.0)
OTHER = _record("Service Created: db", {"name": "db", "labels": {"app": "db"}}, kind="Service", at=106.0)


def test_event_line_shows_time_title_project_and_an_image_change_by_its_tag():
    text = line(UPDATED.body, local_time="12:00:01")
    assert text == ("12:00:01 • Deployment Updated: web  · demo:demo · image main: ghcr.io/example/web:1.4.0 → 1.5.0")


def test_failure_lines_are_marked_and_carry_the_message():
    text = line(LOOP.body, local_time="12:00:05")
    assert text.startswith("12:00:05 ✗ Pod CrashLoopBackOff: web-1") and "“back-off 10s" in text


def test_summary_counts_by_kind_names_what_the_events_share_and_the_change_before_the_failure():
    records = [CREATED, UPDATED, LOOP, WARNING, OTHER]
    text = "\n".join(summary(records, expected=[r.title for r in records], elapsed=16))
    assert "5 in 16 s — the story's events, in order, and nothing else" in text
    assert "Deployment   2   Created, Updated" in text and "Event        1   Warning BackOff" in text
    assert "4 of 5 events concern Deployment web" in text  # the db Service does not
    unwrapped = " ".join(text.split())
    assert "“Deployment Updated: web” (image main: ghcr.io/example/web:1.4.0 → 1.5.0), 4 s before" in unwrapped
    assert "tox -e run -- --config integrations.yaml" in text and "--backend" in text


def test_summary_says_what_differs_from_the_story():
    text = "\n".join(summary([CREATED, OTHER], expected=["Deployment Created: web", "Deployment Updated: web"],
                             elapsed=3))
    assert "missing ['Deployment Updated: web']; unexpected ['Service Created: db']" in text


def test_story_expects_each_step_of_a_deployments_life_once_in_order():
    titles = expected_titles(steps(kube=None))
    assert titles[0] == "Deployment Created: web" and titles[-1] == "Service Deleted: web-canary"
    assert [t.split(":")[0] for t in titles if t.startswith("Deployment")] == [
        "Deployment Created", "Deployment Rollout Complete", "Deployment Scaled", "Deployment Updated",
        "Deployment Updated", "Deployment Rollout Complete"]


@pytest.mark.parametrize("raw, pace", [("", 3.0), ("0.5", 0.5), ("0", 0.0)])
def test_demo_pace_comes_from_the_environment(raw, pace):
    assert demo_options(keep=False, environ={"DEMO_PACE": raw}).pace == pace


@pytest.mark.parametrize("raw", ["fast", "-1", "61"])
def test_a_bad_demo_pace_is_refused_naming_the_variable(raw):
    with pytest.raises(SettingsError, match="DEMO_PACE"):
        demo_options(keep=False, environ={"DEMO_PACE": raw})
