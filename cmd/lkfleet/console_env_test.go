package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

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
