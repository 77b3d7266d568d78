#!/usr/bin/env bash
# The lkfleet demo: the whole story on the built-in simulator, in well under
# a minute. Usage: scripts/demo.sh [path/to/lkfleet]
#
# 1. start `lkfleet sim`, which also serves two image releases at /images/
# 2. validate, plan and apply fleets/demo.yml (5 devices in two waves)
# 3. show status, one device's iPXE script and its boot record
# 4. roll out a new image release (rebuild in place, same device ids)
# 5. destroy the fleet and stop the simulator
set -euo pipefail

bin=$(cd "$(dirname "${1:-bin/lkfleet}")" && pwd)/$(basename "${1:-bin/lkfleet}")
repo=$(cd "$(dirname "$0")/.." && pwd)
listen=${DEMO_LISTEN:-127.0.0.1:0} # port 0: the simulator picks a free one
work=$(mktemp -d)
cleanup() {
  [ -f "$work/sim.pid" ] && "$bin" sim stop --pid-file "$work/sim.pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# Two releases of a tiny stand-in image: a LinuxKit build writes
# <name>-kernel, <name>-initrd.img and <name>-cmdline.
for rel in 2026-11-24 2026-11-25; do
  mkdir -p "$work/images/$rel"
  printf 'kernel %s\n' "$rel" >"$work/images/$rel/sshd-kernel"
  printf 'initrd %s\n' "$rel" >"$work/images/$rel/sshd-initrd.img"
  printf 'console=ttyS1 page_poison=1' >"$work/images/$rel/sshd-cmdline"
done
cp "$work/images/2026-11-24/"* "$work/images/"

step "Start the simulator (a Packet API on $listen) in the background"
# --background returns once the simulator serves and prints its settings as
# export lines: PACKET_API_URL, PACKET_AUTH_TOKEN, PACKET_PROJECT_ID and
# LKFLEET_SIM_URL (which fleets/demo.yml serves its images from).
printf '$ eval "$(lkfleet sim --background --listen %s --images %s --provision-time 2s --quiet)"\n' "$listen" "$work/images"
eval "$("$bin" sim --background --listen "$listen" --images "$work/images" --provision-time 2s --quiet \
  --pid-file "$work/sim.pid" --log-file "$work/sim.log")"
printf 'PACKET_API_URL=%s\nPACKET_AUTH_TOKEN=(generated, not shown)\nPACKET_PROJECT_ID=%s\nLKFLEET_SIM_URL=%s\n' \
  "$PACKET_API_URL" "$PACKET_PROJECT_ID" "$LKFLEET_SIM_URL"
hostport=${LKFLEET_SIM_URL#http://}
# The local simulator stores a write in about a millisecond: the fleet
# lease's settle delay can be 200 ms instead of the 2 s default a remote
# API needs (docs/reliability.md, "Cost").
export LKFLEET_LOCK_SETTLE=200ms

# Every fleet in fleets/ validates (the nightly lab names its build).
step "Validate the example fleets"
cd "$repo"
for f in fleets/*.yml; do BUILD_ID=2026-11-25.1 run "$bin" validate -f "$f"; done

cd "$repo"
step "Plan: what would change?"
run "$bin" plan -f fleets/demo.yml

step "Apply: create the fleet, wave by wave"
# --list-lag 0: this simulator shows a new device in its listings at once
# (sim --list-lag defaults to 0), so there is no lag to wait out before the
# first create. Against a real API leave the default or set the measured lag.
run "$bin" apply -f fleets/demo.yml --auto-approve --list-lag 0 --poll-interval 250ms -o plain

step "Status: every device, the image it booted"
run "$bin" status -f fleets/demo.yml

step "The iPXE script one device boots"
run "$bin" render -f fleets/demo.yml --device db-ams1-1

step "Its boot, as the simulator recorded it"
boots=$(exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}" && printf 'GET /sim/boots HTTP/1.0\r\nHost: %s\r\n\r\n' "$hostport" >&3 && sed '1,/^\r$/d' <&3)
printf '%s\n' "$boots" | tr '{' '\n' | grep '"db-ams1-1"' | tail -1 | sed 's/^/{/; s/,$//'

step "Roll out a new image release: edit the fleet file, plan, apply"
sed 's#/images$#/images/2026-11-25#' fleets/demo.yml >"$work/demo.yml"
run diff -u fleets/demo.yml "$work/demo.yml" || true
run "$bin" plan -f "$work/demo.yml" --detailed-exitcode || [ $? -eq 2 ]
run "$bin" apply -f "$work/demo.yml" --auto-approve --wait booted --list-lag 0 --poll-interval 250ms -o plain
run "$bin" status -f "$work/demo.yml"
run "$bin" plan -f "$work/demo.yml" --detailed-exitcode

step "Destroy: delete the fleet's devices, and nothing else"
run "$bin" destroy -f "$work/demo.yml" --auto-approve -o plain
run "$bin" sim stop --pid-file "$work/sim.pid"

step "Done"
echo "The simulator is stopped. Try it yourself: $bin sim --help"
