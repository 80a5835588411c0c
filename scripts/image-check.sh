#!/usr/bin/env bash
# Builds the container image from deploy/docker/Dockerfile and runs it the way production does,
# with podman (no Docker engine or image registry is needed):
#
#   1. a base image standing in for docker.io/library/node:24-bookworm-slim: Debian bookworm from
#      debootstrap (minbase), the official Node 24 binary and headers (scripts/fetch-node.sh),
#      this machine's npm, and user `node` (1000:1000), as the official image has them;
#   2. the image, built from the Dockerfile with that base (--build-arg NODE_IMAGE=...);
#   3. a container of it in a network namespace of its own (so the demo's fixed ports do not
#      meet anything on this machine), as user 10001, read-only root, no tmpfs, no capabilities,
#      running `gatehouse demo` (its demo upstreams are built in) with the demo config plus a
#      route behind an API key from the SQLite store in the image's volume;
#   4. requests through it, the HEALTHCHECK, then SIGTERM during a slow request: the request must
#      complete, the gateway must exit 0.
#
#   sudo bash scripts/image-check.sh          (root: rootful podman, debootstrap, ip netns)
#
# Cached between runs: the debootstrap tarball and the Node build under $GATEHOUSE_CACHE (default
# ~/.cache/gatehouse), the base image and the build layers in podman's store. A cold run takes
# minutes (debootstrap, better-sqlite3 compiled from source); a warm one, under a minute.
# Env: NODE_VERSION (24.22.3), IMAGE (localhost/gatehouse:check), DEBIAN_MIRROR.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${GATEHOUSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse}
node_version=${NODE_VERSION:-24.22.3}
image=${IMAGE:-localhost/gatehouse:check}
rootfs_image=localhost/gatehouse-rootfs:bookworm-minbase
base_image=localhost/gatehouse-node:$node_version-bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

