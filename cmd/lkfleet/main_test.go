package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI runs lkfleet in-process with the given environment variables and
// returns stdout, stderr and the exit code.
func runCLI(t *testing.T, vars map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{
		In:     strings.NewReader(""),
		Out:    &out,
		Err:    &errb,
		Getenv: func(k string) string { return vars[k] },
	}
	code := Run(context.Background(), args, env)
	return out.String(), errb.String(), code
}

func TestVersion(t *testing.T) {
	out, _, code := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "lkfleet ") {
		t.Fatalf("version: code %d, out %q", code, out)
	}
}

func TestUnknownCommandPrintsOneErrorWithoutUsage(t *testing.T) {
	out, errs, code := runCLI(t, nil, "frobnicate")
	if code != ExitError {
		t.Fatalf("code = %d, want 1", code)
	}
	if out != "" || strings.Count(errs, "\n") != 1 || strings.Contains(errs, "Usage:") {
		t.Fatalf("want one error line and no usage; out %q err %q", out, errs)
	}
}

// TestAPIClientsRunOnOneProc: plan, apply, destroy and status run with
// GOMAXPROCS=1 (tuneProcs), flags and all; the simulator, push, render
// and anything unknown keep every processor.
func TestAPIClientsRunOnOneProc(t *testing.T) {
	for args, want := range map[string]bool{
		"apply -f fleet.yml --auto-approve": true,
		"plan --out p.plan":                 true,
		"destroy -f fleet.yml":              true,
		"status -o wide --watch":            true,
		"sim --listen 127.0.0.1:0":          false,
		"sim stop":                          false,
		"push sshd --from out":              false,
		"render -f fleet.yml --out dir":     false,
		"version":                           false,
		"":                                  false,
		"no-such-command":                   false,
	} {
		if got := runsOnOneProc(strings.Fields(args)); got != want {
			t.Errorf("lkfleet %s: on one processor %v, want %v", args, got, want)
		}
	}
}
