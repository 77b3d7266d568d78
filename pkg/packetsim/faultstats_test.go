package packetsim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestStatsCountFaultsByKind checks that every injected fault is counted
// under its kind, matching what the client saw.
func TestStatsCountFaultsByKind(t *testing.T) {
	srv := startSim(t, packetsim.Config{FaultRate: 0.8, Seed: 7})
	seen := map[string]int{}
	for range 60 {
		seen[outcome(srv, "/metal/v1/projects/"+testProject+"/devices")]++
	}
	f := srv.Sim.Stats().Faults
	for kind, outcome := range map[string]string{
		packetsim.FaultServerError: "Internal Server Error",
		packetsim.FaultBadGateway:  "Bad Gateway",
		packetsim.FaultUnavailable: "Service Unavailable",
		packetsim.FaultTruncated:   "truncated",
		packetsim.FaultDropped:     "dropped",
	} {
		if f[kind] != seen[outcome] || f[kind] == 0 {
			t.Errorf("faults[%q] = %d, client saw %q %d times", kind, f[kind], outcome, seen[outcome])
		}
	}
	if f[packetsim.FaultAmbiguousCreate] != 0 || f[packetsim.FaultFailedProvision] != 0 {
		t.Errorf("faults of kinds never enabled: %v", f)
	}
}

func TestStatsCountAmbiguousCreatesAndFailedProvisions(t *testing.T) {
	srv := startSim(t, packetsim.Config{AmbiguousCreateRate: 1, FailProvisionRate: 1, ProvisionTime: time.Hour})
	for range 3 {
		req, _ := http.NewRequest("POST", srv.APIURL+"projects/"+testProject+"/devices", strings.NewReader(createBody(`"userdata":"#!ipxe"`)))
		req.Header.Set("X-Auth-Token", testToken)
		tr := &http.Transport{DisableKeepAlives: true}
		if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
			resp.Body.Close()
		}
		tr.CloseIdleConnections()
	}
	st := srv.Sim.Stats()
	if st.Faults[packetsim.FaultAmbiguousCreate] != 3 || st.Faults[packetsim.FaultFailedProvision] != 3 || st.Creates != 3 {
		t.Fatalf("stats after 3 ambiguous creates of failing devices: faults %v creates %d", st.Faults, st.Creates)
	}
}
