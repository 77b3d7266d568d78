// Package ui renders what lkfleet does: the progress of apply and destroy
// (a live view on a terminal, timestamped lines for CI logs, or JSON
// lines), the closing summary, and the small terminal helpers commands
// share (confirmation prompt, aligned tables, colour decision).
//
// The executor never prints; it sends executor.Event values, and a
// Reporter turns them into output. Nothing here sees credentials, and
// messages are reduced to one line of printable text before they are
// written.
package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

// Mode selects how a Reporter writes.
type Mode int

const (
	// Plain writes one timestamped line per event: for CI logs and pipes.
	Plain Mode = iota
	// TTY draws a live view (a progress bar per wave) and prints failures
	// above it as they happen.
	TTY
	// JSON writes one JSON object per line per event, then a summary object.
	JSON
)

// String returns the name used by --output.
func (m Mode) String() string {
	switch m {
	case Plain:
		return "plain"
	case TTY:
		return "tty"
	case JSON:
		return "json"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode turns an --output value into a Mode. "auto" (or "") picks the
// live view on a terminal and plain lines otherwise.
func ParseMode(output string, tty bool) (Mode, error) {
	switch output {
	case "", "auto":
		if tty {
			return TTY, nil
		}
		return Plain, nil
	case "plain", "text":
		return Plain, nil
	case "tty":
		return TTY, nil
	case "json":
		return JSON, nil
	}
	return Plain, fmt.Errorf("parse output mode %q: want auto, plain, tty or json", output)
}

// Options tune a Reporter. The zero value is ready to use.
type Options struct {
	// NoColor turns ANSI colours off. Colours are only ever used in TTY
	// mode; the caller decides from the environment (see IsColor).
	NoColor bool
	// Now is the clock for events without a time, the live view's elapsed
	// time and ETA, and the summary's timestamp; nil means time.Now. The
	// live view calls it from its own goroutines.
	Now func() time.Time
	// Width is the live view's width when the output is not a real
	// terminal (whose own width wins); 0 means 80.
	Width int
	// RefreshRate is how often the live view redraws; 0 means 200ms, slow
	// enough to stay calm and fast enough to feel live.
	RefreshRate time.Duration
	// Coalesce, when positive, gathers the plain and JSON lines written
	// within this long of the first one not yet out into one write: the
	// same bytes, at most Coalesce late, instead of one write system call
	// per event (a 1,000-device apply prints about 5,000 lines). Close and
	// Summary write out what is pending. 0 writes every line at once.
	Coalesce time.Duration
}

// Reporter writes progress events and the closing summary in one Mode.
// Event may be called from several goroutines at once.
type Reporter struct {
	mu     sync.Mutex
	w      io.Writer
	mode   Mode
	opts   Options
	colors palette
	track  tracker
	live   *liveView // TTY mode only, started at the first wave
	closed bool
	err    error // first write error
	// pending holds the lines Coalesce holds back; flush is the timer that
	// writes them out.
	pending []byte
	flush   *time.Timer
	// failedShown holds, per device id, the reason of the device_failed
	// line last printed, so the change_failed that repeats it is not.
	failedShown map[string]string
}

// New returns a Reporter writing to w in mode.
func New(w io.Writer, mode Mode, opts Options) *Reporter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RefreshRate <= 0 {
		opts.RefreshRate = 200 * time.Millisecond
	}
	if opts.Width <= 0 {
		opts.Width = 80
	}
	return &Reporter{
		w:      w,
		mode:   mode,
		opts:   opts,
		colors: palette{on: mode == TTY && !opts.NoColor},
	}
}

// Mode returns the mode the Reporter writes in.
func (r *Reporter) Mode() Mode { return r.mode }

// SetPlan tells the Reporter how many changes each wave holds, so the
// live view knows its totals before the first event. Call it before
// Apply starts; events for changes it did not list still count.
func (r *Reporter) SetPlan(p planner.Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.track.setPlan(p)
	if r.mode == TTY && !r.closed {
		for _, w := range r.track.waves {
			r.liveView().addWave(w)
		}
	}
}

// Event reports one executor event. It is safe to call from several
// goroutines; the executor's OnEvent callback can be this method.
func (r *Reporter) Event(e executor.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = r.opts.Now()
	}
	w := r.track.apply(e)
	if r.mode != JSON && r.repeats(e) {
		// Counted in the bars all the same; JSON keeps every event.
		if r.mode == TTY && !r.closed && w != nil {
			lv := r.liveView()
			lv.addWave(w)
			lv.update(w)
		}
		return
	}
	switch r.mode {
	case Plain:
		r.write(e.Time.UTC().Format(plainTime) + "  " + line(e, waveInfo(e, r.track.wave(e.Wave, false))) + "\n")
	case JSON:
		r.writeJSON(jsonEventOf(e))
	case TTY:
		if r.closed {
			return
		}
		lv := r.liveView()
		if w != nil {
			lv.addWave(w) // once; a wave may first appear through its events
			lv.update(w)
		}
		if aboveBars(e) {
			lv.print(r.ttyLine(e))
		}
	}
}

