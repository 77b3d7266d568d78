package ui

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// cursorUp is what mpb writes to redraw: move up N lines, erase below.
var cursorUp = regexp.MustCompile(`\x1b\[(\d+)A\x1b\[J`)

// emulate replays live view output the way a terminal shows it: each
// cursor-up-and-erase removes the last N lines, so what remains is the
// final screen.
func emulate(out string) []string {
	var screen []string
	add := func(text string) {
		if text == "" {
			return
		}
		parts := strings.Split(text, "\n")
		// Text always continues the last (possibly empty) line.
		if len(screen) > 0 {
			screen[len(screen)-1] += parts[0]
			parts = parts[1:]
		}
		screen = append(screen, parts...)
	}
	screen = []string{""}
	last := 0
	for _, m := range cursorUp.FindAllStringSubmatchIndex(out, -1) {
		add(out[last:m[0]])
		n, _ := strconv.Atoi(out[m[2]:m[3]])
		// The cursor sits at the start of the empty line after the frame.
		screen = screen[:max(len(screen)-1-n, 0)]
		screen = append(screen, "")
		last = m[1]
	}
	add(out[last:])
	return screen
}

func containsLine(screen []string, substr string) bool {
	for _, l := range screen {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

func lineWith(screen []string, substr string) string {
	for _, l := range screen {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

func TestEmulate(t *testing.T) {
	got := emulate("a\nb\n\x1b[2A\x1b[Jc\nd\ne\n\x1b[3A\x1b[Jf\n")
	if want := []string{"f", ""}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("emulate = %q, want %q", got, want)
	}
}

func TestTTYFinalRender(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	r := New(&out, TTY, Options{NoColor: true, Width: 100, Now: fixedClock(t0.Add(time.Minute))})
	r.SetPlan(scriptPlan())
	for _, e := range scriptEvents() {
		r.Event(e)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	raw := out.String()
	if strings.Contains(raw, "\x1b[3") {
		t.Error("colours drawn with NoColor set")
	}
	screen := emulate(raw)
	text := strings.Join(screen, "\n")
	t.Logf("final screen:\n%s", text)

	w1 := lineWith(screen, "wave 1  ams1")
	w2 := lineWith(screen, "wave 2  ewr1")
	if w1 == "" || w2 == "" {
		t.Fatalf("wave bars missing:\n%s", text)
	}
	// Wave 1 ended all done after the retry; wave 2 has its refused create.
	for _, c := range []struct{ line, want string }{
		{w1, "3/3"}, {w1, "14s  done"}, {w1, "[="},
		{w2, "1/2"}, {w2, "5s  done"},
	} {
		if !strings.Contains(c.line, c.want) {
			t.Errorf("bar %q lacks %q", c.line, c.want)
		}
	}
	for _, want := range []string{
		"0 queued · 0 provisioning · 3 active · 0 failed",
		"0 queued · 0 provisioning · 1 active · 1 failed",
	} {
		if !containsLine(screen, want) {
			t.Errorf("counts %q missing:\n%s", want, text)
		}
	}
	// Failures, retries and the halt are printed above the bars, in order.
	above := []string{
		"+ web-ams1-2 (web/ams1/2)  failed d2: provisioning failed: no capacity",
		"+ web-ams1-2 (web/ams1/2)  retrying d2: deleting the failed device",
		"+ web-ewr1-2 (web/ewr1/2)  create failed: create device \"web-ewr1-2\" (slot web/ewr1/2): 422 no capacity; in ewr1",
		"wave 2  halted: wave 2 (ewr1) has 1 failed device",
		"wave -  waiting for calls in flight",
	}
	pos := strings.Index(text, "wave 1  ams1")
	for _, a := range above {
		i := strings.Index(text, a)
		if i < 0 || i > pos {
			t.Errorf("%q not printed above the bars:\n%s", a, text)
		}
	}
	// Routine progress stays in the bars.
	if strings.Contains(text, "provisioning d1") {
		t.Errorf("routine state change printed as a line:\n%s", text)
	}
	// The live part must fit the width or every redraw would scroll.
	for _, l := range screen[strings.Count(text[:pos], "\n"):] {
		if n := len([]rune(l)); n > 100 {
			t.Errorf("live line wider than the 100 columns: %d %q", n, l)
		}
	}
}

func TestTTYLiveCountsAndETA(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	// 8s after the start: 2 of wave 1's 3 changes are done (a device
	// ready and the delete), so at that pace the last is due in 4s.
	r := New(&out, TTY, Options{NoColor: true, Width: 100, Now: fixedClock(t0.Add(8 * time.Second))})
	r.SetPlan(scriptPlan())
	for _, e := range scriptEvents()[:11] {
		r.Event(e)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	screen := emulate(out.String())
	text := strings.Join(screen, "\n")
	if w1 := lineWith(screen, "wave 1  ams1"); !strings.Contains(w1, "2/3") || !strings.Contains(w1, "8s  eta 4s") {
		t.Errorf("wave 1 bar %q, want 2/3 and 8s  eta 4s\n%s", w1, text)
	}
	if !containsLine(screen, "0 queued · 1 provisioning · 2 active · 0 failed") {
		t.Errorf("wave 1 counts:\n%s", text)
	}
	if w2 := lineWith(screen, "wave 2  ewr1"); !strings.Contains(w2, "0/2") || !strings.Contains(w2, "waiting") {
		t.Errorf("wave 2 bar %q, want 0/2 waiting", w2)
	}
}

func TestTTYColours(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	r := New(&out, TTY, Options{Width: 100, Now: fixedClock(t0.Add(time.Minute))})
	r.SetPlan(scriptPlan())
	for _, e := range scriptEvents() {
		r.Event(e)
	}
	if err := r.Summary(SummaryInput{Added: 1}); err != nil {
		t.Fatal(err)
	}
	raw := out.String()
	for _, want := range []string{
		"\x1b[31mwave 1  + web-ams1-2 (web/ams1/2)  failed", // failure line in red
		"\x1b[31m1 failed\x1b[0m",                           // failed count in red
		"\x1b[32m\x1b[1mApply complete:",                    // summary headline
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Colour must not cost columns: the bar keeps the plain layout's width.
	for _, l := range emulate(raw) {
		if !strings.HasPrefix(l, "wave") && !strings.HasPrefix(l, "  ") {
			continue // lines above the bars may wrap; the live part may not
		}
		if n := len([]rune(stripSGR(l))); n > 100 {
			t.Errorf("line wider than 100 columns: %q", l)
		}
	}
}

func stripSGR(s string) string { return regexp.MustCompile(`\x1b\[[0-9;]*m`).ReplaceAllString(s, "") }

func TestTTYDestroyWaveWording(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	r := New(&out, TTY, Options{NoColor: true, Width: 100})
	p := scriptPlan()
	p.Changes = p.Changes[2:3] // the delete only
	r.SetPlan(p)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !containsLine(emulate(out.String()), "1 queued · 0 deprovisioning · 0 deleted · 0 failed") {
		t.Errorf("destroy counts:\n%s", out.String())
	}
}

func TestTTYCloseWithoutWaves(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	r := New(&out, TTY, Options{NoColor: true})
	r.Event(executorInfo("no changes"))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if !strings.HasSuffix(out.String(), "wave -  no changes\n") {
		t.Errorf("output %q", out.String())
	}
}
