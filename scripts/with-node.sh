#!/usr/bin/env bash
# Runs a command in a copy of this checkout under another Node.js version: the copy gets its own
# `npm ci` (native modules such as better-sqlite3 are built for that Node, against its headers),
# so this checkout's node_modules, built for the machine's Node, is left alone.
#
#   scripts/with-node.sh VERSION COMMAND...      e.g.  scripts/with-node.sh 24.22.3 npm test
#
# The copy holds the files git tracks plus untracked ones not ignored (the working versions), in a
# temporary directory removed at the end; the command's exit code is this script's.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 VERSION COMMAND..." >&2
  exit 2
fi
version=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
node_dir=$(bash "$root/scripts/fetch-node.sh" "$version")

copy=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-node$version.XXXXXX")
trap 'rm -rf "$copy"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
  tar --null -T - -cf -) | tar -xf - -C "$copy"

export PATH="$node_dir/bin:$PATH"
# node-gyp builds addons against this Node's headers, not the machine's (npm's nodedir config)
export npm_config_nodedir="$node_dir"
cd "$copy"
echo "with-node.sh: $(node --version) in $copy" >&2
npm ci --no-audit --no-fund
"$@"
