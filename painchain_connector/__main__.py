"""Standalone entry point (`painchain-connector`, `python -m painchain_connector`).

Order matters: gevent's monkey-patching happens first, before anything imports ssl,
urllib3, requests or kubernetes; then log sinks; then signal handlers; then the run.
Nothing happens at import time: `main()` does it all.
"""
import sys


def main(argv=None) -> int:
    from gevent import monkey

    monkey.patch_all()
    from .cli import run  # noqa: E402 - must follow patch_all

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
