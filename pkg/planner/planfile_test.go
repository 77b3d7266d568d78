package planner

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func saved(t *testing.T, p Plan) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Save(&buf, p); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSaveLoadRoundTrip(t *testing.T) {
	p := richPlan(t)
	p.Changes[0].Live.IPs = []string{"147.75.1.2", "10.0.0.3"}
	p.Changes[0].Live.UserState, p.Changes[0].Live.UserStateBody = "succeeded", "booted sshd"
	p.Changes[0].Live.UserStateAt = t0.Add(90)
	data := saved(t, p)
	got, err := Load(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip changed the plan:\n got %+v\nwant %+v", got, p)
	}
	// The scripts needed to apply travel with the plan.
	for _, c := range got.Changes {
		if c.Desired != nil && c.Desired.Script == "" {
			t.Errorf("%s: script lost", key(c))
		}
	}
	if !bytes.Equal(saved(t, got), data) {
		t.Error("saving a loaded plan gives other bytes")
	}
	// A plan without changes round-trips too.
	empty, err := Compute(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	got, err = Load(bytes.NewReader(saved(t, empty)))
	if err != nil || !reflect.DeepEqual(got, empty) {
		t.Errorf("empty plan: %v, %+v", err, got)
	}
}

// TestSaveGolden pins the file format: a change here breaks saved plans
// of users and needs a new PlanFileVersion.
func TestSaveGolden(t *testing.T) {
	golden(t, "saved-plan.golden.json", saved(t, richPlan(t)))
}

func TestLoadReindented(t *testing.T) {
	data := saved(t, richPlan(t))
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		t.Fatal(err)
	}
	var wide bytes.Buffer
	if err := json.Indent(&wide, compact.Bytes(), "  ", "\t\t"); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(&wide); err != nil {
		t.Errorf("a re-indented plan file was refused: %v", err)
	}
	if _, err := Load(&compact); err != nil {
		t.Errorf("a re-indented plan file was refused: %v", err)
	}
}

