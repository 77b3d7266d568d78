package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// watchStatus lists the fleet every o.interval until ctx ends (Ctrl-C),
// which is the watch's normal end: exit 0. What does not change between
// refreshes (the fleet file, the images' revs, the catalogue) is worked
// out once; each refresh is one listing of the project's devices, split
// into the fleet's and the foreign ones whose hostname clashes. On a
// terminal each table replaces the one before (cursor home, clear to the
// end); otherwise tables follow each other under a timestamp line.
func watchStatus(ctx context.Context, env *Env, o *statusOptions) error {
	if o.interval <= 0 {
		return fmt.Errorf("--interval must be positive, got %s", o.interval)
	}
	l, err := listFleet(ctx, env, o.fleet, o.api)
	if err != nil {
		return endOfWatch(ctx, err)
	}
	defer l.client.Close()
	v, err := newStatusView(ctx, env, l.fleet, l.client)
	if err != nil {
		return endOfWatch(ctx, err)
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for first := true; ; first = false {
		all, err := l.client.ListAll(ctx)
		if err != nil {
			return endOfWatch(ctx, err)
		}
		var live []planner.Live
		for _, d := range all {
			if d.Fleet() == l.fleet.Name {
				live = append(live, d)
			}
		}
		st := readLease(ctx, env, l.fleet, l.client, o.lock)
		st.warn(env)
		v.runs = st.runs
		now := time.Now()
		var buf bytes.Buffer
		e := *env
		e.Out = &buf
		if err := writeStatus(&e, o.output, l.fleet.Name, v.rows(live, all, now), now); err != nil {
			return err
		}
		head := fmt.Sprintf("Every %s: fleet %s at %s (Ctrl-C to stop)\n", o.interval, l.fleet.Name, now.UTC().Format(time.TimeOnly))
		var frame string
		switch {
		case env.OutTTY && o.output != "json" && first:
			frame = "\x1b[H\x1b[2J" + head + "\n" + buf.String()
		case env.OutTTY && o.output != "json":
			// Each line clears what the longer line before it left.
			frame = "\x1b[H" + strings.ReplaceAll(head+"\n"+buf.String(), "\n", "\x1b[K\n") + "\x1b[J"
		default:
			frame = head + buf.String() + "\n"
		}
		if _, err := fmt.Fprint(env.Out, frame); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// endOfWatch is the watch's error: none when Ctrl-C ended it.
func endOfWatch(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
