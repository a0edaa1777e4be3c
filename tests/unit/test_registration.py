"""The registration document as PainChain's UI uses it: the form it renders, and the logo."""
from __future__ import annotations

import base64
import json
import struct
import zlib

from painchain_connector.metadata import METADATA
from painchain_connector.schemas.integration import Resources, parse_integration

FIELDS = {f["key"]: f for f in METADATA["configSchema"]["fields"]}


def ui_prefill() -> dict:
    """What the UI's create form starts with: JSON.parse(placeholder) for a textarea, '' otherwise."""
    return {key: json.loads(f["placeholder"]) if f["type"] == "textarea" else "" for key, f in FIELDS.items()}


def test_textarea_placeholders_prefill_no_bogus_cluster_and_every_resource():
    prefill = ui_prefill()
    assert prefill["clusters"] == [] and prefill["resources"] == {name: True for name in Resources().enabled()}
    # saved untouched, the form names its problem instead of watching a made-up cluster
    result = parse_integration({"id": "i", "config": {**prefill, "name": "n", "tags": []}})
    assert result.integration is None and any("clusters" in e for e in result.errors)


def test_examples_live_in_the_help_and_parse_as_a_valid_cluster_list():
    help_text = FIELDS["clusters"]["help"]
    example = help_text[help_text.index("[{"): help_text.index("}]") + 2]
    doc = {"id": "i", "config": {"name": "n", "tags": [], "clusters": json.loads(example.replace(
        "<base64 of the PEM CA bundle, optional>", base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()))}}
    assert parse_integration(doc).integration is not None
    assert "Blank watches all namespaces" in FIELDS["namespaces"]["help"] and FIELDS["namespaces"]["type"] == "text"
    assert "blank field, means true" in FIELDS["resources"]["help"]


def test_registration_carries_a_png_logo_that_decodes():
    prefix = "data:image/png;base64,"
    assert METADATA["logo"].startswith(prefix)
    png = base64.b64decode(METADATA["logo"][len(prefix):], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 8 * 1024
    length, kind = struct.unpack(">I4s", png[8:16])
    width, height, depth, color = struct.unpack(">IIBB", png[16:26])
    assert (kind, width, height, depth, color) == (b"IHDR", 64, 64, 8, 6)  # 64x64 RGBA
    idat = png.index(b"IDAT")
    size = struct.unpack(">I", png[idat - 4:idat])[0]
    rows = zlib.decompress(png[idat + 4:idat + 4 + size])
    assert len(rows) == 64 * (1 + 64 * 4)
    corner, centre = rows[1:5], rows[32 * 257 + 1 + 32 * 4:32 * 257 + 1 + 33 * 4]
    assert corner[3] == 0 and centre == b"\xff\xff\xff\xff"  # transparent corner, white hub
