package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// richPlan has every action, both waves, a duplicate and a warning.
func richPlan(t *testing.T) Plan {
	t.Helper()
	in := baseInput()
	dropLive(&in, "web/ams1/2")
	findLive(&in, "web/ams1/1").Hostname = "web-old-1"
	d := findDesired(&in, "web/ewr1/1")
	d.Image.BaseURL = "https://img.example.com/2026-11-26"
	d.Script = script(d.Image, d.Slot)
	d.Rev = d.ComputeRev()
	findLive(&in, "db/ams1/1").Machine = "c3.small.x86"
	in.Live = append(in.Live, orphan("d-41", "web/ewr1/3", "ewr1"))
	dup := liveOf(*findDesired(&in, "web/ewr1/2"), "d-42")
	dup.State, dup.CreatedAt = StateFailed, t0.Add(time.Hour)
	in.Live = append(in.Live, dup)
	in.Foreign = []Live{{ID: "f-1", Hostname: "web-ams1-2", State: StateActive}}
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

func TestRenderTextGolden(t *testing.T) {
	p := richPlan(t)
	for _, tc := range []struct {
		file  string
		color bool
	}{{"plan.txt.golden", false}, {"plan-color.txt.golden", true}} {
		var buf bytes.Buffer
		if err := RenderText(&buf, p, TextOptions{Color: tc.color, FleetFile: "lab.yml"}); err != nil {
			t.Fatal(err)
		}
		golden(t, tc.file, buf.Bytes())
		out := buf.String()
		if hasESC := strings.Contains(out, "\x1b["); hasESC != tc.color {
			t.Errorf("%s: ANSI escapes present = %v, want %v", tc.file, hasESC, tc.color)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		last := stripANSI(lines[len(lines)-1])
		if last != "Plan: 2 to add, 1 to rebuild, 1 to change, 3 to destroy." {
			t.Errorf("%s: last line %q", tc.file, last)
		}
	}
}

func stripANSI(s string) string {
	for _, c := range []string{ansiReset, ansiBold, ansiRed, ansiGreen, ansiYellow} {
		s = strings.ReplaceAll(s, c, "")
	}
	return s
}

func TestRenderTextStructure(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderText(&buf, richPlan(t), TextOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	// Waves in order, each change under its wave.
	w1, w2 := strings.Index(out, "Wave 1 (zones: ams1)"), strings.Index(out, "Wave 2 (zones: ewr1)")
	if w1 < 0 || w2 < w1 {
		t.Fatalf("wave headers missing or out of order:\n%s", out)
	}
	if i := strings.Index(out, `# device "db-ams1-1" must be replaced`); i < w1 || i > w2 {
		t.Error("db replacement is not under wave 1")
	}
	if i := strings.Index(out, `# device "orphan-d-41" will be destroyed`); i < w2 {
		t.Error("scale-down delete is not under wave 2")
	}
	for _, want := range []string{
		"  + create\n", "  ~ rebuild in-place\n", "  ~ update in-place\n",
		"+/- create replacement and then destroy\n", "  - destroy\n",
		`~ machine = "c3.small.x86" -> "m3.large.x86" # forces replacement`,
		`# device "web-ewr1-1" will be rebuilt in-place (reboot)`,
		"Warning: hostname \"web-ams1-2\"",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRenderTextLegendOnlyPresentSymbols(t *testing.T) {
	in := baseInput()
	in.Live = in.Live[:4]
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := RenderText(&buf, p, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "  + create\n") || strings.Contains(out, "destroy\n") || strings.Contains(out, "in-place\n") {
		t.Errorf("legend lists absent symbols:\n%s", out)
	}
	if !strings.HasSuffix(out, "Plan: 1 to add, 0 to rebuild, 0 to change, 0 to destroy.\n") {
		t.Errorf("bad summary:\n%s", out)
	}
}

func TestRenderTextNoChanges(t *testing.T) {
	p, err := Compute(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := RenderText(&buf, p, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	golden(t, "nochanges.txt.golden", buf.Bytes())
	if buf.String() != "\nNo changes. The fleet matches lab.yml.\n" {
		t.Errorf("got %q", buf.String())
	}
	buf.Reset()
	p.File = "fleets/nightly.yml"
	_ = RenderText(&buf, p, TextOptions{})
	if !strings.HasSuffix(buf.String(), "The fleet matches fleets/nightly.yml.\n") {
		t.Errorf("plan File not used: %q", buf.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderWriteErrors(t *testing.T) {
	p := richPlan(t)
	if err := RenderText(failWriter{}, p, TextOptions{}); err == nil {
		t.Error("RenderText hid a write error")
	}
	if err := RenderJSON(failWriter{}, p); err == nil {
		t.Error("RenderJSON hid a write error")
	}
}

func TestRenderJSONGolden(t *testing.T) {
	p := richPlan(t)
	var buf bytes.Buffer
	if err := RenderJSON(&buf, p); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.json.golden", buf.Bytes())

	// The schema: exactly these keys, arrays never null.
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if got := sortedKeys(doc); !slices.Equal(got, []string{"changes", "fleet", "format_version", "project", "summary", "warnings"}) {
		t.Errorf("top-level keys %q", got)
	}
	if doc["format_version"] != "1" {
		t.Errorf("format_version %v", doc["format_version"])
	}
	ch := doc["changes"].([]any)[0].(map[string]any)
	if got := sortedKeys(ch); !slices.Equal(got, []string{"action", "attributes", "device_id", "hostname", "reasons", "slot", "strategy", "wave"}) {
		t.Errorf("change keys %q", got)
	}
	attr := ch["attributes"].([]any)[0].(map[string]any)
	if got := sortedKeys(attr); !slices.Equal(got, []string{"after", "before", "forces_replacement", "name"}) {
		t.Errorf("attribute keys %q", got)
	}
	sum := doc["summary"].(map[string]any)
	if sum["add"] != 2.0 || sum["rebuild"] != 1.0 || sum["change"] != 1.0 || sum["destroy"] != 3.0 || sum["unchanged"] != 1.0 {
		t.Errorf("summary %v", sum)
	}

	buf.Reset()
	empty, _ := Compute(Input{Fleet: testFleet()})
	if err := RenderJSON(&buf, empty); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"changes": []`) || !strings.Contains(buf.String(), `"warnings": []`) {
		t.Errorf("empty arrays rendered as null:\n%s", buf.String())
	}
}

func TestRenderRecreate(t *testing.T) {
	in := baseInput()
	in.Fleet.Rollout.Rebuild = "recreate"
	in.Rebuild = []string{"db/ams1/1"}
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := RenderText(&buf, p, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`# device "db-ams1-1" will be rebuilt (recreate: a new device first, then this one is destroyed)`,
		"#   rebuild requested (--rebuild db/ams1/1)",
		`~ id   = "d-05" -> (known after apply)`,
		"Plan: 0 to add, 1 to rebuild, 0 to change, 0 to destroy.",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := RenderJSON(&buf, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"strategy": "recreate"`) {
		t.Errorf("JSON lacks the strategy:\n%s", buf.String())
	}
}
