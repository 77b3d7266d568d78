package lease

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Run is one finished run in a fleet's lease record: the completion
// record of an apply whose in-place rebuilds left pending markers naming
// it (planner.TagPending). It says "run ID finished at At, having sent the
// reboot or reinstall of every device it marked, except Unconfirmed".
// Only the holder writes it, at release, after its last request; a run
// killed, or one that lost its lease, never does, so its markers read as
// unfinished and the next plan rebuilds those devices.
type Run struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
	// Unconfirmed are the devices whose rebuild PUT the run may have made
	// without its action being accepted (the action failed, or Ctrl-C came
	// during the PUT): O(failures), never the run's whole list.
	Unconfirmed []string `json:"unconfirmed,omitempty"`
}

// MaxRuns bounds the finished runs a record keeps. A run leaves the record
// once no device of the fleet carries its marker (each rebuild's or
// update's PUT replaces the marker), so only a fleet whose devices were
// last rebuilt by more than MaxRuns different runs reaches it; then the
// oldest runs' markers read as unfinished, and those devices are rebuilt
// once more (an extra reboot, never a wrong image). The record stays a few
// kilobytes whatever the fleet's size.
const MaxRuns = 64

// RunID is the run id of the acquisition i names: the random part of its
// Holder (12 hex digits), unique per run, short enough for a tag.
func (i Info) RunID() string {
	return i.Holder[strings.LastIndexByte(i.Holder, '/')+1:]
}

// Recorder is implemented by backends that keep a record of finished runs
// next to the lease (both the customdata and the etcd backend do; None
// does not, and then the executor falls back to the two-PUT rebuild).
type Recorder interface {
	// State reads the live lease (nil if free) and the finished runs, in
	// one read: plan and status pay no request for the runs.
	State(ctx context.Context) (*Info, []Run, error)
	// ReleaseFinished gives the lease up like Release and records run as
	// finished, keeping of the earlier runs those whose ids keep lists
	// (the runs whose markers the fleet's devices carry, as listed under
	// the lease), newest MaxRuns in all. Nothing is written when the lease
	// is no longer ours.
	ReleaseFinished(ctx context.Context, run Run, keep []string) error
}

// nextRuns is the record's runs after run finished: the earlier ones in
// keep (in their order), then run, the newest MaxRuns of them.
func nextRuns(prev []Run, run Run, keep []string) []Run {
	out := make([]Run, 0, len(prev)+1)
	for _, r := range prev {
		if r.ID != run.ID && slices.Contains(keep, r.ID) {
			out = append(out, r)
		}
	}
	out = append(out, run)
	if n := len(out) - MaxRuns; n > 0 {
		out = out[n:]
	}
	return out
}

// FinishRelease releases h, recording run as finished when the backend
// keeps a record (Recorder); otherwise it is Release.
func (h *Held) FinishRelease(run Run, keep []string) error {
	rec, ok := h.lock.(Recorder)
	if !ok {
		return h.Release()
	}
	return h.release(func(ctx context.Context) error { return rec.ReleaseFinished(ctx, run, keep) })
}
