"""Image size and container start-to-ready time, with and without precompiled bytecode.

    python -m tests.image.measure [--runs 5]      (root; builds two images, ~2 min when cached)

Builds the image twice with tests/image/build.sh (PIP_BYTECODE=--compile, the default, and
--no-compile), then starts each `--runs` times, hardened as in the compose snippet
(read-only root, so nothing compiled at run time can be kept), in backend mode against the
fake backend with one integration watching Deployments on the test apiserver. Start-to-ready
is from `podman run` to the first /readyz 200, podman's own container set-up included.
Prints one JSON object per variant; the README's figures come from here.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402

from tests.e2e.helpers import integration_doc, only  # noqa: E402
from tests.envtest.controlplane import ControlPlane  # noqa: E402
from tests.fakebackend import FakeBackend  # noqa: E402
from tests.image import containers  # noqa: E402

VARIANTS = {"bytecode": "--compile", "no-bytecode": "--no-compile"}


def build(image: str, pip_bytecode: str) -> int:
    subprocess.run(["bash", "tests/image/build.sh", image, "--build-arg", f"PIP_BYTECODE={pip_bytecode}"],
                   check=True)
    return int(containers.podman("image", "inspect", image, "--format", "{{.Size}}").stdout)


def start_to_ready(image: str, backend: FakeBackend) -> float:
    container = containers.run(image=image, env={"BACKEND_API_URL": backend.url, "ALLOWED_SERVER_NETWORKS": "127.0.0.0/8"},
                               health_port=containers.free_port())
    try:
        return container.wait_ready(timeout=120)
    finally:
        container.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    sizes = {name: build(f"painchain/kubernetes-connector:measure-{name}", flag) for name, flag in VARIANTS.items()}
    with ControlPlane() as cp, FakeBackend() as backend:
        doc = integration_doc(id="measure", server=cp.server, token=cp.admin_token, ca_b64=cp.ca_b64,
                              namespaces=["default"], resources=only("deployments"))
        backend.add_integration("measure", config=doc["config"])
        times = {name: [] for name in VARIANTS}
        for _ in range(runs):  # interleaved, so machine load drifts affect both alike
            for name in VARIANTS:
                times[name].append(start_to_ready(f"painchain/kubernetes-connector:measure-{name}", backend))
    for name in VARIANTS:
        print(json.dumps({"variant": name, "size_mb": round(sizes[name] / 1e6),
                          "ready_s_median": round(statistics.median(times[name]), 2),
                          "ready_s_runs": [round(t, 2) for t in times[name]]}))


if __name__ == "__main__":
    main()
