package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func TestSimMarketFlags(t *testing.T) {
	o := simMarketOptions{reservations: []string{"c3.small.x86:ams1:2", "m3.small.x86:ny:1"}, walk: 0.1, interval: time.Second, notice: time.Minute}
	seeds, spot, err := o.config()
	if err != nil || len(seeds) != 2 || seeds[1] != (packetsim.ReservationSeed{Plan: "m3.small.x86", Zone: "ny", Count: 1}) || spot.Walk != 0.1 || spot.Notice != time.Minute {
		t.Fatalf("config: %+v %+v %v", seeds, spot, err)
	}
	bad := simMarketOptions{reservations: []string{"c3.small.x86:ams1", "x:y:0"}, walk: 1.5, interval: time.Second}
	_, _, err = bad.config()
	for _, want := range []string{`reservation seed "c3.small.x86:ams1": want plan:zone:count`, `"x:y:0": count must be a positive integer`,
		"--spot-price-walk must be at least 0 and below 1", "--spot-termination-notice must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := packetsim.Start(packetsim.Config{Reservations: []packetsim.ReservationSeed{{Plan: "nope", Zone: "ams1", Count: 1}}}); err == nil || !strings.Contains(err.Error(), "reservation seed nope:ams1:1") {
		t.Errorf("unknown plan in a seed: %v", err)
	}
}
