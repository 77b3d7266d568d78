package ui

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSummaryText(t *testing.T) {
	failed := []FailedLine{
		{Hostname: "web-ams1-2", Slot: "web/ams1/2", DeviceID: "3f2a9c1e", Reason: "provisioning failed: no capacity"},
		{Hostname: "web-ewr1-1", Slot: "web/ewr1/1", Reason: "create refused:\n422"},
	}
	notDone := []string{"+ web-ewr1-1 (web/ewr1/1)", "- web-sjc1-1 (web/sjc1/1)"}
	for _, c := range []struct {
		name string
		in   SummaryInput
		want string
	}{
		{"apply complete", SummaryInput{Added: 5, Rebuilt: 2, Destroyed: 1, Elapsed: 14200 * time.Millisecond, Requests: 83},
			"Apply complete: 5 added, 2 rebuilt, 0 changed, 1 destroyed in 14.2s (83 API requests, 0 throttled).\n"},
		{"one request", SummaryInput{Changed: 1, Elapsed: 400 * time.Millisecond, Requests: 1, Throttled: 1},
			"Apply complete: 0 added, 0 rebuilt, 1 changed, 0 destroyed in 0.4s (1 API request, 1 throttled).\n"},
		{"destroy complete", SummaryInput{Destroy: true, Destroyed: 5, Elapsed: 3100 * time.Millisecond, Requests: 12},
			"Destroy complete: 5 destroyed in 3.1s (12 API requests, 0 throttled).\n"},
		{"apply with failures", SummaryInput{Added: 3, Elapsed: 95 * time.Second, Requests: 40, Failed: failed},
			"Apply failed: 3 added, 0 rebuilt, 0 changed, 0 destroyed in 1m35s (40 API requests, 0 throttled).\n" +
				"2 devices failed:\n" +
				"  web-ams1-2 (web/ams1/2) id 3f2a9c1e: provisioning failed: no capacity\n" +
				"  web-ewr1-1 (web/ewr1/1): create refused:; 422\n" +
				"Run `lkfleet apply` again to retry the failed devices; the others are left as they are.\n"},
		{"apply interrupted", SummaryInput{Added: 2, Elapsed: 4 * time.Second, Requests: 9, Interrupted: true, NotDone: notDone, Command: "lkfleet apply -f lab.yml"},
			"Apply interrupted: 2 added, 0 rebuilt, 0 changed, 0 destroyed in 4.0s (9 API requests, 0 throttled).\n" +
				"Not done (2):\n" +
				"  + web-ewr1-1 (web/ewr1/1)\n" +
				"  - web-sjc1-1 (web/sjc1/1)\n" +
				"Run `lkfleet apply -f lab.yml` again to finish: it picks up where this run stopped.\n"},
		{"apply halted with a failure", SummaryInput{Added: 4, Elapsed: 30 * time.Second, Requests: 20, Failed: failed[:1], NotDone: notDone[:1],
			Halted: "wave 1 (ams1) has 1 failed device, more than max_failures 0"},
			"Apply halted: 4 added, 0 rebuilt, 0 changed, 0 destroyed in 30.0s (20 API requests, 0 throttled).\n" +
				"Halted: wave 1 (ams1) has 1 failed device, more than max_failures 0\n" +
				"1 device failed:\n" +
				"  web-ams1-2 (web/ams1/2) id 3f2a9c1e: provisioning failed: no capacity\n" +
				"Not done (1):\n" +
				"  + web-ewr1-1 (web/ewr1/1)\n" +
				"Fix the cause, then run `lkfleet apply` again to continue the rollout.\n"},
		{"apply timed out", SummaryInput{Added: 1, Elapsed: 2 * time.Second, Requests: 5, TimedOut: true, Interrupted: true, Timeout: 2 * time.Second,
			NotDone: notDone[:1], Command: "lkfleet apply -f 'my lab.yml'"},
			"Apply stopped at --timeout 2s: 1 added, 0 rebuilt, 0 changed, 0 destroyed in 2.0s (5 API requests, 0 throttled).\n" +
				"Not done (1):\n" +
				"  + web-ewr1-1 (web/ewr1/1)\n" +
				"Run `lkfleet apply -f 'my lab.yml'` again to finish: it picks up where this run stopped.\n"},
		{"destroy interrupted", SummaryInput{Destroy: true, Destroyed: 2, Elapsed: time.Second, Requests: 3, Interrupted: true, NotDone: notDone[1:]},
			"Destroy interrupted: 2 destroyed in 1.0s (3 API requests, 0 throttled).\n" +
				"Not done (1):\n" +
				"  - web-sjc1-1 (web/sjc1/1)\n" +
				"Run `lkfleet destroy` again to finish: it picks up where this run stopped.\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, mode := range []Mode{Plain, TTY} {
				var out bytes.Buffer
				r := New(&out, mode, Options{NoColor: true})
				if err := r.Summary(c.in); err != nil {
					t.Fatal(err)
				}
				if got := out.String(); got != c.want {
					t.Errorf("%v summary:\n%s\nwant:\n%s", mode, got, c.want)
				}
			}
		})
	}
}

func TestSummaryJSON(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, JSON, Options{Now: fixedClock(t0)})
	err := r.Summary(SummaryInput{Destroy: true, Destroyed: 4, Elapsed: 3100 * time.Millisecond, Requests: 12, Interrupted: true,
		NotDone: []string{"- web-ams1-1 (web/ams1/1)"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-25T21:40:00Z","kind":"summary","operation":"destroy","result":"interrupted",` +
		`"added":0,"rebuilt":0,"changed":0,"destroyed":4,"elapsed_seconds":3.1,"requests":12,"throttled":0,` +
		`"failed":[],"not_done":["- web-ams1-1 (web/ams1/1)"],"halted":"",` +
		`"message":"Destroy interrupted: 4 destroyed in 3.1s (12 API requests, 0 throttled).","resume":"lkfleet destroy"}` + "\n"
	if got := out.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !json.Valid(out.Bytes()) {
		t.Error("not JSON")
	}
}

// TestSummaryClosesLiveView checks Summary works without an explicit
// Close and that the summary comes after the final bars.
func TestSummaryClosesLiveView(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, TTY, Options{NoColor: true, Width: 100})
	r.SetPlan(scriptPlan())
	if err := r.Summary(SummaryInput{Added: 2}); err != nil {
		t.Fatal(err)
	}
	screen := emulate(out.String())
	text := strings.Join(screen, "\n")
	bars, head := strings.Index(text, "wave 2  ewr1"), strings.Index(text, "Apply complete:")
	if bars < 0 || head < bars {
		t.Errorf("summary not after the bars:\n%s", text)
	}
	if !strings.Contains(text, "0 failed\n\nApply complete:") {
		t.Errorf("no blank line between bars and summary:\n%q", text)
	}
}

func TestFormatAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                          "0s",
		0:                                     "0s",
		13*time.Second + 900*time.Millisecond: "13s",
		time.Minute:                           "1m",
		4*time.Minute + 5*time.Second:         "4m5s",
		3*time.Hour + 4*time.Minute + 59*time.Second: "3h4m",
		50 * time.Hour: "2d2h",
		48 * time.Hour: "2d",
	} {
		if got := FormatAge(d); got != want {
			t.Errorf("FormatAge(%v) = %q, want %q", d, got, want)
		}
	}
}