// reseal edits the plan body and writes a correct checksum, to reach the
// checks behind the checksum.
func reseal(t *testing.T, data []byte, edit func(body map[string]any)) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	body := env["plan"].(map[string]any)
	edit(body)
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	env["plan"] = json.RawMessage(raw)
	env["checksum"] = bodyChecksum(raw)
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLoadRefuses(t *testing.T) {
	good := saved(t, richPlan(t))
	change := func(i int) func(b map[string]any) map[string]any {
		return func(b map[string]any) map[string]any { return b["changes"].([]any)[i].(map[string]any) }
	}
	first, second := change(0), change(1)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "load plan: not an lkfleet plan file: EOF"},
		{"not JSON", []byte("Plan: 1 to add"), "load plan: not an lkfleet plan file: invalid character 'P' looking for beginning of value"},
		{"truncated", good[:len(good)/2], "load plan: not an lkfleet plan file: unexpected EOF"},
		{"another JSON document", []byte(`{"format_version":"1","kind":"terraform"}`), `load plan: not an lkfleet plan file (kind "terraform", want "lkfleet-plan")`},
		{"unknown envelope field", []byte(`{"format_version":"1","kind":"lkfleet-plan","token":"x"}`), `load plan: not an lkfleet plan file: json: unknown field "token"`},
		{"newer format", bytes.Replace(good, []byte(`"format_version": "1"`), []byte(`"format_version": "2"`), 1),
			`load plan: format version "2" is not supported by this lkfleet (it reads "1"); re-run lkfleet plan --out`},
		{"no checksum", bytes.Replace(good, []byte(`"checksum": "sha256:`), []byte(`"checksum": "`), 1),
			"load plan: checksum mismatch: the file is corrupted or was edited; re-run lkfleet plan --out"},
		{"edited hostname", bytes.Replace(good, []byte(`"hostname": "web-ams1-2"`), []byte(`"hostname": "web-ams1-9"`), 1),
			"load plan: checksum mismatch: the file is corrupted or was edited; re-run lkfleet plan --out"},
		{"edited script", bytes.Replace(good, []byte(`2026-11-26/sshd-kernel`), []byte(`2026-11-27/sshd-kernel`), 1),
			"load plan: checksum mismatch: the file is corrupted or was edited; re-run lkfleet plan --out"},
		{"trailing data", append(bytes.Clone(good), []byte("{}")...), "load plan: not an lkfleet plan file: trailing data after the JSON document"},
		{"unknown action", reseal(t, good, func(b map[string]any) { first(b)["action"] = "explode" }),
			`load plan for fleet "lab": change 1 (slot "db/ams1/1"): unknown action "explode"`},
		{"create with a device id", reseal(t, good, func(b map[string]any) {
			c := b["changes"].([]any)[2].(map[string]any)
			c["device_id"] = "d-77"
		}), `load plan for fleet "lab": change 3 (slot "web/ams1/2"): a create must carry the desired device and no live device`},
		{"delete without live device", reseal(t, good, func(b map[string]any) {
			c := b["changes"].([]any)[4].(map[string]any)
			c["live"] = nil
		}), `load plan for fleet "lab": change 5 (slot "web/ewr1/2"): a delete must carry no desired device and the live device and its id`},
		{"live device of another id", reseal(t, good, func(b map[string]any) { first(b)["device_id"] = "d-99" }),
			`load plan for fleet "lab": change 1 (slot "db/ams1/1"): live device does not match the change's device_id`},
		{"desired device of another slot", reseal(t, good, func(b map[string]any) { first(b)["slot"] = "db/ams1/2" }),
			`load plan for fleet "lab": change 1 (slot "db/ams1/2"): desired device does not match the change's slot and hostname`},
		{"wave outside the rollout", reseal(t, good, func(b map[string]any) {
			first(b)["wave"] = 7
		}), `load plan for fleet "lab": change 1 (slot "db/ams1/1"): wave 7 is not a wave of the rollout`},
		{"out of order", reseal(t, good, func(b map[string]any) {
			cs := b["changes"].([]any)
			cs[0], cs[1] = cs[1], cs[0]
		}), `load plan for fleet "lab": change 2 (slot "db/ams1/1"): changes are out of order`},
		{"listed twice", reseal(t, good, func(b map[string]any) {
			cs := b["changes"].([]any)
			b["changes"] = append([]any{cs[0]}, cs...)
		}), `load plan for fleet "lab": change 2 (slot "db/ams1/1"): listed twice`},
		{"strategy on an update", reseal(t, good, func(b map[string]any) { second(b)["strategy"] = "reboot" }),
			`load plan for fleet "lab": change 2 (slot "web/ams1/1"): a update has no strategy`},
		{"rebuild without strategy", reseal(t, good, func(b map[string]any) {
			b["changes"].([]any)[3].(map[string]any)["strategy"] = ""
		}), `load plan for fleet "lab": change 4 (slot "web/ewr1/1"): unknown rebuild strategy ""`},
		{"no reasons", reseal(t, good, func(b map[string]any) { first(b)["reasons"] = []any{} }),
			`load plan for fleet "lab": change 1 (slot "db/ams1/1"): no reason given`},
		{"no fingerprint", reseal(t, good, func(b map[string]any) { b["live_fingerprint"] = "" }),
			`load plan for fleet "lab": missing fingerprint; apply could not check that the plan is current`},
		{"unknown body field", reseal(t, good, func(b map[string]any) { b["api_token"] = "secret" }),
			`load plan: invalid plan body: json: unknown field "api_token"`},
		{"negative budget", reseal(t, good, func(b map[string]any) {
			b["rollout"].(map[string]any)["max_unavailable_percent"] = 101
		}), `load plan for fleet "lab": invalid rollout settings`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(bytes.NewReader(tc.data))
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestLoadTooLarge(t *testing.T) {
	defer func(n int) { maxPlanFileSize = n }(maxPlanFileSize)
	maxPlanFileSize = 1 << 20
	r := strings.NewReader(strings.Repeat(" ", maxPlanFileSize+1))
	if _, err := Load(r); err == nil || err.Error() != "load plan: file is larger than 1 MiB; not an lkfleet plan" {
		t.Errorf("err = %v", err)
	}
}

func TestSavedPlanHasOnlyKnownKeys(t *testing.T) {
	// Guard against a secret-carrying field creeping in: every key of the
	// file is one of the documented ones.
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "plan-format.md"))
	if err != nil {
		t.Skip("docs/plan-format.md not present")
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !bytes.Contains(doc, []byte("`"+k+"`")) {
					t.Errorf("saved plan key %q is not documented in docs/plan-format.md", k)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var v map[string]any
	data := saved(t, richPlan(t))
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if _, ok := v["plan"].(map[string]any)["changes"]; !ok {
		t.Fatal("fixture: no plan body")
	}
	walk(v)
}
