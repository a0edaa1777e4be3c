"""The connector-type registration document (POST /integrations/types/register).

`schemas/metadata.json` at the top of the repository is generated from this by
`python -m painchain_connector.schemas.publish`; a test keeps the two equal.
"""
from __future__ import annotations

import json

from .resources import RESOURCE_NAMES

VERSION = "0.1.0"  # = setup.py's version
USER_AGENT = f"painchain-kubernetes-connector/{VERSION}"  # on every request, to clusters and the backend

CLUSTERS_HELP = (
    'JSON list of clusters. Token mode: [{"name": "prod", "server": "https://host:6443", '
    '"token": "<service account token>", "certificate": "<base64 PEM CA, optional>", '
    '"skipTLSVerify": false}]. Kubeconfig mode (development): [{"name": "dev", "context": "minikube"}].'
)

METADATA: dict = {
    "id": "kubernetes",
    "displayName": "Kubernetes",
    "color": "#326ce5",
    "description": (
        "Watches Kubernetes clusters in real time and records significant changes: pod failures, "
        "crash loops, image pull errors, restarts, scaling, rollouts, creations and deletions, "
        "and Warning events."
    ),
    "configSchema": {
        "fields": [
            {"key": "name", "label": "Name", "type": "text", "placeholder": "Production Cluster",
             "required": True, "help": "A name for this integration."},
            {"key": "tags", "label": "Tags", "type": "text", "placeholder": "production, eu-west",
             "required": True, "help": "Tags added to every event of this integration."},
            {"key": "clusters", "label": "Clusters", "type": "textarea", "placeholder": '[{"name": "prod", '
             '"server": "https://host:6443", "token": "..."}]', "required": True, "help": CLUSTERS_HELP},
            {"key": "namespaces", "label": "Namespaces", "type": "text", "placeholder": "default, prod",
             "required": False, "help": "Namespaces to watch; empty watches all namespaces."},
            {"key": "resources", "label": "Resources", "type": "textarea",
             "placeholder": json.dumps({name: True for name in RESOURCE_NAMES}), "required": False,
             "help": "Which resources to watch; an absent key means true."},
        ]
    },
}
