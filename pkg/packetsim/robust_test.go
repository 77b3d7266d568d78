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
