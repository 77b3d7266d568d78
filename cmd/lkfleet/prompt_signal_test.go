//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// openPty opens a pseudo-terminal and returns its terminal end and its
// master end.
func openPty(t *testing.T) (term, master *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	return term, master
}

// TestSIGINTAtThePrompt runs lkfleet as a real process on a terminal and
// sends it SIGINT while it waits at the confirmation prompt: it exits 130
// without an answer, and nothing was created.
func TestSIGINTAtThePrompt(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	term, master := openPty(t)
	cmd := exec.Command(exe, "apply", "-f", e.fleet)
	cmd.Env = append(os.Environ(), asLkfleet+"=1")
	for k, v := range e.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term, term, term
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Read what the terminal shows until the prompt is there.
	var shown strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(shown.String(), "Enter a value: ") {
		n, err := master.Read(buf)
		shown.Write(buf[:n])
		if err != nil {
			t.Fatalf("no prompt (%v):\n%s", err, shown.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second): // a bound on a hang, not a wait
		cmd.Process.Kill()
		t.Fatalf("lkfleet still waits at the prompt after SIGINT:\n%s", shown.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != ExitInterrupted {
		t.Fatalf("exit %d after SIGINT at the prompt, want 130", code)
	}
	if devs := e.status(); len(devs) != 0 {
		t.Fatalf("devices created after SIGINT at the prompt: %+v", devs)
	}
}
