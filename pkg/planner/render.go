package planner

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// TextOptions tunes RenderText.
type TextOptions struct {
	// Color adds ANSI colours; the caller decides (TTY and no NO_COLOR).
	Color bool
	// FleetFile names the fleet file in "No changes. The fleet matches
	// FILE."; "" uses the plan's File.
	FleetFile string
}

// ANSI sequences used by RenderText when colour is on.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
)

// legend lists the symbols in the order the legend prints them.
var legend = []struct {
	action Action
	text   string
}{
	{Create, "create"},
	{Rebuild, "rebuild in-place"},
	{Update, "update in-place"},
	{Replace, "create replacement and then destroy"},
	{Delete, "destroy"},
}

// Symbol is an action's plan symbol (Terraform's convention), "" for no-op
// and unknown actions. It is the one home of the symbols: the plan text and
// the progress lines both use it. A replacement is "+/-", Terraform's
// create-before-destroy, because lkfleet creates the new device first.
func Symbol(a Action) string {
	switch a {
	case Create:
		return "+"
	case Delete:
		return "-"
	case Replace:
		return "+/-"
	case Rebuild, Update:
		return "~"
	}
	return ""
}

type textWriter struct {
	b     strings.Builder
	color bool
}

func (t *textWriter) paint(code, s string) string {
	if !t.color || s == "" {
		return s
	}
	return code + s + ansiReset
}

// symbol paints an action's symbol; a replacement shows a green + and a
// red - as it creates first and destroys after.
func (t *textWriter) symbol(a Action) string {
	switch a {
	case Create:
		return t.paint(ansiGreen, "+")
	case Delete:
		return t.paint(ansiRed, "-")
	case Replace:
		return t.paint(ansiGreen, "+") + "/" + t.paint(ansiRed, "-")
	case Rebuild, Update:
		return t.paint(ansiYellow, "~")
	}
	return " "
}

func (t *textWriter) line(format string, args ...any) {
	fmt.Fprintf(&t.b, format, args...)
	t.b.WriteByte('\n')
}

// RenderText writes the plan for a person, the way Terraform does: a
// legend of the symbols used, the changes grouped by wave in the order
// apply runs them, reasons as comments, warnings, and a summary last line.
func RenderText(w io.Writer, p Plan, o TextOptions) error {
	t := &textWriter{color: o.Color}
	file := o.FleetFile
	if file == "" {
		file = p.File
	}
	if file == "" {
		file = "the fleet file"
	}
	if len(p.Changes) > 0 {
		present := map[Action]bool{}
		for _, c := range p.Changes {
			present[c.Action] = true
		}
		t.line("lkfleet compared fleet %q with the devices of project %s.", p.Fleet, orNone(p.Project))
		t.line("Changes are indicated with the following symbols:")
		for _, l := range legend {
			if present[l.action] {
				pad := strings.Repeat(" ", 3-len(Symbol(l.action)))
				t.line("%s%s %s", pad, t.symbol(l.action), l.text)
			}
		}
		t.line("")
		t.line("lkfleet will perform the following actions, wave by wave:")
		wave := -1
		for _, c := range p.Changes {
			if c.Wave != wave {
				wave = c.Wave
				t.line("")
				t.line("%s", t.paint(ansiBold, waveTitle(p, wave)))
			}
			t.line("")
			t.change(c)
		}
	}
	t.spotLines(p) // hardware_render.go
	for _, warn := range p.Warnings {
		t.line("")
		t.line("%s %s", t.paint(ansiBold+ansiYellow, "Warning:"), warn)
	}
	t.line("")
	if len(p.Changes) == 0 {
		t.line("%s", t.paint(ansiBold+ansiGreen, "No changes.")+" The fleet matches "+file+".")
	} else {
		s := p.Summary()
		t.line("%s %d to add, %d to rebuild, %d to change, %d to destroy.%s",
			t.paint(ansiBold, "Plan:"), s.Add, s.Rebuild, s.Change, s.Destroy, costSuffix(p.Cost))
	}
	_, err := io.WriteString(w, t.b.String())
	return err
}

// waveTitle is "Wave N (zones: a, b)", N counting from 1 as people do.
func waveTitle(p Plan, wave int) string {
	title := "Wave " + strconv.Itoa(wave+1)
	if wave >= 0 && wave < len(p.Rollout.Waves) && len(p.Rollout.Waves[wave]) > 0 {
		title += " (zones: " + strings.Join(p.Rollout.Waves[wave], ", ") + ")"
	}
	return title
}

func headline(c Change) string {
	name := "device " + strconv.Quote(c.Hostname())
	switch c.Action {
	case Create:
		return name + " will be created"
	case Delete:
		return name + " will be destroyed"
	case Replace:
		return name + " must be replaced"
	case Rebuild:
		if !c.Strategy.InPlace() {
			return name + " will be rebuilt (recreate: a new device first, then this one is destroyed)"
		}
		return name + " will be rebuilt in-place (" + string(c.Strategy) + ")"
	case Update:
		return name + " will be updated in-place"
	}
	return name + " is unchanged"
}

