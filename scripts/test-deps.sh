#!/usr/bin/env bash
# Installs the system tools the test suite needs when they are missing (Debian packages):
# redis-server and redis-cli (tests start private Redis nodes and clusters), and libfaketime
# (gateway processes with skewed clocks), dnsmasq (a real DNS server for discovery tests; the
# -base package has no service that would start on port 53), haproxy (the load balancer in front
# of three gateways in the rolling-restart test, which runs it as a child process; a daemon the
# package starts is stopped below), and a C++ toolchain for native modules. Redis and PostgreSQL
# themselves already run on the machine; the shared servers are never stopped or flushed by the
# tests.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
# haproxy: the rolling-restart test's load balancer, and `haproxy -c` on deploy/compose's config
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# node-gyp builds better-sqlite3 from source for Node 24 (.ci/run's second pass): no prebuilt
# binary can be downloaded here
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# chromium: the admin console's browser tests drive it through playwright-core (never a
# browser downloaded by playwright itself)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    before_haproxy=$(pgrep -x haproxy || true)
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    # the tests run their own haproxy: one the package started must not stay behind
    for pid in $(pgrep -x haproxy || true); do
      case " $before_haproxy " in *" $pid "*) ;; *)
        echo "stopping the haproxy daemon the package started (pid $pid)" >&2
        kill "$pid" ;;
      esac
    done
  else
    echo "missing: ${need[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi

# promtool (checks deploy/prometheus rules and the Grafana dashboard's queries) ships only in the
# `prometheus` package, whose maintainer script would start the server.
# A policy-rc.d that exits 101 tells invoke-rc.d not to start it (containers without systemd); one
# already in place (Docker images have one) is kept; recommends are skipped (node-exporter is a daemon).
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: prometheus (for promtool; install it, or run as root)" >&2
    exit 1
  fi
  before=$(pgrep -x prometheus || true)
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  if [ -n "$own_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  # the install must not leave a server behind: stop only processes that were not running before
  for pid in $(pgrep -x prometheus || true); do
    case " $before " in *" $pid "*) ;; *)
      echo "stopping the prometheus daemon the package started (pid $pid)" >&2
      kill "$pid" ;;
    esac
  done
  command -v promtool >/dev/null
fi
