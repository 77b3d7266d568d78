package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

// plainTime is the timestamp of a plain line: UTC, whole seconds, so that
// lines from one run sort and diff cleanly in CI logs.
const plainTime = "2006-01-02T15:04:05Z"

// ttyTime is the shorter clock shown on lines printed above the live view.
const ttyTime = "15:04:05"

// Symbol is the plan symbol of an action, as the plan rendering shows it
// (Terraform's convention), or "" for no-op and unknown actions.
func Symbol(a planner.Action) string { return planner.Symbol(a) }

// waveLabel is how a wave is named to a person: 1-based, "-" when the event
// is not about a wave.
func waveLabel(wave int) string {
	if wave < 0 {
		return "wave -"
	}
	return fmt.Sprintf("wave %d", wave+1)
}

// deviceLabel is `SYM HOSTNAME (SLOT)`, leaving out whatever is unknown.
func deviceLabel(a planner.Action, hostname, slot string) string {
	var parts []string
	if s := Symbol(a); s != "" {
		parts = append(parts, s)
	}
	if hostname != "" {
		parts = append(parts, clean(hostname))
	}
	if slot != "" {
		parts = append(parts, "("+clean(slot)+")")
	}
	return strings.Join(parts, " ")
}

// startedVerb and doneVerb describe a mutation being sent and accepted.
var (
	startedVerb = map[planner.Action]string{
		planner.Create:  "creating",
		planner.Delete:  "deleting",
		planner.Replace: "replacing",
		planner.Rebuild: "rebuilding",
		planner.Update:  "updating",
	}
	doneVerb = map[planner.Action]string{
		planner.Create:  "created",
		planner.Delete:  "deleted",
		planner.Replace: "replacement created",
		planner.Rebuild: "rebuild started",
		planner.Update:  "updated",
	}
)

// eventText is the part of a line after the device: a verb, the device
// id when known, then ": detail" (the message and the error).
func eventText(e executor.Event, waveInfo string) string {
	var verb string
	withID := true
	switch e.Kind {
	case executor.WaveStarted:
		verb, withID = "started", false
		if waveInfo != "" {
			verb += ": " + waveInfo
		}
		return joinDetail(verb, "", e.Err)
	case executor.WaveDone:
		verb, withID = "done", false
		if waveInfo != "" {
			verb += ": " + waveInfo
		}
		return joinDetail(verb, e.Message, e.Err)
	case executor.ChangeStarted:
		verb = orDefault(startedVerb[e.Action], "starting "+string(e.Action))
	case executor.ChangeDone:
		verb = orDefault(doneVerb[e.Action], string(e.Action)+" accepted")
	case executor.ChangeFailed:
		verb = orDefault(string(e.Action), "change") + " failed"
	case executor.DeviceState:
		verb = orDefault(clean(e.State), "state unknown")
	case executor.DeviceReady:
		verb = "ready"
	case executor.DeviceFailed:
		verb = "failed"
	case executor.Retrying:
		verb = "retrying"
	case executor.Halted:
		verb, withID = "halted", false
	case executor.Info:
		text := joinDetail("", e.Message, e.Err)
		if e.DeviceID != "" {
			text += " (" + clean(e.DeviceID) + ")"
		}
		return strings.TrimSpace(text)
	default:
		verb = clean(string(e.Kind))
	}
	if withID && e.DeviceID != "" {
		verb += " " + clean(e.DeviceID)
	}
	if e.Kind == executor.DeviceReady && e.State != "" {
		verb += " (" + clean(e.State) + ")"
	}
	msg := e.Message
	if redundant(msg, e.Action) {
		msg = ""
	}
	return joinDetail(verb, msg, e.Err)
}

// redundant reports whether a change event's message only repeats what
// the line already says ("delete", "created"), so it is left out.
func redundant(msg string, a planner.Action) bool {
	m := strings.ToLower(strings.TrimSpace(msg))
	if m == "" {
		return false
	}
	if m == string(a) || m == startedVerb[a] || m == doneVerb[a] {
		return true
	}
	switch m {
	case "created", "deleted", "updated", "replaced", "rebuilt":
		return true
	}
	return false
}

// joinDetail appends ": message: error" to verb, skipping empty parts.
func joinDetail(verb, msg string, err error) string {
	parts := make([]string, 0, 3)
	if verb != "" {
		parts = append(parts, verb)
	}
	if m := clean(msg); m != "" {
		parts = append(parts, m)
	}
	if err != nil {
		// Messages often already quote the error ("list devices: ...").
		if m := clean(err.Error()); m != "" && !strings.Contains(clean(msg), m) {
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, ": ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clean makes a message safe for one line of a log or a terminal: line
// breaks become "; ", tabs spaces, and other control characters (escape
// sequences from a remote message could repaint a terminal) are dropped.
func clean(s string) string {
	if s == "" {
		return s
	}
	needs := false
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			needs = true
			break
		}
	}
	if !needs {
		return strings.TrimSpace(s)
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r':
			b.WriteString("; ")
		case r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(b.String()), ";"))
}

// line is one event as text without the timestamp:
// `wave N  SYM HOSTNAME (SLOT)  TEXT`.
func line(e executor.Event, waveInfo string) string {
	parts := []string{waveLabel(e.Wave)}
	if e.Slot != "" || e.Hostname != "" {
		parts = append(parts, deviceLabel(e.Action, e.Hostname, e.Slot))
	}
	if t := eventText(e, waveInfo); t != "" {
		parts = append(parts, t)
	}
	return strings.Join(parts, "  ")
}

// FormatDuration renders a duration the way the summary shows it: tenths
// of a second under a minute ("14.2s"), whole seconds above ("2m5s").
func FormatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// FormatAge renders how old something is the way tables show ages (as
// kubectl does): whole units, at most two of them, "13s", "4m5s", "3h4m",
// "2d3h". Tenths of a second mean nothing in an age.
func FormatAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return twoUnits(s/60, "m", s%60, "s")
	case s < 86400:
		return twoUnits(s/3600, "h", s%3600/60, "m")
	}
	return twoUnits(s/86400, "d", s%86400/3600, "h")
}

// twoUnits is "4m5s", or "4m" when the smaller unit is zero.
func twoUnits(a int64, ua string, b int64, ub string) string {
	if b == 0 {
		return fmt.Sprintf("%d%s", a, ua)
	}
	return fmt.Sprintf("%d%s%d%s", a, ua, b, ub)
}

// shortDuration is the calmer clock of the live view: whole seconds, so
// the numbers do not churn at every refresh.
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}

// plural returns "1 thing" or "N things".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
