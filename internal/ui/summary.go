package ui

import (
	"fmt"
	"strings"
	"time"
)

// SummaryInput is what the closing summary reports. The CLI fills it from
// the executor's result and the API client's request counters; it is the
// ui's own type so the two packages can change independently.
type SummaryInput struct {
	// Destroy selects the destroy wording ("Destroy complete: 5 destroyed").
	Destroy bool
	// Counts of changes that were carried out.
	Added, Rebuilt, Changed, Destroyed int
	Elapsed                            time.Duration
	// Requests is the number of API requests made, Throttled how many of
	// them the server refused with 429.
	Requests, Throttled int
	// Failed lists the devices that ended failed (after their retries).
	Failed []FailedLine
	// Interrupted is true when the run was cancelled (Ctrl-C, or an API
	// that stayed unreachable).
	Interrupted bool
	// TimedOut is true when --timeout stopped the run with changes not
	// done; Timeout is the limit, for the headline.
	TimedOut bool
	Timeout  time.Duration
	// NotDone describes, one per line, the changes that were not carried
	// out, e.g. "+ web-ewr1-1 (web/ewr1/1)".
	NotDone []string
	// Halted is why the rollout stopped early, "" if it did not.
	Halted string
	// Command is the exact command that resumes this run, for the hint
	// (the CLI builds it from its flags); "" means "lkfleet apply" (or
	// "lkfleet destroy").
	Command string
}

// FailedLine is one device that failed, as the summary names it.
type FailedLine struct {
	Hostname string
	Slot     string
	DeviceID string
	// Reason is the device's last event or the API's refusal.
	Reason string
}

// String renders the device as `hostname (slot) id ID: reason`.
func (f FailedLine) String() string {
	s := deviceLabel("", f.Hostname, f.Slot)
	if f.DeviceID != "" {
		if s != "" {
			s += " "
		}
		s += "id " + clean(f.DeviceID)
	}
	if r := clean(f.Reason); r != "" {
		s += ": " + r
	}
	return s
}

// Outcome names how a run ended, in the summary's first word after the
// operation and in the JSON summary's "result".
func (in SummaryInput) Outcome() string {
	switch {
	case in.TimedOut:
		return "timed_out"
	case in.Interrupted:
		return "interrupted"
	case in.Halted != "":
		return "halted"
	case len(in.Failed) > 0:
		return "failed"
	}
	return "complete"
}

// Headline is the summary's first line, e.g.
// `Apply complete: 5 added, 2 rebuilt, 0 changed, 1 destroyed in 14.2s (83 API requests, 0 throttled).`
func (in SummaryInput) Headline() string {
	op, counts := "Apply", fmt.Sprintf("%d added, %d rebuilt, %d changed, %d destroyed",
		in.Added, in.Rebuilt, in.Changed, in.Destroyed)
	if in.Destroy {
		op, counts = "Destroy", fmt.Sprintf("%d destroyed", in.Destroyed)
	}
	outcome := in.Outcome()
	if in.TimedOut {
		outcome = "stopped at --timeout " + in.Timeout.String()
	}
	return fmt.Sprintf("%s %s: %s in %s (%s, %d throttled).",
		op, outcome, counts, FormatDuration(in.Elapsed),
		plural(in.Requests, "API request", "API requests"), in.Throttled)
}

// Lines renders the whole summary without colour: the headline, then what
// failed, why the rollout halted, what was not done and how to resume.
func (in SummaryInput) Lines() []string {
	lines := []string{in.Headline()}
	if in.Halted != "" {
		lines = append(lines, "Halted: "+clean(in.Halted))
	}
	if len(in.Failed) > 0 {
		lines = append(lines, plural(len(in.Failed), "device", "devices")+" failed:")
		for _, f := range in.Failed {
			lines = append(lines, "  "+f.String())
		}
	}
	if len(in.NotDone) > 0 {
		lines = append(lines, fmt.Sprintf("Not done (%d):", len(in.NotDone)))
		for _, s := range in.NotDone {
			lines = append(lines, "  "+clean(s))
		}
	}
	if hint := in.resumeHint(); hint != "" {
		lines = append(lines, hint)
	}
	return lines
}

