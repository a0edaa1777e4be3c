"""The connector-type registration document (POST /integrations/types/register).

`schemas/metadata.json` at the top of the repository is generated from this by
`python -m painchain_connector.schemas.publish`; a test keeps the two equal.
"""
from __future__ import annotations

import json

from . import logo
from .resources import RESOURCE_NAMES

VERSION = "0.1.0"  # = setup.py's version
USER_AGENT = f"painchain-kubernetes-connector/{VERSION}"  # on every request, to clusters and the backend

CLUSTERS_HELP = (
    'A JSON list, one object per cluster, for example [{"name": "prod", "server": "https://host:6443", '
    '"token": "<service account token>", "certificate": "<base64 of the PEM CA bundle, optional>"}]. '
    '"skipTLSVerify": true skips certificate checks (never in production). Development only: '
    '[{"name": "dev", "context": "minikube"}] uses a context of the connector\'s kubeconfig. '
    'Each cluster is checked on its own: an invalid one is reported and the others are watched.'
)
# The PainChain UI pre-fills every textarea with JSON.parse(placeholder): a placeholder is a
# default value, not an example. These two parse to harmless values (no cluster: the form
# cannot be saved as is; every resource watched) and the examples live in the help text.
CLUSTERS_PLACEHOLDER = "[]"
RESOURCES_PLACEHOLDER = json.dumps({name: True for name in RESOURCE_NAMES})

METADATA: dict = {
    "id": "kubernetes",
    "displayName": "Kubernetes",
    "color": "#326ce5",
    "logo": logo.data_uri(),
    "description": (
        "Watches Kubernetes clusters in real time and records significant changes: pod failures, "
        "crash loops, image pull errors, restarts, scaling, rollouts, creations and deletions, "
        "and Warning events."
    ),
    "configSchema": {
        "fields": [
            {"key": "name", "label": "Name", "type": "text", "placeholder": "Production Cluster",
             "required": True, "help": "A name for this integration, shown with its events."},
            {"key": "tags", "label": "Tags", "type": "text", "placeholder": "production",
             "required": True, "help": "Added to every event of this integration, e.g. production, eu-west."},
            {"key": "clusters", "label": "Clusters", "type": "textarea", "placeholder": CLUSTERS_PLACEHOLDER,
             "required": True, "help": CLUSTERS_HELP},
            {"key": "namespaces", "label": "Namespaces", "type": "text", "placeholder": "all namespaces",
             "required": False, "help": "Namespaces to watch, separated by commas or spaces (e.g. default, "
             "payments). Blank watches all namespaces."},
            {"key": "resources", "label": "Resources", "type": "textarea", "placeholder": RESOURCES_PLACEHOLDER,
             "required": False, "help": 'A JSON object: set a resource to false to stop watching it, e.g. '
             '{"events": false}. A missing key, or a blank field, means true.'},
            {"key": "excludeNamespaces", "label": "Exclude namespaces", "type": "text",
             "placeholder": "kube-system, *-test", "required": False,
             "help": "Namespaces to leave out, separated by commas or spaces; shell-style patterns work "
             "(kube-*, *-test). Blank leaves nothing out. Takes effect at the next sync, no restart."},
            {"key": "labelSelector", "label": "Label selector", "type": "text",
             "placeholder": "app.kubernetes.io/part-of=shop", "required": False,
             "help": "Only objects whose labels match, as kubectl -l takes it (e.g. tier=backend,env!=test or "
             "team in (a,b)). Applied by the cluster to every list and watch; Events follow their object. "
             'Blank watches everything. Any object or namespace annotated painchain.io/ignore: "true" is '
             "always left out."},
        ]
    },
}
