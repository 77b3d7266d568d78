package packetsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

const (
	testToken   = "test-token"
	testProject = "2f0b3d8e-4d5c-4a8b-9c1e-3a7f6b2d1e90"
)

// startSim serves a simulator with an images directory holding one good
// image ("good": kernel, initrd, cmdline, and a script "good.ipxe").
func startSim(t *testing.T, cfg packetsim.Config) *packetsim.Server {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.Project == "" {
		cfg.Project = testProject
	}
	if cfg.ImagesDir == "" {
		cfg.ImagesDir = t.TempDir()
		for name, body := range map[string]string{
			"good-kernel": "KERNEL", "good-initrd.img": "INITRD", "good-cmdline": "console=ttyS1",
		} {
			if err := os.WriteFile(filepath.Join(cfg.ImagesDir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv, err := packetsim.Start(cfg)
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	// The script served at /images/good.ipxe needs the server's address.
	writeFile(t, filepath.Join(cfg.ImagesDir, "good.ipxe"), goodScript(srv))
	return srv
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goodScript boots the "good" image from the server's /images/.
func goodScript(srv *packetsim.Server) string {
	return "#!ipxe\n# LinuxKit\ndhcp\nset base " + srv.URL + "/images\n" +
		"kernel ${base}/good-kernel console=ttyS1 lkfleet.slot=web/ams1/1\n" +
		"initrd --name initrd ${base}/good-initrd.img\nboot\n"
}

// waitFor polls cond every few milliseconds until it holds or the
// deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// apiDo sends one raw API request with the test token and decodes a JSON
// answer into out (if non-nil).
func apiDo(t *testing.T, srv *packetsim.Server, method, path, body string, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp
}

// device is the part of a device document the tests read.
type device struct {
	ID                 string   `json:"id"`
	Hostname           string   `json:"hostname"`
	State              string   `json:"state"`
	Tags               []string `json:"tags"`
	ProvisioningEvents []struct {
		Type      string `json:"type"`
		State     string `json:"state"`
		Body      string `json:"body"`
		CreatedAt string `json:"created_at"`
	} `json:"provisioning_events"`
}

// userState is the newest user state event's state and message ("" if
// none): events of type user.<code>, as on the service.
func (d device) userState() (string, string) {
	for _, e := range d.ProvisioningEvents { // newest first
		if strings.HasPrefix(e.Type, "user.") {
			return e.State, e.Body
		}
	}
	return "", ""
}

func getDevice(t *testing.T, srv *packetsim.Server, id string) (device, int) {
	t.Helper()
	var d device
	resp := apiDo(t, srv, "GET", "/metal/v1/devices/"+id, "", &d)
	return d, resp.StatusCode
}

// createRaw creates a device from a JSON body and returns it.
func createRaw(t *testing.T, srv *packetsim.Server, body string) device {
	t.Helper()
	var d device
	resp := apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/devices", body, &d)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create %s: status %d", body, resp.StatusCode)
	}
	return d
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
