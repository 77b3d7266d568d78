package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

func TestConsoleAddressIsChecked(t *testing.T) {
	const id = "3f782963-1da0-4787-a4b5-77a4d41bdf07"
	for _, tt := range []struct{ sos, facility, want string }{
		{"", "ams1", id + "@sos.ams1.platformequinix.com"},
		{"sos.ny5.platformequinix.com", "", id + "@sos.ny5.platformequinix.com"},
		{"abc@sos.ny5.platformequinix.com", "", "abc@sos.ny5.platformequinix.com"},
		{"-oProxyCommand=touch /tmp/pwned", "", `refusing the serial console address "` + id + `@-oProxyCommand=touch /tmp/pwned"`},
		{"-oProxyCommand=sh@x", "", `refusing the serial console address "-oProxyCommand=sh@x"`},
		{"sos.ny5.example.com -oLocalCommand=x", "", "refusing"},
		{"u@h;reboot", "", "refusing"},
		{"", "ams1 -F/dev/null", "refusing"},
		{"u@-h", "", "refusing"},
	} {
		got, err := consoleAddress(planner.Live{ID: id, SOS: tt.sos, Facility: tt.facility})
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tt.want) || (err == nil) != !strings.Contains(tt.want, "refusing") {
			t.Errorf("sos %q facility %q: got %q, want %q", tt.sos, tt.facility, got, tt.want)
		}
	}
}

// TestConsoleRunsSSHWithoutTheToken runs console against the simulator
// with a stand-in ssh that records its arguments and environment.
func TestConsoleRunsSSHWithoutTheToken(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain")
	dev := e.status()[0]

	bin := t.TempDir()
	record := filepath.Join(bin, "record")
	script := "#!/bin/sh\n{ for a in \"$@\"; do echo \"arg=$a\"; done; env; } > " + record + "\n"
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	path := bin + string(os.PathListSeparator) + os.Getenv("PATH")
	t.Setenv("PATH", path) // exec finds ssh through the process's PATH
	e.vars["PATH"] = path
	e.vars["HOME"] = "/home/operator"
	e.vars["SSH_AUTH_SOCK"] = "/tmp/agent.sock"
	e.vars["AWS_SECRET_ACCESS_KEY"] = "unrelated-secret"

	if out := e.mustRun(0, "console", "-f", e.fleet, dev.Hostname, "--print"); out != "ssh -- "+dev.ID+"@sos.ams1.platformequinix.com\n" {
		t.Errorf("console --print: %q", out)
	}
	e.mustRun(0, "console", "-f", e.fleet, dev.Slot)
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	rec := string(got)
	if !strings.HasPrefix(rec, "arg=--\narg="+dev.ID+"@sos.ams1.platformequinix.com\n") {
		t.Errorf("ssh arguments:\n%s", rec)
	}
	for _, want := range []string{"HOME=/home/operator\n", "SSH_AUTH_SOCK=/tmp/agent.sock\n"} {
		if !strings.Contains(rec, want) {
			t.Errorf("ssh environment lacks %q:\n%s", want, rec)
		}
	}
	for _, leak := range []string{e2eToken, "PACKET_", "unrelated-secret"} {
		if strings.Contains(rec, leak) {
			t.Errorf("ssh environment carries %q:\n%s", leak, rec)
		}
	}
}
