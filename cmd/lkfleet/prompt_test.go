package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// promptWatch is a stdout that closes shown once the prompt is written.
type promptWatch struct {
	lockedBuffer
	shown chan struct{}
	once  bool
}

func (p *promptWatch) Write(b []byte) (int, error) {
	n, err := p.lockedBuffer.Write(b)
	if !p.once && strings.Contains(p.lockedBuffer.String(), "Enter a value: ") {
		p.once = true
		close(p.shown)
	}
	return n, err
}

// runAtPrompt runs lkfleet args on a terminal whose input never answers,
// and presses Ctrl-C (cancels the context) once the prompt is shown.
func runAtPrompt(t *testing.T, e *e2e, args ...string) (string, string, int) {
	t.Helper()
	in, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	out, errs := &promptWatch{shown: make(chan struct{})}, &lockedBuffer{}
	env := &Env{In: in, Out: out, Err: errs, InTTY: true, Getenv: func(k string) string { return e.vars[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- Run(ctx, args, env) }()
	select {
	case <-out.shown:
	case code := <-done:
		t.Fatalf("lkfleet %s ended (%d) before the prompt:\n%s\n%s", strings.Join(args, " "), code, out.String(), errs)
	}
	cancel()
	// The command must return on its own, without an answer.
	code := <-done
	return out.String(), errs.String(), code
}

func TestCtrlCAtThePromptCancelsAtOnce(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	_, errs, code := runAtPrompt(t, e, "apply", "-f", e.fleet)
	if code != ExitInterrupted || !strings.Contains(errs, "apply cancelled at the prompt (interrupted); nothing was changed") {
		t.Fatalf("apply: code %d, stderr %q; want 130 and the cancel message", code, errs)
	}
	if devs := e.status(); len(devs) != 0 {
		t.Fatalf("devices made after Ctrl-C at the prompt: %+v", devs)
	}

	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms")
	_, errs, code = runAtPrompt(t, e, "destroy", "-f", e.fleet)
	if code != ExitInterrupted || !strings.Contains(errs, "destroy cancelled at the prompt") {
		t.Fatalf("destroy: code %d, stderr %q; want 130", code, errs)
	}
	if devs := e.status(); len(devs) != 2 {
		t.Fatalf("destroy cancelled at the prompt left %d devices, want 2", len(devs))
	}
}

func TestDestroyOnAnEmptyFleetSaysNothingToDestroy(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	out := e.mustRun(0, "destroy", "-f", e.fleet, "--auto-approve")
	want := fmt.Sprintf("Nothing to destroy: fleet \"e2e\" has no devices in project %s.\n", e.vars["PACKET_PROJECT_ID"])
	if out != want {
		t.Fatalf("destroy of an empty fleet printed %q, want %q", out, want)
	}
}

// TestDestroyReadsOnlyTheFleetsIdentity: a lab torn down by another job
// often lacks the variables the groups were made with. destroy needs only
// the fleet and project, so it deletes the fleet's devices, while plan
// still refuses the file.
func TestDestroyReadsOnlyTheFleetsIdentity(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms")
	e.write(strings.Replace(fmt.Sprintf(e2eFleet, "v1", 1), "count: 1", "count: ${LAB_COUNT}", 1))
	if _, errs, code := e.run("plan", "-f", e.fleet); code != ExitError || !strings.Contains(errs, "environment variable LAB_COUNT is not set") {
		t.Fatalf("plan with an unset group variable: exit %d, stderr %q; want 1 naming LAB_COUNT", code, errs)
	}
	e.mustRun(0, "destroy", "-f", e.fleet, "--auto-approve", "-o", "plain")
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	if devs := e.status(); len(devs) != 0 {
		t.Fatalf("destroy left %d devices, want 0", len(devs))
	}
	// A typo in the identity itself is still refused before any request.
	e.write("apiVersion: lkfleet/v1\nfleet: E2E\nproject: ${PACKET_PROJECT_ID}\n")
	if _, errs, code := e.run("destroy", "-f", e.fleet, "--auto-approve"); code != ExitError || !strings.Contains(errs, "fleet name") {
		t.Fatalf("destroy with a bad fleet name: exit %d, stderr %q; want 1", code, errs)
	}
}