func (t *textWriter) change(c Change) {
	t.line("  %s", t.paint(ansiBold, "# "+headline(c)))
	for _, r := range c.Reasons {
		t.line("  #   %s", r)
	}
	pad := strings.Repeat(" ", 3-len(cmp.Or(Symbol(c.Action), " ")))
	t.line("%s%s device %q {", pad, t.symbol(c.Action), c.Hostname())

	// Context first: what identifies the device, unless it is an attribute.
	type row struct {
		sym, name, value, note string
	}
	var rows []row
	has := map[string]bool{}
	for _, a := range c.Attrs {
		has[a.Name] = true
	}
	if c.Action != Create && !has["slot"] {
		rows = append(rows, row{name: "slot", value: strconv.Quote(c.Slot())})
	}
	if c.DeviceID() != "" && !has["id"] {
		rows = append(rows, row{name: "id", value: strconv.Quote(c.DeviceID())})
	}
	for _, a := range c.Attrs {
		r := row{name: a.Name}
		switch {
		case c.Action == Create || (a.Before == "" && a.After != ""):
			r.sym, r.value = t.symbol(Create), fmtValue(a.After)
		case c.Action == Delete || (a.After == "" && a.Before != ""):
			r.sym, r.value = t.symbol(Delete), fmtValue(a.Before)
		default:
			r.sym, r.value = t.paint(ansiYellow, "~"), fmtValue(a.Before)+" -> "+fmtValue(a.After)
		}
		if a.Forces {
			r.note = " " + t.paint(ansiRed, "# forces replacement")
		}
		rows = append(rows, r)
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	for _, r := range rows {
		sym := r.sym
		if sym == "" {
			sym = " "
		}
		t.line("      %s %-*s = %s%s", sym, width, r.name, r.value, r.note)
	}
	t.line("    }")
}

// fmtValue quotes strings but not booleans, lists or values only known later.
func fmtValue(v string) string {
	switch {
	case v == "true", v == "false", v == KnownAfterApply, strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"):
		return v
	}
	return strconv.Quote(v)
}

// JSONFormatVersion is the version of the `plan -o json` schema
// (docs/plan-format.md). Fields are only ever added within a version.
const JSONFormatVersion = "1"

type jsonPlan struct {
	FormatVersion string       `json:"format_version"`
	Fleet         string       `json:"fleet"`
	Project       string       `json:"project"`
	Changes       []jsonChange `json:"changes"`
	Warnings      []string     `json:"warnings"`
	Summary       jsonSummary  `json:"summary"`
	Cost          *jsonCost    `json:"cost,omitempty"` // hardware_render.go
}

type jsonChange struct {
	Action     Action        `json:"action"`
	Slot       string        `json:"slot"`
	Hostname   string        `json:"hostname"`
	Wave       int           `json:"wave"`
	DeviceID   string        `json:"device_id"`
	Reasons    []string      `json:"reasons"`
	Attributes []jsonAttr    `json:"attributes"`
	Strategy   spec.Strategy `json:"strategy"`
	// Reservation: hardware_render.go.
	Reservation      string `json:"reservation,omitempty"`
	ReservationAfter string `json:"reservation_after,omitempty"`
}

type jsonAttr struct {
	Name              string `json:"name"`
	Before            string `json:"before"`
	After             string `json:"after"`
	ForcesReplacement bool   `json:"forces_replacement"`
}

type jsonSummary struct {
	Add       int `json:"add"`
	Rebuild   int `json:"rebuild"`
	Change    int `json:"change"`
	Destroy   int `json:"destroy"`
	Unchanged int `json:"unchanged"`
}

// RenderJSON writes the plan in the stable schema of docs/plan-format.md
// (format_version "1"): arrays are never null, waves count from 1.
func RenderJSON(w io.Writer, p Plan) error {
	out := jsonPlan{
		FormatVersion: JSONFormatVersion,
		Fleet:         p.Fleet,
		Project:       p.Project,
		Changes:       make([]jsonChange, 0, len(p.Changes)),
		Warnings:      append([]string{}, p.Warnings...),
	}
	for _, c := range p.Changes {
		jc := jsonChange{
			Action:     c.Action,
			Slot:       c.Slot(),
			Hostname:   c.Hostname(),
			Wave:       c.Wave + 1,
			DeviceID:   c.DeviceID(),
			Reasons:    append([]string{}, c.Reasons...),
			Attributes: make([]jsonAttr, 0, len(c.Attrs)),
			Strategy:   c.Strategy,

			Reservation: c.Reservation, ReservationAfter: c.ReservationAfter,
		}
		for _, a := range c.Attrs {
			jc.Attributes = append(jc.Attributes, jsonAttr{Name: a.Name, Before: a.Before, After: a.After, ForcesReplacement: a.Forces})
		}
		out.Changes = append(out.Changes, jc)
	}
	s := p.Summary()
	out.Summary = jsonSummary(s)
	out.Cost = costJSON(p.Cost)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("render plan as JSON: %w", err)
	}
	return nil
}
