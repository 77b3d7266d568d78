package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// runCLIIn is runCLI with stdin.
func runCLIIn(t *testing.T, vars map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{
		In:     strings.NewReader(stdin),
		Out:    &out,
		Err:    &errb,
		Getenv: func(k string) string { return vars[k] },
	}
	code := Run(context.Background(), args, env)
	return out.String(), errb.String(), code
}

// writeFleet writes body to fleet.yml in a fresh directory.
func writeFleet(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fleet.yml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const smallFleet = `apiVersion: lkfleet/v1
fleet: small
project: 6d1f7b0e-8a44-4c3e-9f1b-2b7c5a9e0d11
images:
  sshd:
    base_url: http://127.0.0.1:1/images
    cmdline: console=ttyS1
groups:
  - name: web
    image: sshd
    count: 2
    zones: [ams1, ewr1]
    machine: baremetal_0
  - name: db
    image: sshd
    count: 1
    zone: ams1
    machine: baremetal_0
`

func TestBadOutputHasOneWordingForEveryCommand(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{"plan", "want text or json"},
		{"status", "want text, wide or json"},
		{"apply", "want auto, tty, plain or json"},
		{"destroy", "want auto, tty, plain or json"},
		{"push", "want auto, tty, plain or json"},
	} {
		_, errs, code := runCLI(t, nil, tc.cmd, "-o", "yaml", "-f", "missing.yml")
		want := fmt.Sprintf(`Error: -o/--output "yaml" is not an output of lkfleet %s; %s`, tc.cmd, tc.want)
		if code != ExitError || !strings.HasPrefix(errs, want+"\n") {
			t.Errorf("%s -o yaml: code %d, stderr %q; want it to start with %q", tc.cmd, code, errs, want)
		}
		// Flags are refused before the fleet file is even read.
		if strings.Contains(errs, "missing.yml") {
			t.Errorf("%s -o yaml read the fleet file: %q", tc.cmd, errs)
		}
	}
}

func TestInvalidNumbersAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"apply", "--parallelism", "0"}, "--parallelism must be at least 1, got 0"},
		{[]string{"destroy", "--parallelism", "-5"}, "--parallelism must be at least 1, got -5"},
		{[]string{"apply", "--timeout", "-1s"}, "--timeout must not be negative (0: no limit), got -1s"},
		{[]string{"apply", "--failed-retries", "-1"}, "--failed-retries must not be negative (0: never retry), got -1"},
		{[]string{"apply", "--poll-interval", "0s"}, "--poll-interval must be positive, got 0s"},
		{[]string{"plan", "--rate", "-2"}, "--rate must not be negative"},
		{[]string{"destroy", "--lock-timeout", "-1m"}, "--lock-timeout must not be negative (0: exit 1 at once when the fleet is locked), got -1m0s"},
		{[]string{"apply", "--wait", "ready"}, `--wait "ready" is not a wait mode; want active, booted or none`},
	} {
		_, errs, code := runCLI(t, nil, append(tc.args, "-f", "missing.yml")...)
		if code != ExitError || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "--help") {
			t.Errorf("lkfleet %s: code %d, stderr %q; want %q and a pointer to --help", strings.Join(tc.args, " "), code, errs, tc.want)
		}
		if strings.Contains(errs, "missing.yml") {
			t.Errorf("lkfleet %s read the fleet file before checking flags: %q", strings.Join(tc.args, " "), errs)
		}
	}
}

