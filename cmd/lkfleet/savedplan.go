package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lkfleet/lkfleet/internal/fileinput"
	"github.com/lkfleet/lkfleet/pkg/packet"
	"github.com/lkfleet/lkfleet/pkg/pipeline"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

// readSavedPlan reads a plan saved by 'plan --out' and says which fleet
// file it is for: -f when given, else the file the plan records, which is
// relative to the plan's own directory (savePlan writes it so), so
// `lkfleet apply PLANFILE` works from anywhere. A file that is not a
// saved plan is named for what it is: a fleet file (did you mean -f?) or
// the JSON of 'plan -o json'.
func readSavedPlan(path, file string, fileGiven bool) (planner.Plan, string, error) {
	data, err := fileinput.Read(path, fileinput.MaxPlanFile)
	if err != nil {
		return planner.Plan{}, "", fmt.Errorf("read plan: %w", err)
	}
	plan, err := planner.Load(bytes.NewReader(data))
	if err != nil {
		if what := notAPlan(data); what != "" {
			return planner.Plan{}, "", fmt.Errorf("%s %s; apply takes a plan saved by 'lkfleet plan --out FILE'%s", path, what, didYouMean(path, data))
		}
		return planner.Plan{}, "", fmt.Errorf("read plan %s: %w", path, err)
	}
	switch {
	case fileGiven:
	case plan.File == "" || plan.File == "-":
		return planner.Plan{}, "", fmt.Errorf("plan %s does not record where its fleet file is (it was read from standard input): pass -f FILE", path)
	case filepath.IsAbs(plan.File):
		file = plan.File
	default:
		file = filepath.Join(filepath.Dir(path), plan.File)
	}
	return plan, file, nil
}

// notAPlan says what data is when it is a known file that is not a saved
// plan, "" when it is something else.
func notAPlan(data []byte) string {
	var j struct {
		FormatVersion string          `json:"format_version"`
		Changes       json.RawMessage `json:"changes"`
		Summary       json.RawMessage `json:"summary"`
		Kind          string          `json:"kind"`
	}
	if json.Unmarshal(data, &j) == nil && j.Kind == "" && j.Changes != nil && j.Summary != nil {
		return "is the output of 'lkfleet plan -o json' (for reading, not applying: it has no rendered scripts and no checksum)"
	}
	var y map[string]any
	if json.Valid(data) || yaml.Unmarshal(data, &y) != nil {
		return ""
	}
	if _, ok := y["groups"]; ok {
		return "is a fleet file, not a saved plan"
	}
	if _, ok := y["apiVersion"]; ok {
		return "is a fleet file, not a saved plan"
	}
	return ""
}

// didYouMean suggests -f for a fleet file given as the plan argument.
func didYouMean(path string, data []byte) string {
	if strings.HasPrefix(notAPlan(data), "is a fleet file") {
		return fmt.Sprintf(": did you mean 'lkfleet apply -f %s'?", shellQuote(path))
	}
	return ""
}

// checkSavedPlan refuses a saved plan when the fleet file or the live
// devices changed since it was saved; beforeLive runs before the live
// check (pipeline.Request.BeforeLive).
func checkSavedPlan(ctx context.Context, client *packet.Client, src fleetSource, plan planner.Plan, path string, beforeLive func(context.Context) error) (_ *planned, err error) {
	fleet := src.fleet
	defer func() { err = explain(err, fleet) }()
	if err := pipeline.CheckSaved(ctx, client, pipeline.Saved{Plan: plan, Path: path}, fleet, src.bytes, beforeLive); err != nil {
		return nil, err
	}
	return &planned{fleet: fleet, client: client, plan: plan}, nil
}

// planForSaving is p as savePlan writes it to path: the fleet file it
// records is relative to the plan's directory, so apply finds it whatever
// the directory apply runs in.
func planForSaving(p planner.Plan, path, fleetFile string) planner.Plan {
	if fleetFile == "-" {
		p.File = "-"
		return p
	}
	planDir, err1 := filepath.Abs(filepath.Dir(path))
	file, err2 := filepath.Abs(fleetFile)
	if err1 != nil || err2 != nil {
		return p
	}
	if rel, err := filepath.Rel(planDir, file); err == nil {
		p.File = rel
	} else {
		p.File = file
	}
	return p
}
