#!/usr/bin/env bash
# The build script lives in the package (painchain_connector/demo/build.sh) so that
# `painchain-connector --demo` can run it from an installed wheel; this path stays for CI.
exec bash "$(dirname "$0")/../../painchain_connector/demo/build.sh" "$@"