func TestArgumentErrorsAreLkfleetsOwnWithUsage(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want, use string
	}{
		{[]string{"console"}, "lkfleet console needs an argument: HOSTNAME|SLOT", "Usage: lkfleet console HOSTNAME|SLOT [flags]"},
		{[]string{"console", "a", "b"}, `lkfleet console takes one argument, HOSTNAME|SLOT; got 2 (a b)`, "Usage: lkfleet console HOSTNAME|SLOT [flags]"},
		{[]string{"plan", "extra"}, `lkfleet plan takes no arguments, got "extra"`, "Usage: lkfleet plan [flags]"},
		{[]string{"status", "lab.yml"}, `lkfleet status takes no arguments, got "lab.yml"; did you mean -f lab.yml?`, "Usage: lkfleet status [flags]"},
		{[]string{"apply", "a.plan", "b.plan"}, "lkfleet apply takes at most one argument, PLANFILE; got 2 (a.plan b.plan)", "Usage: lkfleet apply [PLANFILE] [flags]"},
		{[]string{"completion"}, "lkfleet completion needs an argument: bash|zsh|fish|powershell", "Usage: lkfleet completion bash|zsh|fish|powershell"},
	} {
		_, errs, code := runCLI(t, nil, tc.args...)
		if code != ExitError || !strings.HasPrefix(errs, "Error: "+tc.want+"\n"+tc.use) {
			t.Errorf("lkfleet %s: code %d, stderr %q; want %q then %q", strings.Join(tc.args, " "), code, errs, tc.want, tc.use)
		}
		for _, raw := range []string{"arg(s)", "unknown command"} {
			if strings.Contains(errs, raw) {
				t.Errorf("lkfleet %s: cobra's raw message %q: %q", strings.Join(tc.args, " "), raw, errs)
			}
		}
	}
}

func TestVersionFlag(t *testing.T) {
	out, errs, code := runCLI(t, nil, "--version")
	want, _, _ := runCLI(t, nil, "version")
	if code != 0 || out != want || errs != "" {
		t.Fatalf("--version: code %d, out %q (want %q), err %q", code, out, want, errs)
	}
}

func TestFleetFromStdin(t *testing.T) {
	out, errs, code := runCLIIn(t, nil, smallFleet, "validate", "-f", "-")
	if code != 0 || out != "<stdin>: ok — 5 devices in 2 groups, 2 zones\n" {
		t.Fatalf("validate -f -: code %d, out %q, err %q", code, out, errs)
	}
	_, errs, code = runCLIIn(t, nil, "apiVersion: lkfleet/v1\nfleet: Bad Name\n", "validate", "-f", "-")
	if code != ExitError || !strings.HasPrefix(errs, "<stdin>:") {
		t.Fatalf("problems in stdin should name <stdin>: code %d, err %q", code, errs)
	}
}

// TestPlanFleetFromStdin covers the commands that read the fleet twice
// (to load it and to fingerprint it): stdin is read once.
func TestPlanFleetFromStdin(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	body := strings.ReplaceAll(fmt.Sprintf(e2eFleet, "v1", 1), "IMAGES", e.images)
	out, errs, code := runCLIIn(t, e.vars, body, "plan", "-f", "-")
	if code != 0 || !strings.Contains(out, "2 to add") {
		t.Fatalf("plan -f -: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

func TestTwoYAMLDocumentsGiveOneMessage(t *testing.T) {
	// The first document lacks groups; the second has them. Only the
	// split is reported, never "groups: missing" as well.
	p := writeFleet(t, "apiVersion: lkfleet/v1\nfleet: lab\nproject: 6d1f7b0e-8a44-4c3e-9f1b-2b7c5a9e0d11\n---\ngroups: []\n")
	_, errs, code := runCLI(t, nil, "validate", "-f", p)
	want := p + ":5:1: a fleet file holds one YAML document; remove the second one\n"
	if code != ExitError || errs != want {
		t.Fatalf("code %d, stderr %q; want exactly %q", code, errs, want)
	}
}

func TestTopLevelXKeysHoldAnchors(t *testing.T) {
	p := writeFleet(t, `apiVersion: lkfleet/v1
fleet: lab
project: 6d1f7b0e-8a44-4c3e-9f1b-2b7c5a9e0d11
x-machine: &small
  image: sshd
  machine: baremetal_0
images:
  sshd:
    base_url: http://127.0.0.1:1/images
    cmdline: console=ttyS1
groups:
  - <<: *small
    name: web
    count: 2
    zone: ams1
`)
	out, errs, code := runCLI(t, nil, "validate", "-f", p)
	if code != 0 || !strings.Contains(out, "ok — 2 devices in 1 group") {
		t.Fatalf("x- key with an anchor: code %d, out %q, err %q", code, out, errs)
	}
	// Only the top level is open: elsewhere x- keys are still typos.
	p = writeFleet(t, strings.Replace(smallFleet, "    count: 2\n", "    count: 2\n    x-note: hi\n", 1))
	if _, errs, code := runCLI(t, nil, "validate", "-f", p); code != ExitError || !strings.Contains(errs, "x-note: unknown key") {
		t.Fatalf("x- key in a group: code %d, err %q", code, errs)
	}
}
