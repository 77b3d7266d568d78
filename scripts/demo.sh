#!/usr/bin/env bash
# The lkfleet demo: validates and prints the example fleets.
set -euo pipefail
bin=${1:-bin/lkfleet}
for f in fleets/*.yml; do
  "$bin" validate -f "$f"
done
