#!/bin/sh
# Nightly lab rebuild from cron: boot tonight's LinuxKit build on every
# machine of fleets/nightly-lab.yml, wave by wave, and fail loudly if any
# machine does not come up.
#
#   30 2 * * *  /opt/lab/examples/cron/nightly-lab.sh >>/var/log/nightly-lab.log 2>&1
#
# Environment (put the secrets in a file only the cron user can read and
# name it in LKFLEET_ENV; lkfleet never prints the token):
#   PACKET_AUTH_TOKEN   API token                                (required)
#   PACKET_PROJECT_ID   project UUID                             (required)
#   PACKET_API_URL      a Packet-compatible endpoint             (optional)
#   BUILD_ID            the image build to boot          (default: today's, YYYY-MM-DD.1)
#   FLEET_FILE          the fleet file        (default: fleets/nightly-lab.yml)
#   LKFLEET             the lkfleet binary                 (default: lkfleet)
#   TIMEOUT             give up after this long                  (default: 60m)
#   LOCK_FILE           one run at a time   (default: /tmp/nightly-lab.lock)
#
# Exit status: 0 nothing to do or the lab was rebuilt and booted; 1 the plan
# or the apply failed (the apply's output names every failed machine);
# 130 interrupted. A failed or interrupted run is resumed by the next one.
set -eu

if [ -n "${LKFLEET_ENV:-}" ]; then
	# VAR=value lines; set -a exports them to lkfleet.
	set -a
	# shellcheck disable=SC1090
	. "$LKFLEET_ENV"
	set +a
fi
LKFLEET=${LKFLEET:-lkfleet}
FLEET_FILE=${FLEET_FILE:-fleets/nightly-lab.yml}
TIMEOUT=${TIMEOUT:-60m}
BUILD_ID=${BUILD_ID:-$(date -u +%Y-%m-%d).1}
export BUILD_ID

# Two rollouts of one fleet at once would fight over the same machines.
if command -v flock >/dev/null 2>&1; then
	exec 9>"${LOCK_FILE:-/tmp/nightly-lab.lock}"
	if ! flock -n 9; then
		echo "nightly-lab: another run holds ${LOCK_FILE:-/tmp/nightly-lab.lock}; not starting" >&2
		exit 1
	fi
fi

echo "nightly-lab: build $BUILD_ID, fleet $FLEET_FILE"

# The plan also checks that the build's kernels and initrds are published
# (preflight): a build that is missing fails here, before any machine is
# touched. --detailed-exitcode: 0 nothing to change, 2 changes, 1 error.
status=0
"$LKFLEET" plan -f "$FLEET_FILE" --detailed-exitcode || status=$?
case $status in
0)
	echo "nightly-lab: the lab already runs build $BUILD_ID; nothing to do"
	exit 0
	;;
2) ;;
*)
	echo "nightly-lab: plan failed (exit $status); nothing was changed" >&2
	exit 1
	;;
esac

# --rebuild all: every machine boots fresh, even one whose image did not
# change tonight. --wait booted: a machine counts only once the image
# itself reported in (user state "succeeded"), not when the API says active.
exec "$LKFLEET" apply -f "$FLEET_FILE" --auto-approve --rebuild all --wait booted \
	--timeout "$TIMEOUT" -o plain
