#!/usr/bin/env bash
# Installs the system tools the test suite needs when they are missing (Debian packages).
# Redis and PostgreSQL run on the machine already; later test suites start private redis-server
# processes, hence redis-server here.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing: ${need[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi
