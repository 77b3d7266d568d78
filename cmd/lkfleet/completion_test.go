package main

import (
	"slices"
	"strings"
	"testing"
)

// complete asks lkfleet's hidden completion command, as a shell does, for
// the candidates of the last word and returns them without descriptions.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	out, errs, code := runCLI(t, nil, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %s: code %d, err %q", strings.Join(args, " "), code, errs)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" || strings.HasPrefix(l, ":") {
			continue
		}
		v, _, _ := strings.Cut(l, "\t")
		got = append(got, v)
	}
	return got
}

func TestCompletionOfValues(t *testing.T) {
	fleet := writeFleet(t, smallFleet)
	hosts := []string{"web-ams1-1", "web-ams1-2", "web-ewr1-1", "web-ewr1-2", "db-ams1-1"}
	slots := []string{"web/ams1/1", "web/ams1/2", "web/ewr1/1", "web/ewr1/2", "db/ams1/1"}
	for _, tc := range []struct {
		args []string
		want []string // all present
		not  []string // none present
	}{
		{[]string{"apply", "-o", ""}, []string{"auto", "tty", "plain", "json"}, []string{"text"}},
		{[]string{"plan", "-o", ""}, []string{"text", "json"}, []string{"tty"}},
		{[]string{"status", "--output", ""}, []string{"text", "json"}, nil},
		{[]string{"apply", "--wait", ""}, []string{"active", "booted", "none"}, nil},
		{[]string{"apply", "-f", fleet, "--rebuild", ""}, append([]string{"all", "web", "db"}, slots...), hosts},
		{[]string{"plan", "-f", fleet, "--replace", ""}, slots, []string{"all", "web"}},
		{[]string{"render", "-f", fleet, "--device", ""}, append(slots, hosts...), []string{"all"}},
		{[]string{"console", "-f", fleet, ""}, append(slots, hosts...), []string{"all"}},
		{[]string{"console", "-f", fleet, "web-e"}, []string{"web-ewr1-1", "web-ewr1-2"}, []string{"web-ams1-1", "db-ams1-1"}},
		{[]string{"console", "-f", fleet, "db-ams1-1", ""}, nil, hosts},
	} {
		got := complete(t, tc.args...)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("complete %q: %v lacks %q", tc.args, got, w)
			}
		}
		for _, n := range tc.not {
			if slices.Contains(got, n) {
				t.Errorf("complete %q: %v has %q", tc.args, got, n)
			}
		}
	}
}

// TestCompletionFromAFleetWithUnsetVariables: names never depend on the
// environment, so a fleet whose base_url needs an unset variable (as
// fleets/demo.yml does outside the demo) still completes.
func TestCompletionFromAFleetWithUnsetVariables(t *testing.T) {
	fleet := writeFleet(t, strings.Replace(strings.Replace(smallFleet, "http://127.0.0.1:1", "${SIM_URL}", 1),
		"6d1f7b0e-8a44-4c3e-9f1b-2b7c5a9e0d11", "${PACKET_PROJECT_ID}", 1))
	if got := complete(t, "console", "-f", fleet, "db"); !slices.Equal(got, []string{"db/ams1/1", "db-ams1-1"}) {
		t.Fatalf("completion = %v", got)
	}
}

func TestCompletionOfTheFleetFileOffersYAMLFiles(t *testing.T) {
	out, _, code := runCLI(t, nil, "__complete", "plan", "-f", "")
	// The shell lists the files; lkfleet names the extensions and the
	// directive (8: filter by extension).
	if code != 0 || !strings.Contains(out, "yml\nyaml\n:8\n") {
		t.Fatalf("__complete plan -f: code %d, out %q", code, out)
	}
}

func TestCompletionHelpNamesBashCompletion(t *testing.T) {
	out, _, _ := runCLI(t, nil, "completion", "--help")
	if !strings.Contains(out, "bash-completion package") {
		t.Fatalf("completion --help does not say bash needs bash-completion:\n%s", out)
	}
}
