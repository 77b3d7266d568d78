//go:build linux

package ui

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty opens a pseudo-terminal whose size is cols×rows and returns
// its two ends: the terminal the program writes to, and the master that
// reads what the terminal shows.
func openPty(t *testing.T, cols, rows uint16) (term, master *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(term.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows}); err != nil {
		t.Fatal(err)
	}
	return term, master
}

// TestTTYOnAZeroSizedTerminal: a terminal that reports 0×0 (a pty nobody
// sized) still shows the bars, at the default width.
func TestTTYOnAZeroSizedTerminal(t *testing.T) {
	term, master := openPty(t, 0, 0)
	var shown bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&shown, master) // ends with EIO once term is closed
	}()
	r := New(term, TTY, Options{NoColor: true, Now: fixedClock(t0.Add(time.Minute))})
	r.SetPlan(scriptPlan())
	for _, e := range scriptEvents() {
		r.Event(e)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	term.Close()
	<-copied
	master.Close()
	screen := emulate(strings.ReplaceAll(shown.String(), "\r", ""))
	text := strings.Join(screen, "\n")
	for _, want := range []string{"wave 1  ams1", "3/3", "0 queued · 0 provisioning · 3 active · 0 failed", "wave 2  ewr1"} {
		if !containsLine(screen, want) {
			t.Errorf("%q not on a 0×0 terminal's screen:\n%s", want, text)
		}
	}
	// The live part (the lines printed above it may wrap) fits.
	pos := strings.Index(text, "wave 1  ams1")
	for _, l := range screen[strings.Count(text[:max(pos, 0)], "\n"):] {
		if n := len([]rune(l)); n > 80 {
			t.Errorf("line wider than the default 80 columns: %d %q", n, l)
		}
	}
}
