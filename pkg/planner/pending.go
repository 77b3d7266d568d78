package planner

import (
	"fmt"
	"slices"
	"strings"
)

// The pending marker (TagPending) comes in two forms.
//
//   - lkfleet:pending=RUN/FROM, written by the one PUT of an in-place
//     rebuild under a lease that records finished runs (the default): the
//     rev tag already names the new rev, RUN is the run that wrote the PUT
//     and FROM the rev the device had before it ("" if none), which it
//     still runs until its reboot or reinstall is sent. The marker is
//     settled, and the rev tag true, once the lease record says RUN
//     finished having sent that device's action (Runs.Sent); until then
//     (RUN killed, or its action failed) the device is unfinished: plan
//     rebuilds it, and status shows FROM. The marker is never removed on
//     its own: the next PUT of the device (its next rebuild or update)
//     drops it, and a finished run is kept in the record as long as a
//     device of the fleet carries its marker (docs/reliability.md).
//   - lkfleet:pending=REV, written when no record is kept (--lock none):
//     the rev tag keeps the old rev, REV is the rev being rolled out, and
//     a second PUT after the action writes the new rev tag and drops the
//     marker. A device still carrying it is unfinished.

// Marker is a device's pending marker, parsed (see TagPending).
type Marker struct {
	// Run is the run that wrote the marker; "" for the form without one.
	Run string
	// From is the rev the device may still run: the rev it had before the
	// rebuild's PUT.
	From string
	// To is the rev the rebuild rolls out.
	To string
}

// Marker returns the device's pending marker; false when it has none.
func (l Live) Marker() (Marker, bool) {
	v := l.Pending()
	if v == "" {
		return Marker{}, false
	}
	if run, from, ok := strings.Cut(v, "/"); ok {
		return Marker{Run: run, From: from, To: l.Rev()}, true
	}
	return Marker{From: l.Rev(), To: v}, true
}

// PendingValue is the value of the marker that run's PUT of an in-place
// rebuild writes on a device that had rev from (see TagPending).
func PendingValue(run, from string) string { return run + "/" + from }

// Runs is what a fleet's lease record says about the runs that finished:
// for each, the devices whose rebuild PUT it may have made without its
// reboot or reinstall being accepted. The zero Runs knows of none, so every
// marker reads as unfinished: the safe reading without a record.
type Runs struct {
	unconfirmed map[string]map[string]bool
	order       []string // oldest first, as the record lists them
	// Max is how many finished runs the record keeps (lease.MaxRuns; 0:
	// no bound known). A run that finishes drops the oldest runs beyond
	// it, so a plan with in-place rebuilds clears the markers of the runs
	// it would drop first (settledCleanup).
	Max int
}

// Finish records that run finished; unconfirmed are the devices whose
// action it did not get accepted. Runs are given oldest first.
func (r *Runs) Finish(run string, unconfirmed []string) {
	if r.unconfirmed == nil {
		r.unconfirmed = map[string]map[string]bool{}
	}
	if _, ok := r.unconfirmed[run]; !ok {
		r.order = append(r.order, run)
	}
	set := make(map[string]bool, len(unconfirmed))
	for _, id := range unconfirmed {
		set[id] = true
	}
	r.unconfirmed[run] = set
}

// Sent reports whether run finished having sent device id's reboot or
// reinstall.
func (r Runs) Sent(run, id string) bool {
	unc, ok := r.unconfirmed[run]
	return ok && run != "" && !unc[id]
}

// Len is the number of finished runs recorded.
func (r Runs) Len() int { return len(r.unconfirmed) }

// Unfinished reports whether l carries a pending marker that runs does not
// settle: its new boot configuration may not have been booted.
func (l Live) Unfinished(runs Runs) bool {
	m, ok := l.Marker()
	return ok && !runs.Sent(m.Run, l.ID)
}

// BootedRev is the rev l runs as far as the API can tell: its rev tag,
// except for an unfinished rebuild (Unfinished), which may still run the
// rev it had before.
func (l Live) BootedRev(runs Runs) string {
	if m, ok := l.Marker(); ok && !runs.Sent(m.Run, l.ID) {
		return m.From
	}
	return l.Rev()
}

// settledCleanup turns into updates the no-change slots whose settled
// markers name a run the record is about to drop. Only a plan with an
// in-place rebuild makes a run that records itself; its record keeps the
// earlier runs whose markers remain after it (the devices it neither
// rebuilds in place nor updates), newest Max in all with its own. Each
// device marked by one of the older runs gets the update PUT that writes
// lkfleet's tags without the marker (the rev tag is already true), so no
// marker is ever misread once its run has left the record.
func settledCleanup(p *Plan, runs Runs, quiet []Change) {
	if runs.Max <= 0 || !slices.ContainsFunc(p.Changes, func(c Change) bool { return c.Action == Rebuild && c.Strategy.InPlace() }) {
		return
	}
	rewritten := map[string]bool{}
	for _, c := range p.Changes {
		if c.Live != nil && (c.Action == Update || (c.Action == Rebuild && c.Strategy.InPlace())) {
			rewritten[c.Live.ID] = true
		}
	}
	// The settled runs whose markers remain, in the record's order.
	remain := map[string]bool{}
	for _, c := range p.Changes {
		if l := c.Live; l != nil && !rewritten[l.ID] {
			if m, ok := l.Marker(); ok && runs.Sent(m.Run, l.ID) {
				remain[m.Run] = true
			}
		}
	}
	for _, c := range quiet {
		if m, ok := c.Live.Marker(); ok && runs.Sent(m.Run, c.Live.ID) {
			remain[m.Run] = true
		}
	}
	var kept []string
	for _, r := range runs.order {
		if remain[r] {
			kept = append(kept, r)
		}
	}
	n := len(kept) + 1 - runs.Max // the new run takes one place
	if n <= 0 {
		return
	}
	drop := map[string]bool{}
	for _, r := range kept[:n] {
		drop[r] = true
	}
	for _, c := range quiet {
		m, ok := c.Live.Marker()
		if !ok || !drop[m.Run] || !runs.Sent(m.Run, c.Live.ID) {
			continue
		}
		c.Action = Update
		c.Reasons = []string{fmt.Sprintf("clear the settled marker of rebuild run %s: the fleet's lease record keeps the newest %d runs, and this apply's rebuilds would drop it", m.Run, runs.Max)}
		c.Attrs = []AttrDiff{{Name: "pending", Before: c.Live.Pending(), After: "(none)"}}
		p.Changes = append(p.Changes, c)
		p.NoOps--
	}
}

// SettledRuns returns the runs whose settled markers (see Runs.Sent) the
// devices carry, each once, in the order first seen: the finished runs a
// lease record must keep. A marker its run does not settle reads as
// unfinished whether or not the run stays recorded.
func SettledRuns(live []Live, runs Runs) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range live {
		if m, ok := l.Marker(); ok && runs.Sent(m.Run, l.ID) && !seen[m.Run] {
			seen[m.Run] = true
			out = append(out, m.Run)
		}
	}
	return out
}
