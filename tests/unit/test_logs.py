"""Log output: one line per record with its context, and no secret ever written."""
import base64
import io
import json
import logging
import re
import secrets
import subprocess
import sys
import textwrap

import gevent
import pytest
import urllib3
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from loguru import logger

from painchain_connector import logs
from painchain_connector.logs import (
    REDACTED,
    SecretRegistry,
    configure_logging,
    redact,
    register_secrets,
    reset_logging,
)

CONTEXT = {"integration": "int-1", "cluster": "prod", "resource": "pods", "namespace": "*"}


def fake_pem(label: str = "CERTIFICATE", lines: int = 4) -> str:
    der = b"\x30\x82\x03\x1f" + secrets.token_bytes(48 * lines - 4)  # a DER SEQUENCE, as in real PEMs
    body = base64.b64encode(der).decode()
    wrapped = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN {label}-----\n{wrapped}\n-----END {label}-----\n"


@pytest.fixture
def output():
    """Configure logging into a StringIO; `output(fmt)` returns it. Restores loguru after."""
    stream = io.StringIO()

    def configure(fmt: str, **kwargs) -> io.StringIO:
        configure_logging(level="DEBUG", fmt=fmt, sink=stream, **kwargs)
        return stream

    yield configure
    reset_logging()
    logger.add(sys.stderr)  # loguru's default handler, as the rest of the session expects


def test_json_format_writes_one_object_per_line_with_bound_context(output):
    stream = output("json")
    logger.bind(**CONTEXT).info("watch started\nwith a newline in the message")
    logger.warning("no context here")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["message"] == "watch started\nwith a newline in the message"
    assert first["level"] == "INFO"
    assert {k: first[k] for k in CONTEXT} == CONTEXT
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["level"] == "WARNING" and not set(CONTEXT) & set(second)


def test_json_format_carries_the_traceback_in_the_same_line(output):
    stream = output("json")
    try:
        raise RuntimeError("list failed")
    except RuntimeError:
        logger.bind(cluster="prod").exception("watch crashed")

    (line,) = stream.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["cluster"] == "prod" and doc["level"] == "ERROR"
    assert "Traceback (most recent call last)" in doc["exception"]
    assert doc["exception"].endswith("RuntimeError: list failed")


def test_text_format_shows_message_level_and_bound_context(output):
    stream = output("text")
    logger.bind(**CONTEXT).info("relisting after 410")

    (line,) = stream.getvalue().splitlines()
    assert "INFO" in line and "relisting after 410" in line
    assert "integration=int-1 cluster=prod resource=pods namespace=*" in line


def test_level_filters_records_below_it():
    stream = io.StringIO()
    configure_logging(level="warning", fmt="text", sink=stream, capture_foreign=False)
    try:
        logger.info("quiet")
        logger.warning("loud")
    finally:
        reset_logging()
        logger.add(sys.stderr)
    assert "loud" in stream.getvalue() and "quiet" not in stream.getvalue()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_registered_token_and_certificate_never_appear_even_in_tracebacks(output, fmt):
    # Opaque strings no pattern would catch: only the registry can hide them.
    token = "opaque-static-" + secrets.token_hex(16)
    pem = fake_pem()
    certificate = base64.b64encode(pem.encode()).decode()
    register_secrets([token, certificate])
    stream = output(fmt)

    headers = urllib3.HTTPHeaderDict({"Authorization": f"Bearer {token}", "X-Token-Echo": token})
    try:
        try:
            raise urllib3.exceptions.ProtocolError(f"connection aborted; sent {headers!r}")
        except urllib3.exceptions.ProtocolError as exc:
            raise RuntimeError(f"list pods failed with token {token} and CA {certificate}") from exc
    except RuntimeError:
        logger.bind(cluster="prod").exception("watch crashed using {}", token)
    logger.info("ca bundle was {}", pem)  # a decoded PEM, body lines and all
    logger.bind(integration=token).info("even a bound value")

    text = stream.getvalue()
    assert "connection aborted" in text and "list pods failed" in text  # the errors are still there
    assert token not in text
    assert certificate not in text
    for body_line in pem.splitlines()[1:-1]:
        assert body_line not in text
    assert text.count(REDACTED) >= 6


