#!/usr/bin/env bash
# Installs the system tools the test suite needs when they are missing (Debian packages):
# redis-server and redis-cli (tests start private Redis nodes and clusters), and libfaketime
# (gateway processes with skewed clocks). Redis and PostgreSQL themselves already run on the
# machine; the shared servers are never stopped or flushed by the tests.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing: ${need[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi
