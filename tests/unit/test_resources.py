"""The resource table is the one source of the watched resources."""
import json

from painchain_connector import detecting
from painchain_connector.metadata import METADATA
from painchain_connector.resources import RESOURCE_NAMES, RESOURCE_TYPES
from painchain_connector.schemas.integration import parse_integration


def test_detection_covers_exactly_the_resource_table_with_the_same_kinds():
    assert detecting.RESOURCES == {name: rt.kind for name, rt in RESOURCE_TYPES.items()}


def test_config_keys_and_the_registration_placeholder_follow_the_resource_table():
    doc = {"id": "i", "config": {"name": "n", "tags": [], "clusters": [
        {"name": "c", "server": "https://k:6443", "token": "t"}], "resources": {"services": False}}}
    integ = parse_integration(doc).integration
    assert integ.resources.enabled() == tuple(n for n in RESOURCE_NAMES if n != "services")
    field = next(f for f in METADATA["configSchema"]["fields"] if f["key"] == "resources")
    assert list(json.loads(field["placeholder"])) == list(RESOURCE_NAMES)
