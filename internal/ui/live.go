package ui

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// liveView is the TTY rendering: one mpb bar per wave, each followed by a
// line of counts, with notable events printed above the bars.
//
// Locking: the Reporter's lock is held while its methods run. mpb renders
// from its own goroutines and calls the decorators below, which therefore
// read only each wave's atomically published snapshot, never the lock.
type liveView struct {
	out    io.Writer
	opts   Options
	colors palette

	p       *mpb.Progress // nil until the first wave is added
	refresh chan any
	quit    chan struct{}
	ticker  sync.WaitGroup
	bars    map[int]*mpb.Bar
	waves   map[int]*waveState
	totals  map[int]int
}

func newLiveView(out io.Writer, opts Options, colors palette) *liveView {
	return &liveView{
		out:    out,
		opts:   opts,
		colors: colors,
		bars:   map[int]*mpb.Bar{},
		waves:  map[int]*waveState{},
		totals: map[int]int{},
	}
}

// start creates the mpb container. Refreshes are driven by our own ticker
// (manual refresh) so that stop can request one last render after the
// final counts are in: mpb's own ticker could shut down with lines printed
// above the bars still unflushed.
func (l *liveView) start() {
	l.refresh = make(chan any)
	l.quit = make(chan struct{})
	l.p = mpb.New(
		mpb.WithOutput(l.out),
		mpb.WithConsoleWriter(sizedWriter{cupwriter.New(l.out, true), l.opts.Width}),
		mpb.WithWidth(l.opts.Width),
		mpb.WithManualRefresh(l.refresh),
		// The caller chose TTY mode: draw with cursor movement even when
		// out is a wrapper around the terminal rather than the file itself.
		mpb.ForceTTY(),
	)
	l.ticker.Go(func() {
		t := time.NewTicker(l.opts.RefreshRate)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				select {
				case l.refresh <- now:
				case <-l.quit:
					return
				}
			case <-l.quit:
				return
			}
		}
	})
}

// sizedWriter is mpb's terminal writer with a fallback size: a terminal
// that reports 0×0 (a pty nobody sized: some CI runners, `script`, serial
// consoles) would otherwise get every line of the view cut away.
type sizedWriter struct {
	*cupwriter.Writer
	width int // Options.Width; 0: 80 columns
}

// GetTermSize returns the terminal's size, or a usable one in place of a
// zero (or unreadable) width or height.
func (w sizedWriter) GetTermSize() (width, height int, err error) {
	width, height, err = w.Writer.GetTermSize()
	if err != nil || width <= 0 {
		width = cmp.Or(w.width, 80)
	}
	if err != nil || height <= 0 {
		// Enough rows for every wave's two lines, as mpb allows when the
		// output is no terminal.
		height = width*3/2 + 1
	}
	return width, height, nil
}

// addWave adds the bar of w, once.
func (l *liveView) addWave(w *waveState) {
	if _, ok := l.bars[w.index]; ok {
		return
	}
	snap := w.snap.Load()
	if snap == nil || snap.total == 0 {
		return
	}
	if l.p == nil {
		l.start()
	}
	load := w.snap.Load
	style := mpb.BarStyle()
	if l.colors.on {
		style = style.FillerMeta(l.colors.green).TipMeta(l.colors.green)
	}
	bar := l.p.New(int64(snap.total), style,
		mpb.BarPriority(w.index),
		mpb.PrependDecorators(
			decor.Any(func(decor.Statistics) string { return load().label }, decor.WC{C: decor.DSyncSpaceR}),
		),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				s := load()
				return fmt.Sprintf("%d/%d", s.done, s.total)
			}, decor.WC{C: decor.DSyncWidth}),
			decor.Any(func(decor.Statistics) string { return "  " + l.clock(load()) }, decor.WC{C: decor.DSyncWidthR}),
		),
		mpb.BarBtmExtender(mpb.BarFillerFunc(func(out io.Writer, st decor.Statistics) error {
			_, err := io.WriteString(out, l.countsLine(load(), st.AvailableWidth)+"\n")
			return err
		})),
	)
	l.bars[w.index] = bar
	l.waves[w.index] = w
	l.totals[w.index] = snap.total
}

// clock is the time part of a wave's line: "waiting" before it starts,
// then elapsed and an ETA from the wave's average pace so far, and the
// frozen elapsed time once it is over.
func (l *liveView) clock(s *waveSnap) string {
	if s.started.IsZero() {
		return "waiting"
	}
	if !s.finished.IsZero() {
		return shortDuration(s.finished.Sub(s.started)) + "  done"
	}
	elapsed := l.opts.Now().Sub(s.started)
	eta := "eta -"
	if s.done > 0 && s.done+s.failed < s.total {
		left := s.total - s.done - s.failed
		eta = "eta " + shortDuration(elapsed/time.Duration(s.done)*time.Duration(left))
	}
	return shortDuration(elapsed) + "  " + eta
}

// countsLine is the line under a wave's bar. A wave of deletes (destroy)
// names its states after what deleting looks like.
func (l *liveView) countsLine(s *waveSnap, width int) string {
	prov, done := "provisioning", "active"
	if s.deletesOnly {
		prov, done = "deprovisioning", "deleted"
	}
	parts := []string{
		fmt.Sprintf("%d queued", s.queued),
		fmt.Sprintf("%d %s", s.prov, prov),
		fmt.Sprintf("%d %s", s.done, done),
		fmt.Sprintf("%d failed", s.failed),
	}
	text := "  " + strings.Join(parts, " · ")
	if width > 0 && len([]rune(text)) > width {
		text = string([]rune(text)[:width])
	}
	if !l.colors.on {
		return text
	}
	// Colour after measuring: escapes take no room on screen.
	failed := parts[3]
	if s.failed > 0 && strings.HasSuffix(text, failed) {
		return l.colors.dim(strings.TrimSuffix(text, failed)) + l.colors.red(failed)
	}
	return l.colors.dim(text)
}

// update moves w's bar to its current counts.
func (l *liveView) update(w *waveState) {
	bar, ok := l.bars[w.index]
	if !ok {
		return
	}
	s := w.snap.Load()
	if s.total != l.totals[w.index] {
		bar.SetTotal(int64(s.total), false)
		l.totals[w.index] = s.total
	}
	bar.SetCurrent(int64(s.done))
}

// print shows text above the bars (text ends in a newline). Before the
// first bar there is nothing to draw around, so it goes straight out.
func (l *liveView) print(text string) {
	if l.p == nil {
		_, _ = io.WriteString(l.out, text)
		return
	}
	_, _ = l.p.Write([]byte(text))
}

// stop leaves every bar at its final count, renders once more and shuts
// the container down; bars of waves that did not finish stay visible as
// they were.
func (l *liveView) stop() error {
	if l.p == nil {
		return nil
	}
	for i, bar := range l.bars {
		l.update(l.waves[i])
		bar.Abort(false) // no-op for bars already complete
	}
	close(l.quit)
	l.ticker.Wait()
	l.refresh <- time.Now()
	l.p.Wait()
	if l.p.Error != nil {
		return fmt.Errorf("render progress: %w", l.p.Error)
	}
	return nil
}
