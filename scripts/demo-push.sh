#!/usr/bin/env bash
# The image store demo: images pushed to a local S3-compatible server
# (versitygw) with a mirror for the ny metro, booted by the simulator.
# Usage: scripts/demo-push.sh [path/to/lkfleet] [path/to/versitygw]
#
# 1. start versitygw and the simulator on 127.0.0.1, create two public buckets
# 2. push build 1 (twice: the second uploads nothing), plan, apply in am and ny
# 3. push build 2, plan (the release changes per device), rolling rebuild
# 4. prune keeping 1 release: build 1 goes once no device runs it
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
bin=$(abs "${1:-bin/lkfleet}")
vgw=$(abs "${2:-.cache/bin/versitygw-v1.8.0}")
# Free loopback ports unless pinned: a port nothing answers on is taken.
free_port() {
  local p
  for p in $(shuf -i 20000-60999 -n 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "127.0.0.1:$p"; return; }
  done
  echo "demo-push: no free port found on 127.0.0.1" >&2; exit 1
}
s3=${DEMO_S3_LISTEN:-$(free_port)}
listen=${DEMO_PUSH_LISTEN:-$(free_port)}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# Demo-only credentials of the loopback S3 server, through the standard
# AWS variables lkfleet push reads (never the fleet file).
export AWS_ACCESS_KEY_ID=demo-access AWS_SECRET_ACCESS_KEY=demo-secret-key AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true

step "Start an S3-compatible server (versitygw on $s3) and two public buckets"
mkdir -p "$work/s3/data" "$work/s3/meta"
ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
  "$vgw" --port "$s3" --quiet posix --sidecar "$work/s3/meta" "$work/s3/data" >"$work/s3.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/${s3%:*}/${s3#*:}") 2>/dev/null && break
  sleep 0.1
done
(cd "$repo" && go run ./internal/s3test/mkbucket -endpoint "http://$s3" images images-ny)

step "Start the simulator (a Packet API on $listen)"
"$bin" sim --listen "$listen" --provision-time 1s --quiet >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
for _ in $(seq 100); do
  grep -q '^PACKET_PROJECT_ID=' "$work/sim.out" 2>/dev/null && break
  sleep 0.1
done
eval "$(head -3 "$work/sim.out" | sed 's/^/export /')"

cat >"$work/fleet.yml" <<YAML
apiVersion: lkfleet/v1
fleet: images-demo
images:
  sshd:
    store:
      endpoint: http://$s3
      bucket: images
      prefix: lab/sshd
      path_style: true
    mirrors:
      ny:
        bucket: images-ny
groups:
  - name: web
    image: sshd
    count: 2
    zones: [am, ny]
rollout:
  waves: [[am], [ny]]
YAML
cd "$work"
run cat fleet.yml

# Two stand-in LinuxKit builds (linuxkit build -format kernel+initrd).
for v in 1 2; do
  mkdir -p "build$v"
  head -c 3000000 /dev/urandom >"build$v/sshd-kernel"
  head -c 9000000 /dev/urandom >"build$v/sshd-initrd.img"
  printf 'console=ttyS1 build=%s' "$v" >"build$v/sshd-cmdline"
done

step "Push build 1 to the store and the ny mirror (in parallel)"
run "$bin" push -f fleet.yml --from build1 -o plain
step "Push it again: the release is content-addressed, nothing is uploaded"
run "$bin" push -f fleet.yml --from build1 -o plain

step "Plan and apply: am boots from the default store, ny from its mirror"
# --list-lag 0: the simulator lists new devices at once (no lag to wait out).
run "$bin" plan -f fleet.yml
run "$bin" apply -f fleet.yml --auto-approve --wait booted --list-lag 0 --poll-interval 200ms -o plain
run "$bin" status -f fleet.yml
run "$bin" render -f fleet.yml --device web-ny-1

step "A second build: push, plan shows the release change per device, rolling rebuild"
run "$bin" push -f fleet.yml --from build2 -o plain
run "$bin" plan -f fleet.yml --detailed-exitcode || [ $? -eq 2 ]
run "$bin" push -f fleet.yml --prune 1 --auto-approve -o plain
run "$bin" apply -f fleet.yml --auto-approve --wait booted --list-lag 0 --poll-interval 200ms -o plain
run "$bin" status -f fleet.yml

step "Prune: keep 1 release; build 1 goes now that no device runs it"
run "$bin" push -f fleet.yml --prune 1 --auto-approve -o plain

step "Destroy the fleet"
run "$bin" destroy -f fleet.yml --auto-approve -o plain
step "Done"