// repeats reports whether e only says again what a line printed or about
// to be printed says, so that each failure is told once: a device whose
// state turns failed gets a device_failed event with the reason right
// after, and a change that fails because its device did repeats that
// reason in its change_failed event.
func (r *Reporter) repeats(e executor.Event) bool {
	switch e.Kind {
	case executor.DeviceState:
		return e.State == "failed"
	case executor.DeviceFailed:
		if e.DeviceID != "" {
			if r.failedShown == nil {
				r.failedShown = map[string]string{}
			}
			r.failedShown[e.DeviceID] = clean(e.Message)
		}
	case executor.ChangeFailed:
		if e.DeviceID == "" || e.Err != nil {
			return false
		}
		shown, ok := r.failedShown[e.DeviceID]
		return ok && shown == clean(e.Message)
	}
	return false
}

// waveInfo is the wave account wave_started and wave_done lines carry.
func waveInfo(e executor.Event, w *waveState) string {
	switch e.Kind {
	case executor.WaveStarted:
		if w == nil {
			return clean(e.Message)
		}
		return w.summary(false)
	case executor.WaveDone:
		return w.summary(true)
	}
	return ""
}

// aboveBars says which events the live view prints as lines: the ones a
// person must not miss. Routine progress, including notes about single
// devices ("created new device"), shows in the bars only.
func aboveBars(e executor.Event) bool {
	switch e.Kind {
	case executor.ChangeFailed, executor.DeviceFailed, executor.Retrying, executor.Halted:
		return true
	case executor.Info:
		return e.Slot == "" && e.DeviceID == ""
	}
	return false
}

// ttyLine is an event as printed above the live view: a short clock, and
// the plain line's text, coloured by severity.
func (r *Reporter) ttyLine(e executor.Event) string {
	s := line(e, "")
	switch e.Kind {
	case executor.ChangeFailed, executor.DeviceFailed, executor.Halted:
		s = r.colors.red(s)
	case executor.Retrying:
		s = r.colors.yellow(s)
	}
	return r.colors.dim(e.Time.Local().Format(ttyTime)) + "  " + s + "\n"
}

func (r *Reporter) liveView() *liveView {
	if r.live == nil {
		r.live = newLiveView(r.w, r.opts, r.colors)
	}
	return r.live
}

// Close stops the live view, leaving its final state drawn once, without
// the cursor games. Events after Close are ignored in TTY mode. Close is
// idempotent and returns the first error met while writing.
func (r *Reporter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
	return r.err
}

func (r *Reporter) closeLocked() {
	if r.closed {
		return
	}
	r.closed = true
	r.writePending()
	if r.live != nil {
		if err := r.live.stop(); err != nil && r.err == nil {
			r.err = err
		}
	}
}

// Err returns the first error met while writing, if any.
func (r *Reporter) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Reporter) write(s string) {
	if r.err != nil {
		return
	}
	if r.opts.Coalesce > 0 && !r.closed && r.mode != TTY {
		r.pending = append(r.pending, s...)
		if r.flush == nil {
			r.flush = time.AfterFunc(r.opts.Coalesce, r.flushPending)
		} else if len(r.pending) == len(s) {
			r.flush.Reset(r.opts.Coalesce)
		}
		return
	}
	r.writePending()
	r.writeOut(s)
}

// flushPending is the Coalesce timer's: it writes out the lines held back.
func (r *Reporter) flushPending() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writePending()
}

// writePending writes out the lines Coalesce held back, if any.
func (r *Reporter) writePending() {
	if r.flush != nil {
		r.flush.Stop()
	}
	if len(r.pending) == 0 {
		return
	}
	if r.err == nil {
		if _, err := r.w.Write(r.pending); err != nil {
			r.err = fmt.Errorf("write progress: %w", err)
		}
	}
	r.pending = r.pending[:0]
}

func (r *Reporter) writeOut(s string) {
	if r.err != nil {
		return
	}
	if _, err := io.WriteString(r.w, s); err != nil {
		r.err = fmt.Errorf("write progress: %w", err)
	}
}

func (r *Reporter) writeJSON(v any) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	// Messages quote plan reasons like "a -> b": keep them readable.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		if r.err == nil {
			r.err = fmt.Errorf("encode progress event: %w", err)
		}
		return
	}
	r.write(b.String())
}

// jsonEvent is the stable JSON lines schema of one event (docs/output.md).
// Every field is always present so consumers can rely on the shape.
type jsonEvent struct {
	Time     string `json:"time"`
	Kind     string `json:"kind"`
	Wave     *int   `json:"wave"` // 1-based like the text; null when not about a wave
	Action   string `json:"action"`
	Slot     string `json:"slot"`
	Hostname string `json:"hostname"`
	DeviceID string `json:"device_id"`
	State    string `json:"state"`
	Message  string `json:"message"`
	Error    string `json:"error"`
}

func jsonEventOf(e executor.Event) jsonEvent {
	j := jsonEvent{
		Time:     e.Time.UTC().Format(time.RFC3339Nano),
		Kind:     string(e.Kind),
		Action:   string(e.Action),
		Slot:     clean(e.Slot),
		Hostname: clean(e.Hostname),
		DeviceID: clean(e.DeviceID),
		State:    clean(e.State),
		Message:  clean(e.Message),
	}
	if e.Wave >= 0 {
		n := e.Wave + 1
		j.Wave = &n
	}
	if e.Err != nil {
		j.Error = clean(e.Err.Error())
	}
	return j
}
