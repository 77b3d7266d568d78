package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

var renderVars = map[string]string{"PACKET_PROJECT_ID": "3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60"}

// renderFleet writes a fleet file whose image "sshd" fetches its cmdline
// from a local artifact server and whose image "arm" gives its own, and
// returns the file, the server URL and a counter of cmdline fetches.
func renderFleet(t *testing.T, cmdlineStatus int) (string, string, *atomic.Int32) {
	t.Helper()
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/img/sshd-cmdline" {
			http.NotFound(w, r)
			return
		}
		fetches.Add(1)
		if cmdlineStatus != http.StatusOK {
			w.WriteHeader(cmdlineStatus)
			return
		}
		_, _ = w.Write([]byte("console=tty0 page_poison=1\n"))
	}))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "lab.yml")
	content := `apiVersion: lkfleet/v1
fleet: lab
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: ` + srv.URL + `/img
  arm:
    base_url: ` + srv.URL + `/img
    name: sshd-arm
    arch: aarch64
    cmdline: console=ttyAMA0
groups:
  - name: web
    image: sshd
    count: 2
    zone: ams1
    kernel_args: "lkfleet.slot={{.Slot}}"
  - name: arm
    image: arm
    count: 1
    zone: ewr1
    machine: baremetal_2a
`
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, srv.URL, &fetches
}

func webScript(base string, index string) string {
	return "#!ipxe\ndhcp\nset base-url " + base + "/img\n" +
		"kernel ${base-url}/sshd-kernel ip=dhcp nomodeset ro serial console=ttyS1,115200 console=tty0 page_poison=1 lkfleet.slot=web/ams1/" + index + "\n" +
		"initrd ${base-url}/sshd-initrd.img\nboot\n"
}

func armScript(base string) string {
	return "#!ipxe\ndhcp\nset base-url " + base + "/img\n" +
		"initrd --name initrd ${base-url}/sshd-arm-initrd.img\n" +
		"kernel ${base-url}/sshd-arm-kernel initrd=initrd root=/dev/ram0 ip=dhcp nomodeset ro console=ttyAMA0\nboot\n"
}

func TestRenderOneDevice(t *testing.T) {
	file, base, fetches := renderFleet(t, http.StatusOK)
	for _, name := range []string{"web-ams1-2", "web/ams1/2"} {
		out, errs, code := runCLI(t, renderVars, "render", "-f", file, "--device", name)
		if code != 0 || errs != "" {
			t.Fatalf("render --device %s: code %d, stderr %q", name, code, errs)
		}
		if want := webScript(base, "2"); out != want {
			t.Errorf("render --device %s:\n%s\nwant:\n%s", name, out, want)
		}
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("cmdline fetched %d times for two runs, want 2", n)
	}
}

func TestRenderDeviceFetchesOnlyItsImage(t *testing.T) {
	file, base, fetches := renderFleet(t, http.StatusNotFound)
	out, errs, code := runCLI(t, renderVars, "render", "-f", file, "--device", "arm-ewr1-1")
	if code != 0 || out != armScript(base) {
		t.Fatalf("code %d, stderr %q, out:\n%s", code, errs, out)
	}
	if n := fetches.Load(); n != 0 {
		t.Errorf("a cmdline the device does not need was fetched %d times", n)
	}
}

func TestRenderAllWithHeaders(t *testing.T) {
	file, base, fetches := renderFleet(t, http.StatusOK)
	out, errs, code := runCLI(t, renderVars, "render", "-f", file)
	if code != 0 || errs != "" {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	want := "# arm-ewr1-1 (arm/ewr1/1)\n" + armScript(base) +
		"\n# web-ams1-1 (web/ams1/1)\n" + webScript(base, "1") +
		"\n# web-ams1-2 (web/ams1/2)\n" + webScript(base, "2")
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("cmdline fetched %d times, want once per image", n)
	}
}

func TestRenderOut(t *testing.T) {
	file, base, _ := renderFleet(t, http.StatusOK)
	dir := filepath.Join(t.TempDir(), "boot")
	out, errs, code := runCLI(t, renderVars, "render", "-f", file, "--out", dir)
	if code != 0 || errs != "" || out != "wrote 3 scripts to "+dir+"\n" {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errs)
	}
	for name, want := range map[string]string{
		"web-ams1-1.ipxe": webScript(base, "1"),
		"web-ams1-2.ipxe": webScript(base, "2"),
		"arm-ewr1-1.ipxe": armScript(base),
	} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %v\n%s\nwant:\n%s", name, err, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("%d files in %s, want 3", len(entries), dir)
	}
}

func TestRenderUnknownDevice(t *testing.T) {
	file, _, _ := renderFleet(t, http.StatusOK)
	out, errs, code := runCLI(t, renderVars, "render", "-f", file, "--device", "web-ams1-9")
	want := "Error: render: no device \"web-ams1-9\" in fleet \"lab\" (devices: arm-ewr1-1, web-ams1-1, web-ams1-2)\n"
	if code != ExitError || out != "" || errs != want {
		t.Errorf("code %d, stdout %q, stderr %q; want stderr %q", code, out, errs, want)
	}
}

func TestRenderCmdlineFetchFailureNamesURL(t *testing.T) {
	file, base, _ := renderFleet(t, http.StatusInternalServerError)
	out, errs, code := runCLI(t, renderVars, "render", "-f", file)
	if code != ExitError || out != "" {
		t.Fatalf("code %d, stdout %q", code, out)
	}
	if !strings.Contains(errs, "GET "+base+"/img/sshd-cmdline: 500 Internal Server Error") {
		t.Errorf("stderr does not name the URL and status: %q", errs)
	}
}

func TestRenderInvalidFleet(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(file, []byte("apiVersion: lkfleet/v1\nfleet: lab\ngroups: [{name: web, image: nope, count: 1}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, renderVars, "render", "-f", file)
	if code != ExitError || out != "" || !strings.Contains(errs, `unknown image "nope"`) {
		t.Errorf("code %d, stdout %q, stderr %q", code, out, errs)
	}
}
