package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/internal/fileinput"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// runBounded runs lkfleet and fails the test if it has not returned
// within 20s: before bounded input, these commands blocked or ran out of
// memory.
func (e *e2e) runBounded(args ...string) (string, string, int) {
	e.t.Helper()
	type result struct {
		out, errs string
		code      int
	}
	done := make(chan result, 1)
	go func() {
		out, errs, code := runCLI(e.t, e.vars, args...)
		done <- result{out, errs, code}
	}()
	select {
	case r := <-done:
		return r.out, r.errs, r.code
	case <-time.After(20 * time.Second):
		e.t.Fatalf("lkfleet %s did not return within 20s", strings.Join(args, " "))
		return "", "", 0
	}
}

func TestBoundedInputFiles(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	fifo := filepath.Join(e.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	big := filepath.Join(e.dir, "big.ipxe")
	if f, err := os.Create(big); err != nil {
		t.Fatal(err)
	} else {
		f.Truncate(3 << 30) // sparse: 3 GiB that take no disk
		f.Close()
	}
	template := func(path string) {
		e.write(strings.Replace(fmt.Sprintf(e2eFleet, "v1", 1), "    count: 1\n", "    count: 1\n    ipxe_template: "+path+"\n", 1))
	}

	for _, tt := range []struct {
		name string
		args func() []string
		want string
	}{
		{"fleet file is a FIFO", func() []string { return []string{"validate", "-f", fifo} }, "read fleet file: " + fifo + ": not a regular file (a FIFO)"},
		{"fleet file is /dev/zero", func() []string { return []string{"plan", "-f", "/dev/zero"} }, "read fleet file: /dev/zero: not a regular file (a character device)"},
		{"template is /dev/zero", func() []string { template("/dev/zero"); return []string{"plan", "-f", e.fleet} }, "/dev/zero: not a regular file (a character device)"},
		{"template is a FIFO", func() []string { template(fifo); return []string{"validate", "-f", e.fleet} }, fifo + ": not a regular file (a FIFO)"},
		{"template is 3 GiB", func() []string { template(big); return []string{"plan", "-f", e.fleet} }, big + ": too large: 3.0 GiB, more than the 1.0 MiB allowed"},
		{"plan file is /dev/zero", func() []string {
			e.write(fmt.Sprintf(e2eFleet, "v1", 1))
			return []string{"apply", "-f", e.fleet, "--auto-approve", "/dev/zero"}
		}, "read plan: /dev/zero: not a regular file (a character device)"},
		{"plan file is a FIFO", func() []string { return []string{"apply", "-f", e.fleet, "--auto-approve", fifo} }, "read plan: " + fifo + ": not a regular file (a FIFO)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errs, code := e.runBounded(tt.args()...)
			if code != ExitError || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, want 1 with %q; stderr:\n%s", code, tt.want, errs)
			}
		})
	}
	if n := len(e.status()); n != 0 {
		t.Errorf("refused inputs made %d devices", n)
	}
}

// TestHugeRangeIsRefusedQuickly: {{range 1000000000}} in a hostname used
// to keep a CPU busy for a minute before anything was printed.
func TestHugeRangeIsRefusedQuickly(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(strings.Replace(fmt.Sprintf(e2eFleet, "v1", 1), "    count: 1\n", "    count: 1\n    hostname: 'web{{range 1000000000}}{{end}}-{{.Index}}'\n", 1))
	_, errs, code := e.runBounded("plan", "-f", e.fleet)
	if code != ExitError || !strings.Contains(errs, "{{range 1000000000}}: more than 1000 iterations in all") {
		t.Errorf("exit %d; stderr:\n%s", code, errs)
	}
}

// zeros reads as an endless run of zero bytes, like /dev/zero.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestBoundedStdinFleet: `-f -` reads standard input within the fleet
// file's limit too, and says so instead of reading on.
func TestBoundedStdinFleet(t *testing.T) {
	env := &Env{In: io.LimitReader(zeros{}, fileinput.MaxFleetFile+1)}
	_, err := readFleetFile(env, "-")
	if !errors.Is(err, fileinput.ErrTooLarge) || err.Error() != "standard input: too large: more than the 4.0 MiB allowed" {
		t.Fatalf("stdin over the limit: %v", err)
	}
	env = &Env{In: io.LimitReader(zeros{}, fileinput.MaxFleetFile)}
	if data, err := readFleetFile(env, "-"); err != nil || len(data) != fileinput.MaxFleetFile {
		t.Fatalf("stdin at the limit: %d bytes, %v", len(data), err)
	}
}
