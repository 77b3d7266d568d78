package planner

import (
	"bytes"
	"strings"
	"testing"
)

// TestSavedPlanKeepsCreateBatch: rollout.create_batch travels with a saved
// plan (apply of the file batches as the plan said), is left out of the
// file when 0 (plans without batching keep their bytes), and a value out
// of range is refused.
func TestSavedPlanKeepsCreateBatch(t *testing.T) {
	p := richPlan(t)
	if data := saved(t, p); bytes.Contains(data, []byte("create_batch")) {
		t.Errorf("a plan without batching writes create_batch")
	}
	p.Rollout.CreateBatch = 50
	data := saved(t, p)
	got, err := Load(bytes.NewReader(data))
	if err != nil || got.Rollout.CreateBatch != 50 {
		t.Fatalf("create_batch after a round trip: %d, %v", got.Rollout.CreateBatch, err)
	}
	bad := reseal(t, data, func(b map[string]any) { b["rollout"].(map[string]any)["create_batch"] = 101 })
	if _, err := Load(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "invalid rollout settings") {
		t.Errorf("create_batch 101 loaded: %v", err)
	}
}
