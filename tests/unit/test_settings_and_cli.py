"""Settings are validated once from flags and environment; the package imports cleanly."""
import subprocess
import sys
from pathlib import Path

import pytest

from painchain_connector.cli import build_parser, parse_settings
from painchain_connector.settings import DEFAULT_BACKEND_URL, ENV_VARS, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_local_mode_with_documented_values():
    s = load_settings(environ={})
    assert s.local_mode and s.resync_interval == 60 and s.log_level == "INFO"
    assert s.log_format == "text" and s.health_port == 8080 and s.state_dir is None


def test_backend_api_url_env_selects_backend_mode():
    s = load_settings(environ={"BACKEND_API_URL": "http://painchain-app:8000/api/", "RESYNC_INTERVAL": "5"})
    assert not s.local_mode and s.backend_url == "http://painchain-app:8000/api" and s.resync_interval == 5


def test_bare_backend_flag_uses_the_default_url_and_flags_win_over_env():
    s = parse_settings(["--backend", "--log-level", "debug"], environ={"LOG_LEVEL": "ERROR"})
    assert s.backend_url == DEFAULT_BACKEND_URL and s.log_level == "DEBUG"


def test_local_flag_overrides_backend_env():
    assert parse_settings(["--local"], environ={"BACKEND_API_URL": "http://x:1/api"}).local_mode


@pytest.mark.parametrize(
    "env, variable",
    [({"LOG_FORMAT": "xml"}, "LOG_FORMAT"), ({"HEALTH_PORT": "70000"}, "HEALTH_PORT"),
     ({"RESYNC_INTERVAL": "soon"}, "RESYNC_INTERVAL"), ({"BACKEND_API_URL": "not a url"}, "BACKEND_API_URL")],
)
def test_bad_value_fails_once_naming_the_variable(env, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ=env)


def test_help_documents_every_environment_variable():
    text = build_parser().format_help()
    for var in ENV_VARS:
        assert var in text
    assert "--backend" in text and "--config" in text and "--sink" in text


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_has_no_side_effects():
    code = (
        "import sys, signal, gevent.monkey, painchain_connector as p;"
        "mods = any(m in sys.modules for m in ('ssl', 'urllib3', 'requests', 'kubernetes'));"
        "from loguru import logger;"
        "print(gevent.monkey.is_module_patched('socket'),"
        " signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,"
        " len(logger._core.handlers),"
        " mods)"
    )
    assert _python(code) == "False True 1 False"  # 1 = loguru default handler, untouched


def test_connector_is_importable_for_embedding_without_patching():
    code = ("import gevent.monkey; from painchain_connector import Connector;"
            " print(gevent.monkey.is_module_patched('socket'), Connector.__name__)")
    assert _python(code) == "False Connector"


def test_cli_without_cluster_or_backend_exits_nonzero_saying_what_to_do(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "none")}
    out = subprocess.run(
        [sys.executable, "-m", "painchain_connector", "--health-port", "0"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "KUBECONFIG" in out.stderr and "--config" in out.stderr and "--backend" in out.stderr
    assert "--demo" in out.stderr


def test_published_json_schemas_match_the_generator():
    from painchain_connector.schemas.publish import DEFAULT_DIR, generate

    for name, text in generate().items():
        assert (DEFAULT_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale: run tox -e schemas"


def test_event_schema_validates_a_serialized_event():
    import json
    from datetime import datetime, timezone

    import jsonschema

    from painchain_connector.model import Change, Route
    from painchain_connector.schemas.event import to_outgoing

    change = Change(title="Pod Created: a", timestamp=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
                    external_id="k8s:c:Pod:ns/a:uid:created", namespace=None, kind="Pod", reason="Created")
    out = to_outgoing(change, Route("int-1", "t1", "prod", ("x",)))
    schema = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
    jsonschema.validate(out.body, schema)
    assert out.body["project"] == "prod:_cluster" and out.body["timestamp"] == "2026-01-02T03:04:05.678Z"
    assert out.tenant_id == "t1" and out.body["connector"] == "kubernetes"


def test_per_integration_metrics_exist_only_when_turned_on():
    from painchain_connector.metrics import Metrics
    from prometheus_client import generate_latest

    assert b"painchain_integration_events" not in generate_latest(Metrics().registry)
    on = Metrics(per_integration=True)
    on.integration_events.labels("int-1").inc()
    assert b'painchain_integration_events_emitted_total{integration="int-1"} 1.0' in generate_latest(on.registry)
