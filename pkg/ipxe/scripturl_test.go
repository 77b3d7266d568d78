package ipxe_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// rendered returns n rendered devices whose scripts are served from
// base/<hostname>.ipxe.
func rendered(t *testing.T, base string, n int) []spec.Device {
	t.Helper()
	var devs []spec.Device
	for i := 1; i <= n; i++ {
		d := device(i, "baremetal_0", sshd)
		d.IPXEScriptURL = base + "/" + d.Hostname + ".ipxe"
		devs = append(devs, d)
	}
	out, err := ipxe.Render(devs, map[string]string{"sshd": "console=tty0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckScriptURLsMatch(t *testing.T) {
	a := newArtifacts(t, map[string]string{})
	devs := rendered(t, a.URL+"/s", 2)
	for _, d := range devs {
		a.files["/s/"+d.Hostname+".ipxe"] = d.Script
	}
	// A device delivered as userdata is not checked.
	devs = append(devs, device(9, "baremetal_0", sshd))
	if err := ipxe.CheckScriptURLs(context.Background(), a.Client(), devs); err != nil {
		t.Fatal(err)
	}
	if n := a.count("GET /s/web-ams1-1.ipxe"); n != 1 {
		t.Errorf("script fetched %d times, want 1", n)
	}
}

func TestCheckScriptURLsMismatchShowsDiff(t *testing.T) {
	a := newArtifacts(t, map[string]string{})
	devs := rendered(t, a.URL+"/s", 2)
	a.files["/s/web-ams1-1.ipxe"] = devs[0].Script
	a.files["/s/web-ams1-2.ipxe"] = strings.Replace(devs[1].Script, "console=tty0", "console=tty1", 1)

	err := ipxe.CheckScriptURLs(context.Background(), a.Client(), devs)
	var mm *ipxe.ScriptMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("want *ScriptMismatchError, got %v", err)
	}
	u := a.URL + "/s/web-ams1-2.ipxe"
	if mm.URL != u || len(mm.Hostnames) != 1 || mm.Hostnames[0] != "web-ams1-2" {
		t.Errorf("mismatch names %s %v", mm.URL, mm.Hostnames)
	}
	wantDiff := "--- served " + u + "\n+++ rendered\n@@ -1,6 +1,6 @@\n #!ipxe\n dhcp\n set base-url https://img.example.com/2026-11-25\n" +
		"-kernel ${base-url}/sshd-kernel ip=dhcp nomodeset ro serial console=ttyS1,115200 console=tty1\n" +
		"+kernel ${base-url}/sshd-kernel ip=dhcp nomodeset ro serial console=ttyS1,115200 console=tty0\n" +
		" initrd ${base-url}/sshd-initrd.img\n boot\n"
	if mm.Diff != wantDiff {
		t.Errorf("diff:\n%s\nwant:\n%s", mm.Diff, wantDiff)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "check script URLs: 1 of 2 URLs failed:\n  GET "+u+": served script differs from the one rendered for web-ams1-2") ||
		!strings.Contains(msg, "\n  -kernel") {
		t.Errorf("message:\n%s", msg)
	}
}

func TestCheckScriptURLsUnreachable(t *testing.T) {
	a := newArtifacts(t, map[string]string{})
	dead := deadURL(t)
	devs := rendered(t, a.URL+"/s", 1) // not served: 404
	devs = append(devs, rendered(t, dead, 2)[1])
	err := ipxe.CheckScriptURLs(context.Background(), a.Client(), devs)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"GET " + a.URL + "/s/web-ams1-1.ipxe: 404 Not Found", "GET " + dead + "/web-ams1-2.ipxe: ", "connection refused"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

func TestCheckScriptURLsSharedURLMustRenderSameScript(t *testing.T) {
	a := newArtifacts(t, map[string]string{})
	devs := rendered(t, a.URL, 2)
	devs[1].IPXEScriptURL = devs[0].IPXEScriptURL
	devs[1].Script += "# differs\n"
	err := ipxe.CheckScriptURLs(context.Background(), a.Client(), devs)
	if n := a.count("GET /web-ams1-1.ipxe"); n != 0 {
		t.Errorf("conflicting URL was fetched %d times", n)
	}
	if err == nil || !strings.Contains(err.Error(), "script URL "+a.URL+"/web-ams1-1.ipxe is shared by web-ams1-1 and \"web-ams1-2\" (slot web/ams1/2), whose rendered scripts differ") {
		t.Fatalf("got %v", err)
	}
}

func TestDiff(t *testing.T) {
	tests := []struct{ name, a, b, want string }{
		{"equal", "a\n", "a\n", ""},
		{"add at end", "a\nb\n", "a\nb\nc\n", "--- A\n+++ B\n@@ -1,2 +1,3 @@\n a\n b\n+c\n"},
		{"from empty", "", "x\n", "--- A\n+++ B\n@@ -0,0 +1 @@\n+x\n"},
		{"missing final newline", "a\nb", "a\nb\n", "--- A\n+++ B\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"},
		{
			"two hunks",
			"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n",
			"1\nX\n3\n4\n5\n6\n7\n8\n9\n10\nY\n12\n",
			"--- A\n+++ B\n@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n 4\n 5\n@@ -8,5 +8,5 @@\n 8\n 9\n 10\n-11\n+Y\n 12\n",
		},
		{
			"close changes share a hunk",
			"1\n2\n3\n4\n5\n6\n7\n8\n",
			"1\nX\n3\n4\n5\n6\nY\n8\n",
			"--- A\n+++ B\n@@ -1,8 +1,8 @@\n 1\n-2\n+X\n 3\n 4\n 5\n 6\n-7\n+Y\n 8\n",
		},
		{"insert in middle", "a\nc\n", "a\nb\nc\n", "--- A\n+++ B\n@@ -1,2 +1,3 @@\n a\n+b\n c\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ipxe.Diff("A", "B", tt.a, tt.b); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestWriteScripts(t *testing.T) {
	devs := rendered(t, "http://127.0.0.1:1", 2)
	dir := filepath.Join(t.TempDir(), "out", "scripts")
	paths, err := ipxe.WriteScripts(dir, devs)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[1]) != "web-ams1-2.ipxe" {
		t.Fatalf("paths %v", paths)
	}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != devs[i].Script {
			t.Errorf("%s holds %q, want %q", p, b, devs[i].Script)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries, want 2 (no temporary files left)", len(entries))
	}

	unrendered := []spec.Device{device(1, "baremetal_0", sshd)}
	if _, err := ipxe.WriteScripts(dir, unrendered); err == nil || !strings.Contains(err.Error(), `"web-ams1-1" (slot web/ams1/1): not rendered`) {
		t.Errorf("writing an unrendered device: %v", err)
	}
	evil := devs[:1:1]
	evil[0].Hostname = "../x"
	if _, err := ipxe.WriteScripts(dir, evil); err == nil {
		t.Error("a hostname with a slash was written")
	}
}
