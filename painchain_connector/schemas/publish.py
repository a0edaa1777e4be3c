"""Generate the published JSON Schemas (top-level `schemas/`) from the marshmallow schemas.

    python -m painchain_connector.schemas.publish [--check] [DIR]

apispec (marshmallow-code's own generator) converts the schemas; this module only wraps
its OpenAPI 3.1 components (which are JSON Schema 2020-12) into standalone documents.
`--check` exits 1 when the files in DIR differ from what would be generated.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from marshmallow import fields

from ..metadata import METADATA
from .event import PainChainEventSchema
from .integration import ClusterSchema, ConfigSchema, IntegrationSchema, ResourcesSchema

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


class _PublishedConfigSchema(ConfigSchema):
    # At run time clusters are validated one by one (one bad cluster must not reject its
    # siblings); for the published document they are described in full.
    clusters = fields.List(fields.Nested(ClusterSchema), required=True, metadata={"minItems": 1})
    # What the PainChain UI's `text` field stores: the typed string is accepted as well.
    namespaces = fields.Raw(metadata={
        "description": "Namespaces to watch: a list, or a comma- or whitespace-separated string; "
                       "empty, blank or absent = all namespaces.",
        "anyOf": [{"type": "array", "items": {"type": "string", "maxLength": 63}}, {"type": "string"}, {"type": "null"}],
    })
    resources = fields.Nested(ResourcesSchema, allow_none=True)
    exclude_namespaces = fields.Raw(data_key="excludeNamespaces", metadata={
        "description": "Namespaces to leave out, names or shell-style patterns (kube-*): a list, or a comma- or "
                       "whitespace-separated string; empty, blank or absent = none.",
        "anyOf": [{"type": "array", "items": {"type": "string", "maxLength": 63}}, {"type": "string"}, {"type": "null"}],
    })
    label_selector = fields.String(data_key="labelSelector", allow_none=True, metadata={
        "description": "A Kubernetes label selector (kubectl -l syntax) applied by the apiserver to every list and "
                       "watch but the Events one; blank or absent = everything.", "maxLength": 1024})


class _PublishedIntegrationSchema(IntegrationSchema):
    config = fields.Nested(_PublishedConfigSchema, required=True)


def _document(name: str, schema, title: str) -> dict:
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    def resolver(schema_cls):
        cls = schema_cls if isinstance(schema_cls, type) else type(schema_cls)
        return cls.__name__.lstrip("_").replace("Published", "").replace("Schema", "") or cls.__name__

    spec = APISpec(title=title, version="1", openapi_version="3.1.0", plugins=[MarshmallowPlugin(schema_name_resolver=resolver)])
    spec.components.schema(name, schema=schema)
    defs = spec.to_dict()["components"]["schemas"]
    text = json.dumps(defs, sort_keys=True).replace("#/components/schemas/", "#/$defs/")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://painchain.dev/schemas/kubernetes/{name}.json",
        "title": title,
        "$ref": f"#/$defs/{name}",
        "$defs": json.loads(text),
    }


def generate() -> dict[str, str]:
    docs = {
        "integration-config.schema.json": _document(
            "Integration", _PublishedIntegrationSchema, "PainChain Kubernetes integration (as the backend returns it)"
        ),
        "event.schema.json": _document("PainChainEvent", PainChainEventSchema, "PainChain event posted by the Kubernetes connector"),
        "metadata.json": METADATA,
    }
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in docs.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    target = Path(args[0]) if args else DEFAULT_DIR
    stale = []
    for name, text in generate().items():
        path = target / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            target.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python -m painchain_connector.schemas.publish", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
