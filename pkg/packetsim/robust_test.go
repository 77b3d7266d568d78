package packetsim_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestCreateIsOnDiskBeforeItIsAnswered: a simulator killed right after a
// 201 still has the device, and a simulator restarted from that file with
// the same seed never hands out the same id again.
func TestCreateIsOnDiskBeforeItIsAnswered(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	// A long debounce: only a write made for the request itself can be
	// on disk when the answer arrives.
	cfg := packetsim.Config{StateFile: state, SaveDelay: time.Hour, Seed: 7}
	srv := startSim(t, cfg)
	a := createRaw(t, srv, createBody(`"hostname":"first","operating_system":"ubuntu_22_04"`))
	b, err := os.ReadFile(state)
	if err != nil || !strings.Contains(string(b), a.ID) {
		t.Fatalf("state file right after the 201 lacks the device %s (%v)", a.ID, err)
	}
	// What a kill -9 leaves: the file as it is now.
	killed := filepath.Join(dir, "killed.json")
	writeFile(t, killed, string(b))

	cfg.StateFile = killed
	cfg.ImagesDir = ""
	srv2 := startSim(t, cfg)
	b2 := createRaw(t, srv2, createBody(`"hostname":"second","operating_system":"ubuntu_22_04"`))
	if b2.ID == a.ID {
		t.Fatalf("the restarted simulator handed out id %s again", a.ID)
	}
	if got, code := getDevice(t, srv2, a.ID); code != 200 || got.Hostname != "first" {
		t.Fatalf("device %s after restart: %d %+v, want the first device", a.ID, code, got)
	}
	// Deletes are durable too (no deprovisioning time here: gone at once).
	apiDo(t, srv2, "DELETE", "/metal/v1/devices/"+a.ID, "", nil)
	if after, _ := os.ReadFile(killed); strings.Contains(string(after), a.ID) {
		t.Errorf("state file right after the delete still has the device")
	}
}

// TestUnwritableStateFileIsRefusedAtStart: a state path the simulator
// could never save to is an error at start, not lost changes later.
func TestUnwritableStateFileIsRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing", "state.json"), dir} {
		srv, err := packetsim.Start(packetsim.Config{StateFile: path})
		if err == nil {
			srv.Close()
			t.Errorf("state file %s: started, want an error", path)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name %s", err, path)
		}
	}
}

// TestBatchRequestsAreCapped: one request cannot create more than the
// cap, however its batches are split; nothing is created.
func TestBatchRequestsAreCapped(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	one := `{"quantity":60,"hostname":"b-{{index}}","plan":"baremetal_0","facility":"ams1","operating_system":"ubuntu_22_04"}`
	var out struct{ Errors []string }
	resp := apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/devices/batch", `{"batches":[`+one+","+one+`]}`, &out)
	if resp.StatusCode != 422 || len(out.Errors) != 1 || !strings.Contains(out.Errors[0], "at most 100 devices") {
		t.Fatalf("2 x 60 devices: %d %v, want 422 naming the cap", resp.StatusCode, out.Errors)
	}
	if n := srv.Sim.Stats().Creates; n != 0 {
		t.Fatalf("a refused batch created %d devices", n)
	}
	if resp := apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/devices/batch", `{"batches":[`+one+`]}`, nil); resp.StatusCode != 201 {
		t.Fatalf("60 devices: %d, want 201", resp.StatusCode)
	}
}

// TestSlowBodyLosesTheConnection: a client that announces a body and
// never sends it is cut off after ReadTimeout.
func TestSlowBodyLosesTheConnection(t *testing.T) {
	srv := startSim(t, packetsim.Config{ReadTimeout: 100 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /metal/v1/projects/%s/devices HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"pl", testProject, testToken)
	// Far longer than ReadTimeout; the old server waited forever.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server still holds a connection whose body stalled")
	}
	// Either a 4xx answer or a closed connection is fine.
	if err == nil && !strings.Contains(line, " 4") && !strings.Contains(line, " 5") {
		t.Fatalf("answer to a stalled body: %q", line)
	}
}

// TestIDsStayUniqueAcrossRestarts: a clean restart on the same state file
// and seed continues the id sequence instead of repeating it.
func TestIDsStayUniqueAcrossRestarts(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	cfg := packetsim.Config{StateFile: state, Seed: 3, Token: testToken, Project: testProject}
	seen := map[string]bool{}
	for round := range 3 {
		srv, err := packetsim.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			d := createRaw(t, srv, createBody(`"operating_system":"ubuntu_22_04"`))
			if seen[d.ID] {
				t.Fatalf("round %d: id %s handed out twice", round, d.ID)
			}
			seen[d.ID] = true
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOldUserStateEventsAreReadInTheServiceShape: state files written
// before user.<code> events keep their boot results.
func TestOldUserStateEventsAreReadInTheServiceShape(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	id := "11111111-2222-4333-8444-555555555555"
	writeFile(t, state, `{"version":1,"project":"`+testProject+`","seq":1,"devices":[{"id":"`+id+`","seq":1,"hostname":"old",`+
		`"plan":"baremetal_0","facility":"ams1","os":"custom_ipxe","billing":"hourly","created":"2026-01-01T00:00:00Z",`+
		`"updated":"2026-01-01T00:00:00Z","phase":4,"phase_at":"2026-01-01T00:00:00Z","phase_dur":0,`+
		`"events":[{"id":"11111111-2222-4333-8444-666666666666","at":"2026-01-01T00:01:00Z","type":"user_state","state":"failed","body":"kernel: 404"}]}]}`)
	srv := startSim(t, packetsim.Config{StateFile: state})
	d, code := getDevice(t, srv, id)
	if code != 200 || len(d.ProvisioningEvents) != 1 || d.ProvisioningEvents[0].Type != "user.1002" {
		t.Fatalf("device from an old state file: %d %+v", code, d.ProvisioningEvents)
	}
	if st, msg := d.userState(); st != "failed" || msg != "kernel: 404" {
		t.Errorf("user state %q %q", st, msg)
	}
}
