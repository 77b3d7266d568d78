package main

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func TestBounds(t *testing.T) {
	for _, tc := range []struct {
		got, want time.Duration
	}{
		{createBound(1000), 24600 * time.Millisecond}, // (1000-20)/50 + 5
		{createBound(100), 6600 * time.Millisecond},
		{createBound(10), 5 * time.Second},            // within the burst: only T
		{rebootBound(1000), 40600 * time.Millisecond}, // (2000-20)/50 + 1
	} {
		if tc.got != tc.want {
			t.Errorf("bound %v, want %v", tc.got, tc.want)
		}
	}
}

func TestRouteOf(t *testing.T) {
	for path, want := range map[string]string{
		"GET /metal/v1/projects/p1/devices?page=2": "GET /projects/{id}/devices",
		"POST /metal/v1/projects/p1/devices":       "POST /projects/{id}/devices",
		"PUT /metal/v1/devices/d1":                 "PUT /devices/{id}",
		"POST /metal/v1/devices/d1/actions":        "POST /devices/{id}/actions",
		"GET /metal/v1/plans":                      "GET /plans",
	} {
		var method, target string
		for i := range path {
			if path[i] == ' ' {
				method, target = path[:i], path[i+1:]
				break
			}
		}
		if got := routeOf(httptest.NewRequest(method, target, nil)); got != want {
			t.Errorf("routeOf(%s) = %q, want %q", path, got, want)
		}
	}
}

func TestPhasesOf(t *testing.T) {
	s := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	tl := []reqEvent{
		{At: s(0.01), Route: "GET /plans"},
		{At: s(0.02), Route: routeList}, // planning
		{At: s(0.10), Route: routeCreate},
		{At: s(0.20), Route: routeList},
		{At: s(1.00), Route: routeCreate},
		{At: s(1.15), Route: routeList},
		{At: s(2.20), Route: routeList},
	}
	p := phasesOf(tl)
	if p.FirstCallS != 0.10 || p.LastCallS != 1.00 || p.ListingsAfter != 3 || p.ListingsDuring != 1 ||
		p.FirstListingS != 0.20 || p.LastListingS != 2.20 {
		t.Errorf("phases = %+v", p)
	}
	if p.MinGapS < 0.949 || p.MinGapS > 0.951 {
		t.Errorf("closest gap %v, want 0.95", p.MinGapS)
	}
	if got := phasesOf(tl[:2]); got != (phases{}) {
		t.Errorf("phases without calls = %+v, want zero", got)
	}
}

func TestDiff(t *testing.T) {
	a := packetsim.Stats{Requests: map[string]int{routeList: 2, routeCreate: 5}, Status: map[string]int{"200": 7}, Throttled: 1, Creates: 5}
	b := packetsim.Stats{Requests: map[string]int{routeList: 4, routeCreate: 5, routePut: 3}, Status: map[string]int{"200": 11, "429": 1}, Throttled: 2, Creates: 5, Duplicates: 1, PeakInFlight: 9}
	d := diff(a, b)
	if d.Total != 5 || d.Requests[routeList] != 2 || d.Requests[routePut] != 3 || d.Requests[routeCreate] != 0 ||
		d.Status["429"] != 1 || d.Throttled != 1 || d.Creates != 0 || d.Duplicates != 1 || d.PeakFlight != 9 {
		t.Errorf("diff = %+v", d)
	}
}
