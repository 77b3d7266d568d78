package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

const twoImageFleet = `apiVersion: lkfleet/v1
fleet: e2e
project: ${PACKET_PROJECT_ID}
images:
  old:
    name: sshd
    base_url: IMAGES/v1
  new:
    name: sshd
    base_url: IMAGES/v2
groups:
  - name: web
    image: old
    count: 1
    zones: [ams1]
  - name: db
    image: new
    count: 1
    zones: [ams1]
`

// TestStatusCmdlineFailureAffectsOnlyItsImage: when one image's cmdline
// cannot be fetched, only its devices show an unknown image (not
// "(outdated)"), a warning names the URL on stderr, the exit code is 0.
func TestStatusCmdlineFailureAffectsOnlyItsImage(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(twoImageFleet)
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms")
	if err := os.Remove(filepath.Join(e.dir, "images", "v2", "sshd-cmdline")); err != nil {
		t.Fatal(err)
	}
	out, errs, code := e.run("status", "-f", e.fleet)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "Warning: image new: ") || !strings.Contains(errs, e.images+"/v2/sshd-cmdline") {
		t.Errorf("stderr does not warn about the image and its URL: %q", errs)
	}
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "web/"):
			if !strings.Contains(l, " old ") {
				t.Errorf("the device of the image that rendered lost its image: %q", l)
			}
		case strings.HasPrefix(l, "db/"):
			if !strings.Contains(l, "(unknown)") || strings.Contains(l, "outdated") {
				t.Errorf("the device of the image that did not render: %q", l)
			}
		}
	}
}

// TestStatusWide adds the release and boot reason columns.
func TestStatusWide(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(twoImageFleet)
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms", "--wait", "booted")
	out := e.mustRun(0, "status", "-f", e.fleet, "-o", "wide")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "RELEASE  BOOT REASON") {
		t.Fatalf("status -o wide:\n%s", out)
	}
	if !strings.Contains(lines[1], "booted "+e.images+"/v") {
		t.Errorf("no boot reason in %q", lines[1])
	}
}

// cancelAfter cancels once it has been written n tables.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Count(c.buf.String(), "HOSTNAME") >= c.n {
		c.cancel()
	}
	return len(p), nil
}

// TestStatusWatch: --watch prints one table per refresh, each after one
// device listing; on a terminal it redraws in place; Ctrl-C ends it at
// once with exit 0.
func TestStatusWatch(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(twoImageFleet)
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms")
	for _, tty := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &cancelAfter{n: 3, cancel: cancel}
		before := e.srv.Sim.Stats().Requests["GET /projects/{id}/devices"]
		env := &Env{In: strings.NewReader(""), Out: w, Err: &bytes.Buffer{}, OutTTY: tty,
			Getenv: func(k string) string { return e.vars[k] }}
		code := Run(ctx, []string{"status", "-f", e.fleet, "--watch", "--interval", "5ms"}, env)
		cancel()
		out := w.buf.String()
		if code != 0 {
			t.Fatalf("tty %v: exit %d\n%s", tty, code, out)
		}
		if n := strings.Count(out, "Every 5ms: fleet e2e at "); n != 3 {
			t.Errorf("tty %v: %d refreshes, want 3:\n%s", tty, n, out)
		}
		if redraws := strings.Count(out, "\x1b[H"); (redraws == 3) != tty {
			t.Errorf("tty %v: %d redraws in place:\n%q", tty, redraws, out)
		}
		// One listing to start (the fleet's), then one per refresh.
		if n := e.srv.Sim.Stats().Requests["GET /projects/{id}/devices"] - before; n != 1+3 {
			t.Errorf("tty %v: %d device listings for 3 refreshes, want 4", tty, n)
		}
	}
}
