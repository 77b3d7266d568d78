package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// seedForeign creates devices the fleets do not own, through the API (the
// simulator is another process): the hostname A's first slot wants,
// another fleet's tags for that slot, a fleet name that extends A's, and
// none at all. It records them as listed once the lag is past.
func (t *simTrial) seedForeign(ctx context.Context) error {
	for _, f := range []struct {
		host string
		tags []string
	}{
		{"web-ams1-1", []string{"team:other"}},
		{"other-1", []string{"lkfleet:fleet=other", "lkfleet:slot=web/ams1/1", "lkfleet:rev=000000000000"}},
		{"worker-ewr1-1", []string{"lkfleet:fleet=chaos-old", "lkfleet:slot=worker/ewr1/1"}},
		{"db-1", nil},
	} {
		body, _ := json.Marshal(map[string]any{"hostname": f.host, "plan": "baremetal_0", "facility": "ams1",
			"operating_system": "custom_ipxe", "userdata": "#!ipxe\nexit\n", "always_pxe": true, "tags": f.tags})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.sim.APIURL+"projects/"+t.sim.Project+"/devices", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("X-Auth-Token", Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("seed foreign device %s: %w", f.host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("seed foreign device %s: %s %s", f.host, resp.Status, b)
		}
	}
	t.settle()
	devs, err := t.sim.Listing(ctx)
	if err != nil {
		return err
	}
	t.foreign = map[string]Device{}
	for _, d := range devs {
		t.foreign[d.ID] = d
	}
	if len(t.foreign) != 4 {
		return fmt.Errorf("seeded 4 foreign devices, %d listed", len(t.foreign))
	}
	return nil
}

// killDuringA applies A and SIGKILLs the simulator right after the n-th
// create (counting the foreign ones) was answered 201, before the answer
// reaches the apply; after the outage it restarts it from the state file
// and checks that every device answered 201 is still there. The apply
// must then end by itself, within its --timeout, with a truthful code.
func (t *simTrial) killDuringA(ctx context.Context, n int) error {
	killed := make(chan struct{})
	t.sim.OnCreated(func(i int) {
		if i == n {
			t.sim.Kill()
			for _, c := range t.sim.CreatedSoFar() {
				if c.Fleet == "chaos" {
					t.answeredBefore = append(t.answeredBefore, c)
				}
			}
			close(killed)
		}
	})
	defer t.sim.OnCreated(nil)
	t.sim.SetPhase("apply A (simulator killed)")
	done := make(chan Step, 1)
	go func() { done <- t.apply(ctx, t.fileA) }()
	var st Step
	select {
	case <-killed:
		time.Sleep(t.cfg.Down) // the outage
		// The port the killed simulator listened on is free at once
		// (SO_REUSEADDR); a start that still fails is tried again.
		for try := 0; ; try++ {
			err := t.sim.Start()
			if err == nil {
				break
			}
			if try == 4 {
				return fmt.Errorf("restart the simulator: %w", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.res.Answered = len(t.answeredBefore)
		for _, c := range t.answeredBefore {
			ok, err := t.sim.Exists(ctx, c.ID)
			if err != nil {
				return err
			}
			if !ok {
				t.res.Lost++
				t.problem("device %s (%s) was answered 201 before the kill and is gone after the restart", c.ID, c.Hostname)
			}
		}
		st = <-done
	case st = <-done:
		t.problem("apply A ended (exit %d) before its create #%d: no kill", st.Code, n-len(t.foreign))
	}
	t.res.Codes = append(t.res.Codes, st.Code)
	switch st.Code {
	case 0:
		t.settle()
		devs, err := t.sim.Listing(ctx)
		if err != nil {
			return err
		}
		if conv, _ := Converged(devs, t.desired); len(conv) > 0 {
			t.problem("apply A across the kill exited 0, not converged: %s", strings.Join(conv, "; "))
		}
	case 1:
		if strings.TrimSpace(st.Stderr) == "" {
			t.problem("apply A across the kill exited 1 and said nothing")
		}
		if strings.Contains(st.Stderr, "expires on its own") {
			// Its lease stayed behind; its operator breaks it, as it says.
			if u := t.run(ctx, "unlock", "-f", t.fileA, "--auto-approve"); u.Code != 0 {
				t.problem("unlock after the killed apply exited %d: %s", u.Code, lastLine(u.Stderr))
			}
		}
	default:
		t.problem("apply A across the kill exited %d: %s", st.Code, lastLine(st.Stderr))
	}
	return nil
}

// applyBoth applies A again, then B into the same project (up to two
// applies each), and checks both fleets: converged, no duplicate, no
// empty slot, no id in both, no id answered for two devices, and a clean
// `plan --detailed-exitcode` for each.
func (t *simTrial) applyBoth(ctx context.Context) error {
	for _, f := range []struct{ phase, file string }{{"re-run A", t.fileA}, {"apply B", t.fileB}} {
		t.sim.SetPhase(f.phase)
		code := -1
		for range 2 {
			if code = t.apply(ctx, f.file).Code; code == 0 {
				break
			}
		}
		t.res.Codes = append(t.res.Codes, code)
		if code != 0 {
			t.problem("%s: two applies did not converge (last exit %d)", f.phase, code)
		}
	}
	t.settle()
	devs, err := t.sim.Listing(ctx)
	if err != nil {
		return err
	}
	ids := map[string]string{}
	for _, name := range []string{"chaos", fleetB} {
		fleet := FleetNamed(devs, name)
		for _, slot := range t.desired {
			if n := len(fleet[slot]); n == 0 {
				t.res.Empty++
			} else {
				t.res.Duplicates += n - 1
			}
		}
		for _, ds := range fleet {
			for _, d := range ds {
				if other, ok := ids[d.ID]; ok && other != name {
					t.res.Shared++
				}
				ids[d.ID] = name
			}
		}
	}
	if t.res.Duplicates+t.res.Empty+t.res.Shared > 0 {
		t.problem("after A and B: %d duplicates, %d empty slots, %d ids in both fleets", t.res.Duplicates, t.res.Empty, t.res.Shared)
	}
	t.checkReuse(devs)
	for _, file := range []string{t.fileA, t.fileB} {
		if p := t.plan(ctx, file); p.Code != 0 {
			t.problem("plan --detailed-exitcode -f %s exited %d: %s", file, p.Code, lastLine(p.Stdout+p.Stderr))
		}
	}
	return nil
}

// checkReuse counts ids the simulator gave two devices: answered 201
// twice, or listed with another creation time than their 201 said.
func (t *simTrial) checkReuse(devs []Device) {
	created := map[string]Created{}
	for _, c := range t.sim.CreatedSoFar() {
		if prev, ok := created[c.ID]; ok {
			t.res.Reused++
			t.problem("id %s answered 201 for %s (%s) and again for %s (%s)", c.ID, prev.Hostname, prev.CreatedAt, c.Hostname, c.CreatedAt)
		}
		created[c.ID] = c
	}
	for _, d := range devs {
		if c, ok := created[d.ID]; ok && c.CreatedAt != d.Created {
			t.res.Reused++
			t.problem("id %s answered 201 for a device created %s, now listed for one created %s", d.ID, c.CreatedAt, d.Created)
		}
	}
}

// destroyA destroys fleet A and checks that it addressed only A's
// devices, left B's and the foreign ones as they were, left none of A's,
// and that the plans then say so: B has no changes, A is all to add.
func (t *simTrial) destroyA(ctx context.Context) error {
	before, err := t.sim.Listing(ctx)
	if err != nil {
		return err
	}
	ownA := map[string]bool{}
	keep := map[string]Device{}
	for _, d := range before {
		switch d.Tag("lkfleet:fleet") {
		case "chaos":
			ownA[d.ID] = true
		case fleetB:
			keep[d.ID] = d
		}
	}
	for id, d := range t.foreign {
		keep[id] = d
	}
	t.sim.SetPhase("destroy A")
	st := t.run(ctx, "destroy", "-f", t.fileA, "--auto-approve")
	t.sim.SetPhase("after")
	t.res.Codes = append(t.res.Codes, st.Code)
	if st.Code != 0 {
		t.problem("destroy A exited %d: %s", st.Code, lastLine(st.Stderr))
	}
	for _, m := range t.sim.Mutations() {
		if m.Phase != "destroy A" || !strings.Contains(m.Path, "/devices/") {
			continue
		}
		if id := m.Path[strings.LastIndexByte(m.Path, '/')+1:]; !ownA[id] {
			t.res.Touched = append(t.res.Touched, id+": "+m.Method+" "+m.Path)
		}
	}
	time.Sleep(t.cfg.ProvisionTime/2 + 50*time.Millisecond) // deprovisioning ends
	t.settle()
	after, err := t.sim.Listing(ctx)
	if err != nil {
		return err
	}
	t.compareKept(keep, after)
	if len(t.res.Touched) > 0 {
		t.problem("destroy of A touched devices not A's: %s", strings.Join(t.res.Touched, "; "))
	}
	if p := t.plan(ctx, t.fileB); p.Code != 0 {
		t.problem("plan -f B after destroying A exited %d: %s", p.Code, lastLine(p.Stdout+p.Stderr))
	}
	want := fmt.Sprintf("Plan: %d to add, 0 to rebuild, 0 to change, 0 to destroy.", len(t.desired))
	if p := t.plan(ctx, t.fileA); p.Code != 2 || !strings.Contains(p.Stdout, want) {
		t.problem("plan -f A after its destroy exited %d, want 2 and %q: %s", p.Code, want, lastLine(p.Stdout+p.Stderr))
	}
	if n, err := t.sim.Duplicates(ctx); err != nil || n != 0 {
		t.problem("the simulator counts %d duplicates at the end (%v)", n, err)
	}
	return nil
}

// compareKept checks a listing after A's destroy: no device of A; every
// kept device (B's, foreign) there with its hostname, state, tags and
// creation time; no other device.
func (t *simTrial) compareKept(keep map[string]Device, after []Device) {
	seen := map[string]bool{}
	for _, d := range after {
		if d.Tag("lkfleet:fleet") == "chaos" && d.State != "deprovisioning" {
			t.res.Left++
			continue
		}
		k, ok := keep[d.ID]
		if !ok {
			if d.State != "deprovisioning" {
				t.res.Touched = append(t.res.Touched, d.ID+": a device that was not there before the destroy")
			}
			continue
		}
		seen[d.ID] = true
		if k.Hostname != d.Hostname || k.State != d.State || !slices.Equal(k.Tags, d.Tags) || k.Created != d.Created {
			t.res.Touched = append(t.res.Touched, fmt.Sprintf("%s: was %s %s %v, now %s %s %v", d.ID, k.Hostname, k.State, k.Tags, d.Hostname, d.State, d.Tags))
		}
	}
	for id, k := range keep {
		if !seen[id] {
			t.res.Touched = append(t.res.Touched, fmt.Sprintf("%s (%s): gone after the destroy of A", id, k.Hostname))
		}
	}
	if t.res.Left > 0 {
		t.problem("%d of A's devices still listed after its destroy", t.res.Left)
	}
}
