package packetsim

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ConsoleSize bounds what a device's console keeps: the newest 4 MiB.
// A reader that falls further behind than that is told how much it lost.
const ConsoleSize = 4 << 20

// Console is a device's serial console (ttyS1, what Packet's SOS shows).
// It keeps what was written since the current boot started, up to
// ConsoleSize, and fans it out live to any number of readers; input from
// every reader goes to the guest's serial port when a guest is attached
// (SetInput), and is dropped otherwise (the interpreter's boots have no
// guest to type to). Writers never block on readers: each reader has its
// own position in one shared ring.
type Console struct {
	max int

	mu         sync.Mutex
	buf        []byte // ring: offset o is at buf[o%max]; grows up to max
	start, end int64  // absolute offsets of the oldest kept byte and past the newest
	replayFrom int64  // where the current boot began: new readers start here
	wake       chan struct{}
	input      io.Writer

	inMu sync.Mutex // serialises input from several sessions
}

func newConsole(size int) *Console {
	return &Console{max: size, wake: make(chan struct{})}
}

// Write appends p to the console and wakes every reader. It never fails.
func (c *Console) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) < c.max && int64(len(c.buf)) == c.end && len(p) <= c.max-len(c.buf) {
		c.buf = append(c.buf, p...) // still growing: no wrap yet
		c.end += int64(n)
	} else {
		if len(c.buf) < c.max {
			c.buf = append(c.buf, make([]byte, c.max-len(c.buf))...)
		}
		if len(p) > c.max {
			c.end += int64(len(p) - c.max)
			p = p[len(p)-c.max:]
		}
		for len(p) > 0 {
			i := int(c.end % int64(c.max))
			k := copy(c.buf[i:], p)
			c.end += int64(k)
			p = p[k:]
		}
		c.start = max(c.start, c.end-int64(c.max))
	}
	c.broadcast()
	return n, nil
}

// broadcast wakes every waiting reader; c.mu is held.
func (c *Console) broadcast() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// Printf writes one line of the simulator's own (marked, CRLF-ended).
func (c *Console) Printf(format string, args ...any) {
	fmt.Fprintf(c, "[lkfleet sim] "+format+"\r\n", args...)
}

// BootStarted marks the start of a boot: readers attached from now on
// replay from here. Readers already attached keep reading.
func (c *Console) BootStarted() {
	c.mu.Lock()
	c.replayFrom = c.end
	c.mu.Unlock()
}

// SetInput connects the guest's serial input. The returned function
// disconnects it again, unless a newer guest has connected since.
func (c *Console) SetInput(w io.Writer) (disconnect func()) {
	c.mu.Lock()
	c.input = w
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.input == w {
			c.input = nil
		}
		c.mu.Unlock()
	}
}

// Input types p on the console: to the guest if one is attached, or
// nowhere. It never fails: keys typed at a machine that is gone are lost,
// as on a serial line, and the session stays attached for the next boot.
func (c *Console) Input(p []byte) (int, error) {
	c.mu.Lock()
	w := c.input
	c.mu.Unlock()
	if w != nil {
		c.inMu.Lock()
		w.Write(p)
		c.inMu.Unlock()
	}
	return len(p), nil
}

// Attach returns a reader that replays the console from the current
// boot's start and then follows it live.
func (c *Console) Attach() *ConsoleReader {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &ConsoleReader{c: c, off: max(c.start, c.replayFrom), eofAt: -1, done: make(chan struct{})}
}

// ConsoleReader is one reader's view of a Console.
type ConsoleReader struct {
	c     *Console
	off   int64
	eofAt int64 // -1: follow forever
	once  sync.Once
	done  chan struct{}
}

// Read blocks until console output is available, the reader is hung up
// (io.EOF once everything written before the hang-up was read) or closed
// (io.EOF).
func (r *ConsoleReader) Read(p []byte) (int, error) {
	c := r.c
	c.mu.Lock()
	for {
		select {
		case <-r.done:
			c.mu.Unlock()
			return 0, io.EOF
		default:
		}
		if r.off < c.start {
			lost := c.start - r.off
			r.off = c.start
			c.mu.Unlock()
			return copy(p, fmt.Sprintf("\r\n[lkfleet sim] %d bytes of console output were dropped (this reader fell behind)\r\n", lost)), nil
		}
		limit := c.end
		if r.eofAt >= 0 && r.eofAt < limit {
			limit = r.eofAt
		}
		if r.off < limit {
			i := int(r.off % int64(c.max))
			n := copy(p, c.buf[i:min(len(c.buf), i+int(limit-r.off))])
			r.off += int64(n)
			c.mu.Unlock()
			return n, nil
		}
		if r.eofAt >= 0 {
			c.mu.Unlock()
			return 0, io.EOF
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-r.done:
		}
		c.mu.Lock()
	}
}

// Hangup ends the reader after what was written so far.
func (r *ConsoleReader) Hangup() {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.eofAt < 0 {
		r.eofAt = r.c.end
		r.c.broadcast()
	}
}