checks=0
step() { printf '[%3ss] %s\n' "$SECONDS" "$*"; }
ok() {
  checks=$((checks + 1))
  printf '[%3ss] ok: %s\n' "$SECONDS" "$*"
}
fail() {
  printf '[%3ss] FAIL: %s\n' "$SECONDS" "$*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (rootful podman, debootstrap and ip netns need it)"
need=()
for tool in podman runc debootstrap curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap curl >/dev/null
fi
mkdir -p "$cache"
# runc rather than crun; no default ulimits: podman's default raises the open-files limit, which
# the sandboxes this runs in refuse
export CONTAINERS_CONF=$cache/containers.conf
printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"
pm() { podman --runtime runc "$@"; }

# ---- 1. the base image -------------------------------------------------------------------------
if ! pm image exists "$rootfs_image"; then
  rootfs_tar=$cache/rootfs-bookworm-minbase.tar
  if [ ! -s "$rootfs_tar" ]; then
    step "debootstrap --variant=minbase bookworm (log: $cache/debootstrap.log)"
    dir=$(mktemp -d "$cache/.rootfs.XXXXXX")
    debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      fail "debootstrap failed: see $cache/debootstrap.log"
    rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
    tar -C "$dir" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$dir"
  fi
  step "podman import $rootfs_tar as $rootfs_image"
  pm import -q "$rootfs_tar" "$rootfs_image" >/dev/null
fi
node_dir=$(bash "$root/scripts/fetch-node.sh" "$node_version")
if ! pm image exists "$base_image"; then
  step "building $base_image (node $node_version, npm $(npm --version))"
  ctx=$(mktemp -d)
  cp -a "$node_dir/bin/node" "$ctx/node"
  cp -a "$node_dir/include/node" "$ctx/include"
  cp -a "$(npm root -g)/npm" "$ctx/npm"
  cat >"$ctx/Containerfile" <<EOF
FROM $rootfs_image
COPY node /usr/local/bin/node
COPY include /usr/local/include/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && groupadd --gid 1000 node \\
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && node --version && npm --version
CMD ["node"]
EOF
  pm build -q --network=host -t "$base_image" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# ---- 2. the image ------------------------------------------------------------------------------
version=$(node -p "require('$root/package.json').version")
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
# the commit's date, not now: an unchanged tree rebuilds nothing
created=$(git -C "$root" log -1 --format=%cI 2>/dev/null || echo unknown)
previous=$(pm image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
step "podman build -f deploy/docker/Dockerfile -t $image (log: $cache/image-build.log)"
build_start=$SECONDS
# the CA npm trusts here (a TLS-intercepting egress proxy's, in sandboxes) reaches npm in the build
# as a secret
secret=()
cafile=$(npm config get cafile 2>/dev/null || true)
if [ -n "$cafile" ] && [ "$cafile" != null ] && [ -s "$cafile" ]; then secret=(--secret "id=npm_ca,src=$cafile"); fi
pm build --network=host --format docker --pull=never "${secret[@]}" \
  --build-arg "NODE_IMAGE=$base_image" --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
  -f "$root/deploy/docker/Dockerfile" -t "$image" "$root" >"$cache/image-build.log" 2>&1 ||
  fail "the image build failed: $(tail -20 "$cache/image-build.log")"
current=$(pm image inspect -f '{{.Id}}' "$image")
# the image this tag named before, now untagged
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then pm rmi "$previous" >/dev/null 2>&1 || true; fi
step "built in $((SECONDS - build_start)) s; $(pm image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"

inspect() { pm image inspect -f "$1" "$image"; }
[ "$(inspect '{{.Config.User}}')" = 10001:10001 ] || fail "image user is '$(inspect '{{.Config.User}}')'"
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["node","/app/bin/gatehouse.js"]' ] ||
  fail "entrypoint is $(inspect '{{json .Config.Entrypoint}}')"
inspect '{{json .Config.Volumes}}' | grep -q '"/var/lib/gatehouse"' || fail "no volume /var/lib/gatehouse"
[ "$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')" = "$version" ] ||
  fail "no org.opencontainers.image.version label"
inspect '{{json .Config.Healthcheck.Test}}' | grep -q '/livez' || fail "no HEALTHCHECK on /livez"
ok "image: user 10001:10001, exec-form entrypoint, volume /var/lib/gatehouse, OCI labels, HEALTHCHECK on /livez"
image_node=$(pm run --rm --network=none --no-healthcheck --entrypoint node "$image" --version)
[ "$image_node" = "v$node_version" ] || fail "the image runs node $image_node"
ok "the image runs node $image_node"
# the bundled CLI, compiled from the compile cache baked into the image, read-only root
cache_log=$(pm run --rm --network=none --no-healthcheck --read-only --read-only-tmpfs=false \
  -e NODE_DEBUG_NATIVE=COMPILE_CACHE "$image" validate -c /app/examples/demo.yaml 2>&1) ||
  fail "validate in the image failed: $cache_log"
grep -q 'V8 code cache for ESM file:///app/dist/gatehouse.mjs was accepted' <<<"$cache_log" ||
  fail "the baked compile cache was not used for dist/gatehouse.mjs: $cache_log"
ok "dist/gatehouse.mjs runs from the compile cache baked into the image (read-only root)"

# ---- 3. the container --------------------------------------------------------------------------
ns=gatehouse-check-$$
ctr=gatehouse-check-$$
work=$(mktemp -d)
cleanup() {
  pm rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
in_ns() { ip netns exec "$ns" "$@"; }

# the demo config, plus a route behind an API key; the key store is the default SQLite file,
# ./data/gatehouse.db, relative to the working directory: the image's volume
{
  cat "$root/examples/demo.yaml"
  cat <<'EOF'
  - name: keyed
    match: { path: /keyed/** }
    service: demo
    stripPrefix: /keyed
    auth: [apiKey]
    rateLimit: off # the demo has no tier for consumers; this route checks the key store
auth: { apiKey: { secret: image-check-secret-0123456789abcdef } }
EOF
} >"$work/gatehouse.yaml"
chmod 755 "$work"
chmod 644 "$work/gatehouse.yaml"

step "podman run $image demo: netns $ns, --read-only, no tmpfs, --cap-drop=all, no-new-privileges"
started=$(date +%s%N)
pm run -d --name "$ctr" --network "ns:/run/netns/$ns" \
  --read-only --read-only-tmpfs=false --cap-drop=all --security-opt=no-new-privileges \
  -v "$work/gatehouse.yaml:/etc/gatehouse/gatehouse.yaml:ro" \
  "$image" demo -c /etc/gatehouse/gatehouse.yaml >/dev/null 2>"$work/run.err" || fail "podman run: $(cat "$work/run.err")"
# (without systemd podman says it cannot schedule the healthcheck; `podman healthcheck run` below
# runs it)
ready=
for _ in $(seq 1 300); do
  if in_ns curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:9080/readyz 2>/dev/null; then
    ready=$(($(date +%s%N) - started))
    break
  fi
  [ "$(pm inspect -f '{{.State.Running}}' "$ctr")" = true ] || fail "the container exited: $(pm logs "$ctr" 2>&1 | tail -20)"
  sleep 0.1
done
[ -n "$ready" ] || fail "/readyz did not answer 200 within 30 s: $(pm logs "$ctr" 2>&1 | tail -20)"
ok "ready: /readyz 200 $((ready / 1000000)) ms after podman run"

pid=$(pm inspect -f '{{.State.Pid}}' "$ctr")
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
[ "$uid" = 10001 ] || fail "the gateway runs as uid $uid"
case "$cmdline" in "node /app/bin/gatehouse.js demo -c /etc/gatehouse/gatehouse.yaml ") ;; *) fail "the container's PID 1 is '$cmdline'" ;; esac
ok "the container's PID 1 is '$cmdline', uid $uid"

code=$(in_ns curl -s --max-time 10 -o "$work/body" -D "$work/headers" -w '%{http_code}' http://127.0.0.1:8080/api/items/1)
[ "$code" = 200 ] && grep -qi '^x-demo-instance: demo-' "$work/headers" || fail "GET /api/items/1: $code $(cat "$work/body")"
codes=$(for _ in 1 2 3 4 5 6; do in_ns curl -s --max-time 10 -o /dev/null -w '%{http_code} ' http://127.0.0.1:8080/api/limited/items/1; done)
[ "$codes" = '200 200 200 200 200 429 ' ] || fail "rate-limited route answered $codes"
ok "proxied: GET /api/items/1 200 from $(tr -d '\r' <"$work/headers" | awk -F': ' 'tolower($1) == "x-demo-instance" { print $2 }'); /api/limited: $codes"

key=$(pm exec "$ctr" node /app/bin/gatehouse.js keys create --name image-check --tier anonymous 2>&1 |
  grep -o 'gh_[A-Za-z0-9_]*' | head -1) || true
[ -n "$key" ] || fail "keys create: $(pm exec "$ctr" node /app/bin/gatehouse.js keys list 2>&1)"
without=$(in_ns curl -s --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/keyed/items/1)
with=$(in_ns curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "x-api-key: $key" http://127.0.0.1:8080/keyed/items/1)
[ "$without" = 401 ] && [ "$with" = 200 ] || fail "keyed route: $without without the key, $with with it"
ok "API key made by 'gatehouse keys' in the container: 401 without it, 200 with it (better-sqlite3 on node $node_version)"

pm exec "$ctr" test -s /var/lib/gatehouse/data/gatehouse.db || fail "no SQLite file in the volume"
for path in /app/x /etc/gatehouse/x /tmp/x /x; do
  if err=$(pm exec "$ctr" touch "$path" 2>&1); then fail "$path is writable"; fi
  case "$err" in *Read-only*) ;; *) fail "touch $path: $err" ;; esac
done
ok "read-only root: /app, /etc/gatehouse, /tmp and / refuse writes; the SQLite file is in the volume"

pm healthcheck run "$ctr" >/dev/null || fail "the HEALTHCHECK failed"
ok "HEALTHCHECK (node fetching /livez) passes"

# ---- 4. SIGTERM during a slow request ----------------------------------------------------------
in_ns curl -s --max-time 20 -o "$work/slow" -w '%{http_code}' 'http://127.0.0.1:8080/api/slow?ms=2000' >"$work/slow-code" &
slow=$!
# until the gateway has it in flight (the admin API counts in-flight requests per target)
for _ in $(seq 1 50); do
  in_ns curl -s --max-time 10 http://127.0.0.1:9080/services | grep -q '"inflight":1' && break
  sleep 0.05
done
term_at=$(date +%s%N)
pm kill --signal TERM "$ctr" >/dev/null
readyz=200
for _ in $(seq 1 40); do
  readyz=$(in_ns curl -s --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:9080/readyz || true)
  [ "$readyz" != 200 ] && break
  sleep 0.05
done
not_ready=$((($(date +%s%N) - term_at) / 1000000))
wait "$slow" || true
[ "$(cat "$work/slow-code")" = 200 ] || fail "the in-flight request got $(cat "$work/slow-code") after SIGTERM"
exit_code=$(timeout 30 podman --runtime runc wait "$ctr") || fail "still running 30 s after SIGTERM"
stopped=$((($(date +%s%N) - term_at) / 1000000))
[ "$exit_code" = 0 ] || fail "exit code $exit_code after SIGTERM: $(pm logs "$ctr" 2>&1 | tail -10)"
pm logs "$ctr" 2>&1 | grep -q '"signal":"SIGTERM"' || fail "the gateway did not log the SIGTERM"
[ "$readyz" != 200 ] || fail "/readyz still answered 200 2 s after SIGTERM"
ok "SIGTERM: /readyz ${readyz/#000/refused} within $not_ready ms, the in-flight 2 s request completed 200, exit code 0 $stopped ms after the signal"

echo "image-check: $checks checks passed ($image, node $node_version, $SECONDS s)"
