"""The test suite's control plane: the package's (painchain_connector/demo/controlplane.py)
plus the etcd proxy (tests/envtest/proxy.py) that `cut_etcd_connections()` and
fixtures.force_gone need. One implementation; this module keeps the names tests import.

CLI (by hand):  python -m tests.envtest.controlplane start [RUNDIR]   (prints KUBECONFIG)
                python -m tests.envtest.controlplane stop RUNDIR
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from painchain_connector.demo import controlplane as _base
from painchain_connector.demo.controlplane import (  # noqa: F401 - re-exported for tests and bench
    BUILD_SCRIPT,
    LOOPBACK,
    USER_POOL_SIZE,
    ControlPlaneError,
    cache_dir,
    find_apiserver,
    find_etcd,
    free_port,
    log_tail,
    run_build,
)

HERE = Path(__file__).resolve().parent
ETCD_PROXY = HERE / "proxy.py"


class ControlPlane(_base.ControlPlane):
    """etcd → etcd proxy → kube-apiserver (see the package module for the rest)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("etcd_proxy", ETCD_PROXY)
        super().__init__(**kwargs)


def _cli(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "stop"):
        print(__doc__.split("CLI (by hand):")[1], file=sys.stderr)
        return 2
    if argv[0] == "stop":
        if len(argv) < 2:
            print("stop needs the RUNDIR printed by start", file=sys.stderr)
            return 2
        for name in ("kube-apiserver", "etcd-proxy", "etcd"):
            pid_file = Path(argv[1]) / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
                except ProcessLookupError:
                    pass
                pid_file.unlink()
        return 0
    cp = ControlPlane(run_dir=argv[1] if len(argv) > 1 else None, die_with_parent=False)
    cp.start()
    kubeconfig = cp.write_kubeconfig(cp.run_dir / "kubeconfig",
                                     {"admin": cp.admin_token, **cp.user_tokens}, current="admin")
    print(f"KUBECONFIG={kubeconfig}\nRUNDIR={cp.run_dir}\nETCD={cp.etcd_url}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
