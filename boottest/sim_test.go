package boottest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sim is a running `lkfleet sim --boot qemu`.
type sim struct {
	cmd  *exec.Cmd
	env  []string // PACKET_* for lkfleet commands
	url  string   // http://127.0.0.1:PORT
	tok  string
	proj string
	mu   sync.Mutex
	log  bytes.Buffer // everything after the PACKET_* lines
	done chan struct{}
}

func startSim(t *testing.T, bin, images, bootDir string) *sim {
	t.Helper()
	cmd := exec.Command(bin, "sim", "--listen", "127.0.0.1:0", "--quiet", "--images", images,
		"--provision-time", "1s", "--rate-limit", "0", "--sos-listen", "127.0.0.1:0",
		"--boot", "qemu", "--boot-concurrency", "2", "--boot-timeout", "150s", "--boot-dir", bootDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start lkfleet sim: %v", err)
	}
	s := &sim{cmd: cmd, done: make(chan struct{})}
	sc := bufio.NewScanner(out)
	for len(s.env) < 3 && sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "PACKET_API_URL":
			s.url = strings.TrimSuffix(v, "/metal/v1/")
		case "PACKET_AUTH_TOKEN":
			s.tok = v
		case "PACKET_PROJECT_ID":
			s.proj = v
		default:
			continue
		}
		s.env = append(s.env, sc.Text())
	}
	if len(s.env) < 3 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("lkfleet sim printed no PACKET_* lines: %v\n%s", sc.Err(), stderr.String())
	}
	go func() {
		defer close(s.done)
		for sc.Scan() {
			s.mu.Lock()
			fmt.Fprintln(&s.log, sc.Text())
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		waited := make(chan error, 1)
		go func() { <-s.done; waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			if err != nil {
				t.Errorf("lkfleet sim: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("lkfleet sim did not stop within 30 s of SIGINT")
		}
		t.Logf("lkfleet sim log:\n%s", s.logText())
	})
	return s
}

func (s *sim) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// lkfleet runs the CLI with the simulator's environment.
func (s *sim) lkfleet(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), s.env...)
	// The simulator runs without --list-lag: it hides no device from listings.
	cmd.Env = append(cmd.Env, "NO_COLOR=1", "LKFLEET_LIST_LAG=0")
	out, err := cmd.CombinedOutput()
	t.Logf("lkfleet %s: %v in %v", strings.Join(args, " "), errOrOK(err), time.Since(start).Round(100*time.Millisecond))
	return string(out), err
}

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// liveDevice is what the boot test reads of a device.
type liveDevice struct {
	ID, SOS string
	// states are the device's user states, newest first: {state, body}.
	states [][2]string
}

// devices lists the project's devices by hostname. Only 127.0.0.1 is
// contacted. User states are the events of type user.<code>, as the
// service names them.
func (s *sim) devices(t *testing.T) map[string]liveDevice {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/metal/v1/projects/"+s.proj+"/devices?per_page=100", nil)
	req.Header.Set("X-Auth-Token", s.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("list devices: %v", err)
	}
	defer resp.Body.Close()
	var doc struct {
		Devices []struct {
			ID       string `json:"id"`
			Hostname string `json:"hostname"`
			SOS      string `json:"sos"`
			Events   []struct {
				Type, State, Body string
			} `json:"provisioning_events"`
		} `json:"devices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("list devices: %v", err)
	}
	out := map[string]liveDevice{}
	for _, d := range doc.Devices {
		l := liveDevice{ID: d.ID, SOS: d.SOS}
		for _, e := range d.Events { // newest first
			if strings.HasPrefix(e.Type, "user.") { // user.<code>, as on the service
				l.states = append(l.states, [2]string{e.State, e.Body})
			}
		}
		out[d.Hostname] = l
	}
	return out
}

// deleteDevice deletes a device through the API.
func (s *sim) deleteDevice(t *testing.T, id string) {
	t.Helper()
	req, _ := http.NewRequest("DELETE", s.url+"/metal/v1/devices/"+id, nil)
	req.Header.Set("X-Auth-Token", s.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("delete device %s: %v", id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete device %s: HTTP %d", id, resp.StatusCode)
	}
}

// registerKey registers an SSH key in the project through the API's
// ssh-keys route, as a user does before asking for a console.
func (s *sim) registerKey(t *testing.T, line string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"label": "boot-test", "key": line})
	req, _ := http.NewRequest("POST", s.url+"/metal/v1/projects/"+s.proj+"/ssh-keys", bytes.NewReader(body))
	req.Header.Set("X-Auth-Token", s.tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("register ssh key: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register ssh key: HTTP %d, want 201", resp.StatusCode)
	}
}