def test_traceback_never_shows_local_variable_values(output):
    stream = output("text")
    hidden = "unregistered-" + secrets.token_hex(12)

    def fail(credential):
        raise PermissionError("credential rejected")  # diagnose mode would print `credential` here

    try:
        fail(hidden)
    except PermissionError:
        logger.exception("failed")
    assert "credential rejected" in stream.getvalue() and hidden not in stream.getvalue()


JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFCQyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDp4In0.c2lnbmF0dXJlLWJ5dGVz"
UNKNOWN_PEM = fake_pem("RSA PRIVATE KEY")
UNKNOWN_SECRET = "zq81-unknown-9vX"


@pytest.mark.parametrize(
    "text, secret",
    [
        (f"headers={{'Authorization': 'Bearer {UNKNOWN_SECRET}', 'Accept': 'application/json'}}", UNKNOWN_SECRET),
        (f"Authorization: Bearer {UNKNOWN_SECRET}\r\nHost: x", UNKNOWN_SECRET),
        (f'{{"authorization": "Basic {UNKNOWN_SECRET}"}}', UNKNOWN_SECRET),
        (f"api_key={{'authorization': 'Bearer {UNKNOWN_SECRET}'}}", UNKNOWN_SECRET),
        (f"could not use bearer {UNKNOWN_SECRET}", UNKNOWN_SECRET),
        (f"GET https://10.0.0.1:6443/api/v1/pods?watch=true&token={UNKNOWN_SECRET}&limit=5", UNKNOWN_SECRET),
        (f"{{'name': 'prod', 'token': '{UNKNOWN_SECRET}', 'server': 'https://x'}}", UNKNOWN_SECRET),
        (f'{{"client-key-data": "{UNKNOWN_SECRET}"}}', UNKNOWN_SECRET),
        (f"kubeconfig token: {JWT}", JWT),
        (f"failed: {UNKNOWN_PEM} while loading", UNKNOWN_PEM.splitlines()[1]),
        (f"repr {UNKNOWN_PEM!r}", UNKNOWN_PEM.splitlines()[2]),
        (f"truncated {UNKNOWN_PEM[:120]}", UNKNOWN_PEM.splitlines()[1][:30]),
        (f"certificate-authority-data: {base64.b64encode(UNKNOWN_PEM.encode()).decode()}", "LS0tLS1CRUdJTi"),
        (f"body line {UNKNOWN_PEM.splitlines()[1]} alone", UNKNOWN_PEM.splitlines()[1]),
    ],
)
def test_unknown_secrets_are_redacted_by_pattern(text, secret):
    redacted = redact(text)
    assert secret not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "cluster 'prod': token: required in token mode (server+token).",
        "sha256 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "pods/default/web-7d4b9c-x2x (resourceVersion 123456) deleted",
        "bearer token rejected by the apiserver (401)",
        "/usr/lib/python3.11/site-packages/kubernetes/client/api_client.py line 40",
    ],
)
def test_ordinary_messages_pass_unchanged(text):
    assert redact(text) == text


def test_importing_the_package_adds_no_sink_and_keeps_its_logger_disabled():
    code = textwrap.dedent(
        """
        import io
        from loguru import logger
        logger.remove()
        import painchain_connector, painchain_connector.logs, painchain_connector.health
        out = io.StringIO()
        # ids count up from 0 (the default handler): 1 means import added no handler.
        assert logger.add(out, format="{message}") == 1, "import added a loguru handler"
        exec("logger.info('from the package')", {"logger": logger, "__name__": "painchain_connector.x"})
        assert out.getvalue() == "", "package logger enabled on import"
        logger.enable("painchain_connector")
        exec("logger.info('from the package')", {"logger": logger, "__name__": "painchain_connector.x"})
        assert out.getvalue() == "from the package\\n"
        """
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_stdlib_logs_and_dead_greenlet_tracebacks_are_redacted_too(output):
    token = "opaque-greenlet-" + secrets.token_hex(16)
    register_secrets([token])
    stream = output("json", capture_foreign=True)

    logging.getLogger("urllib3.connectionpool").warning("Retrying after %s", f"headers {{'X': '{token}'}}")

    def die():
        raise ValueError(f"bad credentials {token}")

    gevent.spawn(die).join()

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["logger"] for r in records][:1] == ["urllib3.connectionpool"]
    assert any(r["message"].startswith("unhandled error in") and "ValueError" in r.get("exception", "") for r in records)
    assert token not in stream.getvalue()