// resumeCommand is the command that continues the run, "" when complete.
func (in SummaryInput) resumeCommand() string {
	if in.Outcome() == "complete" {
		return ""
	}
	switch {
	case in.Command != "":
		return in.Command
	case in.Destroy:
		return "lkfleet destroy"
	}
	return "lkfleet apply"
}

func (in SummaryInput) resumeHint() string {
	cmd := in.resumeCommand()
	switch in.Outcome() {
	case "interrupted", "timed_out":
		return fmt.Sprintf("Run `%s` again to finish: it picks up where this run stopped.", cmd)
	case "halted":
		return fmt.Sprintf("Fix the cause, then run `%s` again to continue the rollout.", cmd)
	case "failed":
		return fmt.Sprintf("Run `%s` again to retry the failed devices; the others are left as they are.", cmd)
	}
	return ""
}

// jsonSummary is the JSON lines schema of the summary (docs/output.md).
type jsonSummary struct {
	Time           string           `json:"time"`
	Kind           string           `json:"kind"`
	Operation      string           `json:"operation"`
	Result         string           `json:"result"`
	Added          int              `json:"added"`
	Rebuilt        int              `json:"rebuilt"`
	Changed        int              `json:"changed"`
	Destroyed      int              `json:"destroyed"`
	ElapsedSeconds float64          `json:"elapsed_seconds"`
	Requests       int              `json:"requests"`
	Throttled      int              `json:"throttled"`
	Failed         []jsonFailedLine `json:"failed"`
	NotDone        []string         `json:"not_done"`
	Halted         string           `json:"halted"`
	Message        string           `json:"message"`
	// Resume is the command that continues the run, "" when complete.
	Resume string `json:"resume"`
}

type jsonFailedLine struct {
	Hostname string `json:"hostname"`
	Slot     string `json:"slot"`
	DeviceID string `json:"device_id"`
	Reason   string `json:"reason"`
}

// Summary stops the live view and prints the closing summary: text in
// Plain and TTY mode (coloured by outcome on a colour terminal), one JSON
// object with kind "summary" in JSON mode. It returns the first error met
// while writing anything.
func (r *Reporter) Summary(in SummaryInput) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
	if r.mode == JSON {
		op := "apply"
		if in.Destroy {
			op = "destroy"
		}
		j := jsonSummary{
			Time: r.opts.Now().UTC().Format(time.RFC3339Nano), Kind: "summary",
			Operation: op, Result: in.Outcome(),
			Added: in.Added, Rebuilt: in.Rebuilt, Changed: in.Changed, Destroyed: in.Destroyed,
			ElapsedSeconds: in.Elapsed.Round(time.Millisecond).Seconds(),
			Requests:       in.Requests, Throttled: in.Throttled,
			Failed:  []jsonFailedLine{},
			NotDone: []string{},
			Halted:  clean(in.Halted),
			Message: in.Headline(),
			Resume:  in.resumeCommand(),
		}
		for _, f := range in.Failed {
			j.Failed = append(j.Failed, jsonFailedLine{clean(f.Hostname), clean(f.Slot), clean(f.DeviceID), clean(f.Reason)})
		}
		for _, s := range in.NotDone {
			j.NotDone = append(j.NotDone, clean(s))
		}
		r.writeJSON(j)
		return r.err
	}
	lines := in.Lines()
	if r.live != nil && r.live.p != nil {
		// Set the summary apart from the final bars.
		lines = append([]string{""}, lines...)
	}
	head := len(lines) - len(in.Lines())
	switch in.Outcome() {
	case "complete":
		lines[head] = r.colors.green(r.colors.bold(lines[head]))
	case "failed":
		lines[head] = r.colors.red(r.colors.bold(lines[head]))
	default:
		lines[head] = r.colors.yellow(r.colors.bold(lines[head]))
	}
	r.write(strings.Join(lines, "\n") + "\n")
	return r.err
}
