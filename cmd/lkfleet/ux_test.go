package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestDumbTerminalGetsPlainLines: on TERM=dumb the default output is the
// plain lines, without cursor movement or colours.
func TestDumbTerminalGetsPlainLines(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	vars := map[string]string{"TERM": "dumb"}
	for k, v := range e.vars {
		vars[k] = v
	}
	var out, errs bytes.Buffer
	env := &Env{In: strings.NewReader(""), Out: &out, Err: &errs, OutTTY: true,
		Getenv: func(k string) string { return vars[k] }}
	code := Run(context.Background(), []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "5ms"}, env)
	if code != 0 {
		t.Fatalf("apply: code %d\n%s\n%s", code, out.String(), errs.String())
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Fatalf("escape sequences on TERM=dumb:\n%q", out.String())
	}
	if !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  wave 1  \+ web-ams1-1 \(web/ams1/1\)  created `).MatchString(out.String()) {
		t.Fatalf("no plain progress lines on TERM=dumb:\n%s", out.String())
	}
}

// TestStatusAgesInWholeSeconds: the AGE column says "0s", not "0.0s".
func TestStatusAgesInWholeSeconds(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms")
	out := e.mustRun(0, "status", "-f", e.fleet)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 3 {
		t.Fatalf("status:\n%s", out)
	}
	for _, r := range rows[1:] {
		f := strings.Fields(r)
		if age := f[len(f)-1]; !regexp.MustCompile(`^\d+s$`).MatchString(age) {
			t.Errorf("age %q in %q, want whole seconds like 13s", age, r)
		}
	}
}

// TestSkipPreflightSaysCmdlinesAreFetched: --skip-preflight leaves the
// artifacts unchecked, but the cmdline is part of the script, so it is
// still fetched; the note says so.
func TestSkipPreflightSaysCmdlinesAreFetched(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	_, errs, code := e.run("plan", "-f", e.fleet, "--skip-preflight")
	if code != 0 || !strings.Contains(errs, "The cmdline of 1 image was still fetched") {
		t.Fatalf("plan --skip-preflight: code %d, stderr %q", code, errs)
	}
	out, _, _ := runCLI(t, nil, "plan", "--help")
	if !strings.Contains(out, "cmdlines the fleet file does not give are still fetched") {
		t.Errorf("plan --help does not say --skip-preflight still fetches cmdlines:\n%s", out)
	}
}

// TestHaltPrintsEachFailureOnce: a device that ends failed is named once
// in the progress lines (not as a state, a device failure and a change
// failure), and once in the summary.
func TestHaltPrintsEachFailureOnce(t *testing.T) {
	e := newE2E(t, packetsim.Config{FailProvisionRate: 1})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	out := e.mustRun(ExitError, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms", "--failed-retries", "0")
	ids := regexp.MustCompile(`failed ([0-9a-f-]{36}): `).FindAllStringSubmatch(out, -1)
	if len(ids) == 0 {
		t.Fatalf("no failed device in:\n%s", out)
	}
	for _, m := range ids {
		var progress, summary int
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, m[1]) || !strings.Contains(l, "failed") {
				continue
			}
			if regexp.MustCompile(`^\d{4}-`).MatchString(l) {
				progress++
			} else {
				summary++
			}
		}
		if progress != 1 || summary != 1 {
			t.Errorf("device %s: %d progress lines and %d summary lines say it failed, want 1 and 1:\n%s", m[1], progress, summary, out)
		}
	}
}