def test_reset_logging_gives_dead_greenlets_back_to_gevent():
    configure_logging(level="INFO", fmt="json", sink=io.StringIO())
    reset_logging()
    logger.add(sys.stderr)
    assert "print_exception" not in gevent.get_hub().__dict__
    assert not any(isinstance(h, logs._InterceptHandler) for h in logging.getLogger().handlers)


@pytest.mark.parametrize("small", [256, 0], ids=["substring-search", "tail-index"])
def test_many_registered_secrets_are_each_redacted(small):
    registry = SecretRegistry(small=small)
    # Service account tokens share a long JWT header prefix; CA bundles share their tail.
    shared = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNpZ25pbmcta2V5In0."
    tokens = [shared + secrets.token_urlsafe(32) for _ in range(300)] + [secrets.token_hex(10) for _ in range(300)]
    tokens += [secrets.token_hex(8) + "LS0tLS0K" for _ in range(50)]
    registry.register(tokens)
    for token in tokens[::7]:
        assert registry.redact(f"x {token} y {token}") == f"x {REDACTED} y {REDACTED}"


@pytest.mark.parametrize("small", [256, 0], ids=["substring-search", "tail-index"])
def test_overlapping_registered_secrets_are_redacted_whole(small):
    registry = SecretRegistry(small=small)
    registry.register(["abcdefgh12345678", "12345678wxyz9999", "efgh1234"])
    assert registry.redact("<abcdefgh12345678wxyz9999>") == f"<{REDACTED}>"


@hsettings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(min_size=14, max_size=30), min_size=1, max_size=30),
    st.text(max_size=10),
    st.sampled_from([256, 0]),
)
def test_no_registered_secret_survives_redaction(words, filler, small):
    registry = SecretRegistry(small=small)
    registry.register(words)
    kept = {w.strip() for w in words
            if len(w.strip()) >= logs.MIN_SECRET_LENGTH and not any(c.isspace() for c in w.strip())}
    text = filler.join(sorted(kept)) + filler
    redacted = registry.redact(text)
    for word in kept:
        assert word not in redacted or word in REDACTED




def test_credentials_in_a_url_are_redacted():
    from painchain_connector.logs import redact

    out = redact("cannot reach https://admin:s3cret-pass@painchain.example/api: refused")
    assert "s3cret-pass" not in out and "admin:" not in out and "painchain.example/api" in out


def test_a_tenant_cannot_blank_ordinary_words_or_other_tenants_ids_out_of_the_log():
    registry = SecretRegistry()
    other_tenant = "cm3x9q2b70000tenantglobex01"
    public = ["int-acme", "tenant-acme", other_tenant, "Production Cluster"]
    registry.set_owner("int-acme", ["integration", "connection test passed", other_tenant,
                                    other_tenant[:18], "short"], public=public)
    line = f"integration int-acme: connection test passed; tenant {other_tenant} fine"
    assert registry.redact(line) == line


def test_a_rotated_or_departed_integrations_secret_leaves_the_registry():
    registry = SecretRegistry()
    old, new = "old-token-" + secrets.token_hex(12), "new-token-" + secrets.token_hex(12)
    registry.set_owner("int-a", [old])
    registry.set_owner("int-b", ["b-token-" + secrets.token_hex(12)])
    assert registry.redact(old) == REDACTED
    registry.set_owner("int-a", [new])
    assert registry.redact(old) == old and registry.redact(new) == REDACTED
    registry.retain(["int-b"])
    assert registry.redact(new) == new and len(registry) == 1
