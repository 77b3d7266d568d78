package packetsim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestDevicesSnapshotIgnoresListLag checks that Devices shows a device the
// listing still hides, and a deleted one as deprovisioning until it is gone.
func TestDevicesSnapshotIgnoresListLag(t *testing.T) {
	srv := startSim(t, packetsim.Config{ListLag: time.Hour, DeprovisionTime: time.Hour})
	ids, err := srv.Sim.Seed(
		packetsim.SeedDevice{Hostname: "old", Tags: []string{"a"}, CreatedAt: time.Now().Add(-2 * time.Hour)},
		packetsim.SeedDevice{Hostname: "new", State: "failed"},
	)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.APIURL+"devices/"+ids[0], nil)
	req.Header.Set("X-Auth-Token", testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %s", resp.Status)
	}
	got := srv.Sim.Devices()
	if len(got) != 2 {
		t.Fatalf("Devices() = %+v, want the deleted and the hidden device", got)
	}
	if d := got[0]; d.ID != ids[0] || !d.Deleted || d.State != "deprovisioning" || strings.Join(d.Tags, ",") != "a" {
		t.Errorf("deleted device: %+v", d)
	}
	if d := got[1]; d.ID != ids[1] || d.Deleted || d.State != "failed" || d.Hostname != "new" {
		t.Errorf("hidden device: %+v", d)
	}
}
