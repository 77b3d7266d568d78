package planner

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadPlan feeds Load arbitrary bytes, as a whole file and, so the
// fuzzer gets past the checksum, as a plan body sealed with a correct one.
// Load must never panic, and a plan it accepts must save and load back to
// the same bytes: what apply reads is exactly what it would write.
func FuzzLoadPlan(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("testdata", "saved-plan.golden.json")); err == nil {
		f.Add(data)
		f.Add(bytes.Replace(data, []byte(`"format_version": "1"`), []byte(`"format_version": "2"`), 1))
		f.Add(data[:len(data)/3])
		var env planEnvelope
		if json.Unmarshal(data, &env) == nil {
			f.Add([]byte(env.Plan))
		}
	}
	f.Add([]byte(`{"format_version":"1","kind":"lkfleet-plan","checksum":"","plan":{}}`))
	f.Add([]byte(`{"format_version":"1","kind":"lkfleet-plan","checksum":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","plan":{}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLoaded(t, data)
		if json.Valid(data) {
			sealed, err := json.Marshal(planEnvelope{FormatVersion: PlanFileVersion, Kind: planFileKind, Checksum: bodyChecksum(data), Plan: data})
			if err == nil {
				checkLoaded(t, sealed)
			}
		}
	})
}

func checkLoaded(t *testing.T, data []byte) {
	t.Helper()
	p, err := Load(bytes.NewReader(data))
	if err != nil {
		return
	}
	var first bytes.Buffer
	if err := Save(&first, p); err != nil {
		t.Fatalf("Save of a loaded plan: %v", err)
	}
	p2, err := Load(bytes.NewReader(first.Bytes()))
	if err != nil {
		t.Fatalf("Load of a saved plan: %v", err)
	}
	var second bytes.Buffer
	if err := Save(&second, p2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatalf("save/load is not stable:\n%s\n%s", first.Bytes(), second.Bytes())
	}
	// Rendering an accepted plan must not fail either.
	var out bytes.Buffer
	if err := RenderText(&out, p, TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	if err := RenderJSON(&out, p); err != nil {
		t.Fatal(err)
	}
}
