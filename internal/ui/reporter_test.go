package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

func fixedClock(at time.Time) func() time.Time { return func() time.Time { return at } }

func runScript(t *testing.T, mode Mode, opts Options) string {
	t.Helper()
	var out bytes.Buffer
	r := New(&out, mode, opts)
	r.SetPlan(scriptPlan())
	for _, e := range scriptEvents() {
		r.Event(e)
	}
	if err := r.Summary(SummaryInput{
		Added: 2, Rebuilt: 1, Destroyed: 1, Elapsed: 20250 * time.Millisecond,
		Requests: 41, Throttled: 2,
		Failed:  []FailedLine{{Hostname: "web-ewr1-2", Slot: "web/ewr1/2", Reason: "create refused: 422 no capacity"}},
		Halted:  "wave 2 (ewr1) has 1 failed device, more than max_failures 0",
		Command: "lkfleet apply -f lab.yml",
	}); err != nil {
		t.Fatalf("summary: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return out.String()
}

func TestPlainGolden(t *testing.T) {
	got := runScript(t, Plain, Options{Now: fixedClock(t0.Add(time.Minute))})
	golden(t, "plain.golden", got)
	if strings.Contains(got, "\x1b") {
		t.Error("plain output carries escape sequences")
	}
	// Every event line has the grep-friendly prefix.
	prefix := regexp.MustCompile(`^2026-11-25T21:40:\d\dZ  wave [-0-9]+  `)
	events := strings.Split(got, "\n")[:len(scriptEvents())]
	for _, l := range events {
		if !prefix.MatchString(l) {
			t.Errorf("line without the timestamp/wave prefix: %q", l)
		}
	}
}

func TestJSONGolden(t *testing.T) {
	got := runScript(t, JSON, Options{Now: fixedClock(t0.Add(time.Minute))})
	golden(t, "json.golden", got)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != len(scriptEvents())+1 {
		t.Fatalf("got %d JSON lines, want %d events + 1 summary", len(lines), len(scriptEvents()))
	}
	want := []string{"action", "device_id", "error", "hostname", "kind", "message", "slot", "state", "time", "wave"}
	for i, l := range lines[:len(lines)-1] {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v", i+1, err)
		}
		if len(m) != len(want) {
			t.Errorf("line %d has fields %v, want exactly %v", i+1, keys(m), want)
		}
		for _, k := range want {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %q", i+1, k)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Errorf("line %d time: %v", i+1, err)
		}
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatal(err)
	}
	if sum["kind"] != "summary" || sum["result"] != "halted" || sum["added"] != 2.0 || sum["requests"] != 41.0 {
		t.Errorf("summary object = %v", sum)
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestJSONWaveIsOneBasedOrNull pins the wave numbering of JSON lines to
// the one people read in the text output.
func TestJSONWaveIsOneBasedOrNull(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, JSON, Options{})
	r.Event(executor.Event{Time: t0, Kind: executor.WaveStarted, Wave: 0})
	r.Event(executor.Event{Time: t0, Kind: executor.Info, Wave: -1, Message: "hello"})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.Contains(lines[0], `"wave":1,`) || !strings.Contains(lines[1], `"wave":null,`) {
		t.Errorf("wave numbering:\n%s", out.String())
	}
}

func TestEventWithoutTimeUsesClock(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Plain, Options{Now: fixedClock(t0.Add(90 * time.Second))})
	r.Event(executor.Event{Kind: executor.Info, Wave: -1, Message: "hi"})
	if got, want := out.String(), "2026-11-25T21:41:30Z  wave -  hi\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMessagesAreOneLineOfPrintableText(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Plain, Options{})
	r.Event(executor.Event{Time: t0, Kind: executor.DeviceFailed, Wave: 0, Slot: "a/b/1",
		Message: "boot failed:\n\x1b[2Jkernel\tnot found\r\n"})
	want := "2026-11-25T21:40:00Z  wave 1  (a/b/1)  failed: boot failed:; [2Jkernel not found\n"
	if got := out.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestConcurrentEvents emits from many goroutines (run with -race): every
// event must come out as one whole line.
func TestConcurrentEvents(t *testing.T) {
	for _, mode := range []Mode{Plain, JSON, TTY} {
		t.Run(mode.String(), func(t *testing.T) {
			var out bytes.Buffer
			r := New(&out, mode, Options{NoColor: true, RefreshRate: time.Millisecond})
			r.SetPlan(scriptPlan())
			const workers, each = 16, 50
			var wg sync.WaitGroup
			for g := range workers {
				wg.Go(func() {
					for i := range each {
						r.Event(executor.Event{Time: t0, Kind: executor.DeviceState, Wave: g % 2,
							Action: planner.Create, Slot: fmt.Sprintf("w/z/%d", g), State: "provisioning",
							Hostname: fmt.Sprintf("h%d-%d", g, i)})
					}
					r.Event(executor.Event{Time: t0, Kind: executor.DeviceFailed, Wave: g % 2,
						Slot: fmt.Sprintf("w/z/%d", g), Message: "boom"})
				})
			}
			wg.Wait()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			switch mode {
			case Plain, JSON:
				lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
				if len(lines) != workers*(each+1) {
					t.Fatalf("got %d lines, want %d", len(lines), workers*(each+1))
				}
				for _, l := range lines {
					if mode == JSON && !json.Valid([]byte(l)) {
						t.Fatalf("torn JSON line %q", l)
					}
					if mode == Plain && !strings.HasPrefix(l, "2026-11-25T21:40:00Z  wave ") {
						t.Fatalf("torn line %q", l)
					}
				}
			case TTY:
				screen := emulate(got)
				if n := strings.Count(strings.Join(screen, "\n"), "failed: boom"); n != workers {
					t.Errorf("%d failure lines above the bars, want %d:\n%s", n, workers, strings.Join(screen, "\n"))
				}
				// 8 extra slots per wave joined the plan's 3 and 2 changes,
				// which saw no events and are still queued.
				for _, want := range []string{"3 queued · 0 provisioning · 0 active · 8 failed", "2 queued · 0 provisioning · 0 active · 8 failed"} {
					if !containsLine(screen, want) {
						t.Errorf("counts %q missing:\n%s", want, strings.Join(screen, "\n"))
					}
				}
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		tty  bool
		want Mode
		err  bool
	}{
		{"", true, TTY, false}, {"auto", false, Plain, false}, {"plain", true, Plain, false},
		{"json", true, JSON, false}, {"tty", false, TTY, false}, {"yaml", true, Plain, true},
	} {
		got, err := ParseMode(c.in, c.tty)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("ParseMode(%q, %v) = %v, %v", c.in, c.tty, got, err)
		}
	}
}

func TestIsColor(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, c := range []struct {
		name string
		env  func(string) string
		tty  bool
		want bool
	}{
		{"terminal", env("TERM", "xterm-256color"), true, true},
		{"not a terminal", env("TERM", "xterm"), false, false},
		{"NO_COLOR", env("NO_COLOR", "1", "TERM", "xterm"), true, false},
		{"empty NO_COLOR is unset", env("NO_COLOR", "", "TERM", "xterm"), true, true},
		{"dumb terminal", env("TERM", "dumb"), true, false},
	} {
		if got := IsColor(c.env, c.tty); got != c.want {
			t.Errorf("%s: IsColor = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		14200 * time.Millisecond: "14.2s",
		3149 * time.Millisecond:  "3.1s",
		0:                        "0.0s",
		125 * time.Second:        "2m5s",
		-time.Second:             "0.0s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestJSONKeepsMessagesReadable(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, JSON, Options{})
	r.Event(executor.Event{Time: t0, Kind: executor.Info, Wave: -1, Message: "machine: a -> b & <c>"})
	if !strings.Contains(out.String(), `"message":"machine: a -> b & <c>"`) {
		t.Errorf("message escaped: %s", out.String())
	}
}

func TestPlainWithoutPlanUsesEventMessage(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Plain, Options{})
	r.Event(executor.Event{Time: t0, Kind: executor.WaveStarted, Wave: 2, Message: "sjc1,fra2"})
	r.Event(executor.Event{Time: t0, Kind: executor.ChangeDone, Wave: 2, Action: planner.Update, Slot: "a/sjc1/1", Hostname: "a-sjc1-1", DeviceID: "u1"})
	r.Event(executor.Event{Time: t0, Kind: executor.WaveDone, Wave: 2})
	want := "2026-11-25T21:40:00Z  wave 3  started: sjc1,fra2\n" +
		"2026-11-25T21:40:00Z  wave 3  ~ a-sjc1-1 (a/sjc1/1)  updated u1\n" +
		"2026-11-25T21:40:00Z  wave 3  done: 1 of 1 changes completed, 0 failed\n"
	if got := out.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

// TestPlainLeavesOutRepeatedWords: the executor's messages that only
// restate the action, and errors the message already quotes, are not
// printed twice; informative messages stay.
func TestPlainLeavesOutRepeatedWords(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Plain, Options{})
	dev := func(k executor.EventKind, a planner.Action, id, msg string, err error) {
		r.Event(executor.Event{Time: t0, Kind: k, Wave: 0, Action: a, Slot: "w/z/1", Hostname: "w-z-1", DeviceID: id, Message: msg, Err: err})
	}
	dev(executor.ChangeStarted, planner.Delete, "old", "delete", nil)
	dev(executor.ChangeDone, planner.Delete, "old", "deleted", nil)
	dev(executor.ChangeDone, planner.Replace, "new", "replaced old", nil)
	dev(executor.Info, planner.Replace, "new", "created new device", nil)
	lerr := errors.New("503 unavailable")
	r.Event(executor.Event{Time: t0, Kind: executor.Info, Wave: -1, Message: "list devices: 503 unavailable", Err: lerr})
	want := "" +
		"2026-11-25T21:40:00Z  wave 1  - w-z-1 (w/z/1)  deleting old\n" +
		"2026-11-25T21:40:00Z  wave 1  - w-z-1 (w/z/1)  deleted old\n" +
		"2026-11-25T21:40:00Z  wave 1  +/- w-z-1 (w/z/1)  replacement created new: replaced old\n" +
		"2026-11-25T21:40:00Z  wave 1  +/- w-z-1 (w/z/1)  created new device (new)\n" +
		"2026-11-25T21:40:00Z  wave -  list devices: 503 unavailable\n"
	if got := out.String(); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

// TestEachFailureIsPrintedOnce: a device that ends failed produces a
// device_state (failed), a device_failed with the reason, and the
// change_failed that repeats it; the text modes print one line, JSON all.
func TestEachFailureIsPrintedOnce(t *testing.T) {
	events := []executor.Event{
		{Time: t0, Kind: executor.DeviceState, Wave: 0, Action: planner.Create, Slot: "web/ams1/1", Hostname: "web-ams1-1", DeviceID: "d1", State: "failed"},
		{Time: t0, Kind: executor.DeviceFailed, Wave: 0, Action: planner.Create, Slot: "web/ams1/1", Hostname: "web-ams1-1", DeviceID: "d1", State: "failed", Message: "state failed"},
		{Time: t0, Kind: executor.ChangeFailed, Wave: 0, Action: planner.Create, Slot: "web/ams1/1", Hostname: "web-ams1-1", DeviceID: "d1", Message: "state failed"},
		// A refusal is its own failure: printed.
		{Time: t0, Kind: executor.ChangeFailed, Wave: 0, Action: planner.Create, Slot: "web/ams1/2", Hostname: "web-ams1-2", Err: errors.New("422 no capacity")},
	}
	for _, mode := range []Mode{Plain, TTY, JSON} {
		var out bytes.Buffer
		r := New(&out, mode, Options{NoColor: true, Now: fixedClock(t0)})
		for _, e := range events {
			r.Event(e)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		want := 1
		if mode == JSON {
			want = 3
		}
		if n := strings.Count(text, "d1"); n != want {
			t.Errorf("mode %v: device d1 named %d times, want %d:\n%s", mode, n, want, text)
		}
		if mode != JSON && !strings.Contains(text, "failed d1: state failed") {
			t.Errorf("mode %v: the failure with its reason is missing:\n%s", mode, text)
		}
		if !strings.Contains(text, "422 no capacity") {
			t.Errorf("mode %v: the refused create is missing:\n%s", mode, text)
		}
	}
}

// countingWriter counts the writes it gets; the Coalesce timer writes
// from its own goroutine.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

// got is the text written and the number of writes.
func (w *countingWriter) got() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

// TestCoalesceWritesTheSameBytesInFewerWrites: with Coalesce the lines
// are byte for byte those written one by one, they go out together once
// Coalesce has passed, and Summary writes out what is still pending.
func TestCoalesceWritesTheSameBytesInFewerWrites(t *testing.T) {
	for _, mode := range []Mode{Plain, JSON} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := SummaryInput{Added: 1, Elapsed: time.Second}
				var each bytes.Buffer
				one := New(&each, mode, Options{Now: fixedClock(t0)})
				for _, e := range scriptEvents() {
					one.Event(e)
				}
				if err := one.Summary(in); err != nil {
					t.Fatal(err)
				}

				var out countingWriter
				r := New(&out, mode, Options{Now: fixedClock(t0), Coalesce: 100 * time.Millisecond})
				evs := scriptEvents()
				half := len(evs) / 2
				for _, e := range evs[:half] {
					r.Event(e)
				}
				if _, n := out.got(); n != 0 {
					t.Fatalf("%d writes before Coalesce passed, want 0", n)
				}
				time.Sleep(100 * time.Millisecond)
				synctest.Wait()
				if got, n := out.got(); n != 1 || !strings.HasPrefix(each.String(), got) || got == "" {
					t.Fatalf("after Coalesce: %d writes of %q, want 1 write of the first %d lines", n, got, half)
				}
				for _, e := range evs[half:] {
					r.Event(e)
				}
				if err := r.Summary(in); err != nil {
					t.Fatal(err)
				}
				got, n := out.got()
				if got != each.String() {
					t.Errorf("coalesced output differs:\n--- got ---\n%s\n--- want ---\n%s", got, each.String())
				}
				if n > 3 {
					t.Errorf("%d writes, want at most 3 (two batches and the summary)", n)
				}
			})
		})
	}
}