// Close ends the reader at once; a blocked Read returns io.EOF.
func (r *ConsoleReader) Close() error {
	r.once.Do(func() { close(r.done) })
	return nil
}

// consoleSet holds the simulator's consoles, one per device that has
// booted or been attached to, and tells watchers when any device changed.
// Its lock is a leaf: it is never held while taking s.mu, so poke may be
// called with s.mu held.
type consoleSet struct {
	mu      sync.Mutex
	m       map[uuid]*Console
	changed chan struct{} // closed on the next change; nil if nobody waits

	sosAddr atomic.Pointer[string] // the running SOS server's HOST:PORT
}

// get returns the device's console, creating it.
func (cs *consoleSet) get(id uuid) *Console {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = map[uuid]*Console{}
	}
	c := cs.m[id]
	if c == nil {
		c = newConsole(ConsoleSize)
		cs.m[id] = c
	}
	return c
}

// remove forgets a purged device's console.
func (cs *consoleSet) remove(id uuid) {
	cs.mu.Lock()
	delete(cs.m, id)
	cs.mu.Unlock()
}

// poke says that some device changed (called from markDirty, often with
// s.mu held). It costs a lock when nobody watches.
func (cs *consoleSet) poke() {
	cs.mu.Lock()
	if cs.changed != nil {
		close(cs.changed)
		cs.changed = nil
	}
	cs.mu.Unlock()
}

// changes returns a channel closed at the next poke.
func (cs *consoleSet) changes() <-chan struct{} {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.changed == nil {
		cs.changed = make(chan struct{})
	}
	return cs.changed
}

// Console returns the serial console of a device the simulator knows
// (not deleted), or false.
func (s *Sim) Console(deviceID string) (*Console, bool) {
	id, ok := parseUUID(deviceID)
	if !ok {
		return nil, false
	}
	if l, _ := s.deviceLife(id); l == lifeGone {
		return nil, false
	}
	return s.consoles.get(id), true
}

// life is what a console session cares about in a device's lifecycle.
type life uint8

const (
	lifeOn   life = iota // anything but the two below
	lifeOff              // powering off or inactive
	lifeGone             // deleted (deprovisioning) or purged
)

func (l life) String() string {
	return [...]string{"on", "powered off", "deleted"}[l]
}

// deviceLife reports a device's life and its lifecycle generation.
func (s *Sim) deviceLife(id uuid) (life, uint32) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.devs[id]
	switch {
	case d == nil || !d.deletedAt.IsZero():
		return lifeGone, 0
	case d.phase == phPowerOff || d.phase == phInactive:
		return lifeOff, d.gen
	}
	return lifeOn, d.gen
}

// waitSessionEnd blocks until the device is deleted, or powered off (a
// device already off when the wait began must first change), or ctx ends;
// it returns why ("" for ctx).
func (s *Sim) waitSessionEnd(ctx context.Context, id uuid) string {
	l0, g0 := s.deviceLife(id)
	for {
		ch := s.consoles.changes()
		l, g := s.deviceLife(id)
		if l == lifeGone || l == lifeOff && (l0 != lifeOff || g != g0) {
			return "the device was " + l.String()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ""
		}
	}
}

// bootContext returns a context that ends when the device leaves the boot
// of generation gen (deleted, powered off, rebooted, reinstalled), when
// parent ends, or when cancel is called: a guest runs until then.
func (s *Sim) bootContext(parent context.Context, id uuid, gen uint32) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		for {
			ch := s.consoles.changes()
			if l, g := s.deviceLife(id); l == lifeGone || g != gen {
				cancel()
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, cancel
}

// consoleInterpreted starts a boot on the device's console and writes
// what the interpreter did: where the script came from, its lines, the
// kernel and initrds it checked, and the outcome.
func (s *Sim) consoleInterpreted(snap bootSnap, b Boot) {
	c := s.consoles.get(snap.id)
	c.BootStarted()
	c.Printf("boot of %s (%s) at %s, source: %s", snap.hostname, snap.id, b.Time.UTC().Format(time.RFC3339), b.Source)
	if b.script != "" {
		for _, l := range strings.Split(strings.TrimRight(b.script, "\n"), "\n") {
			c.Printf("ipxe> %s", strings.TrimRight(l, "\r"))
		}
	}
	if b.KernelURL != "" {
		c.Printf("kernel %s %s", b.KernelURL, b.Args)
		for _, u := range b.InitrdURLs {
			c.Printf("initrd %s", u)
		}
	}
	switch {
	case !b.OK:
		c.Printf("boot failed: %s", b.Error)
	case s.cfg.Booter != nil:
		c.Printf("kernel and initrds found; booting for real")
	default:
		c.Printf("kernel and initrds found (HEAD); recorded user state %s: booted %s", UserStateSucceeded, b.KernelURL)
	}
}

// consoleResult writes a real boot's outcome on the device's console.
func (s *Sim) consoleResult(id uuid, b Boot) {
	c := s.consoles.get(id)
	if b.OK {
		c.Printf("boot finished: %s", firstLine(b.detail))
	} else {
		c.Printf("boot failed: %s", firstLine(b.Error))
	}
}
