package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// Summary is the closing JSON line of `apply -o json` (docs/output.md).
type Summary struct {
	Kind      string `json:"kind"`
	Result    string `json:"result"`
	Added     int    `json:"added"`
	Rebuilt   int    `json:"rebuilt"`
	Changed   int    `json:"changed"`
	Destroyed int    `json:"destroyed"`
	Failed    []struct {
		Hostname string `json:"hostname"`
		Slot     string `json:"slot"`
		DeviceID string `json:"device_id"`
		Reason   string `json:"reason"`
	} `json:"failed"`
	NotDone []string `json:"not_done"`
	Halted  string   `json:"halted"`
}

// ParseSummary finds the summary line in JSON lines output.
func ParseSummary(stdout string) (Summary, bool) {
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	var s Summary
	found := false
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"summary"`)) {
			continue
		}
		var cur Summary
		if json.Unmarshal(line, &cur) == nil && cur.Kind == "summary" {
			s, found = cur, true
		}
	}
	return s, found
}

// Seeded is the foreign devices a lab was seeded with and their JSON at
// the time, to compare with later.
type Seeded struct {
	IDs    []string
	Before map[string][]byte
}

// SeedForeign puts n devices the fleet does not own into the project:
// some with the hostnames the fleet wants, some tagged by another fleet
// for the same slots, one with a fleet tag that only shares a prefix, one
// failed. It records their JSON.
func (l *Lab) SeedForeign(ctx context.Context, n int) (Seeded, error) {
	zones := []string{"ams1", "ewr1", "sjc1"}
	var devs []packetsim.SeedDevice
	for i := range n {
		z := zones[i%3]
		d := packetsim.SeedDevice{Zone: z, UserState: "succeeded", AlwaysPXE: true, Userdata: "#!ipxe\nexit\n"}
		switch i % 5 {
		case 0: // the hostname the fleet's slot wants
			d.Hostname = fmt.Sprintf("web-%s-%d", z, i/3+1)
			d.Tags = []string{"team:other"}
		case 1: // another fleet, same slot names
			d.Hostname = fmt.Sprintf("other-%d", i)
			d.Tags = []string{"lkfleet:fleet=other", fmt.Sprintf("lkfleet:slot=web/%s/%d", z, i/3+1), "lkfleet:rev=000000000000"}
		case 2: // a fleet whose name extends ours
			d.Hostname = fmt.Sprintf("worker-%s-%d", z, i/3+1)
			d.Tags = []string{"lkfleet:fleet=chaos-old", fmt.Sprintf("lkfleet:slot=worker/%s/%d", z, i/3+1)}
		case 3: // failed, untagged
			d.Hostname = fmt.Sprintf("broken-%d", i)
			d.State = "failed"
		default: // no tags at all
			d.Hostname = fmt.Sprintf("db-%d", i)
		}
		devs = append(devs, d)
	}
	ids, err := l.Sim().Seed(devs...)
	if err != nil {
		return Seeded{}, fmt.Errorf("seed foreign devices: %w", err)
	}
	s := Seeded{IDs: ids, Before: map[string][]byte{}}
	for _, id := range ids {
		b, err := l.DeviceJSON(ctx, id)
		if err != nil {
			return Seeded{}, err
		}
		s.Before[id] = b
	}
	return s, nil
}

// ForeignChanges returns the foreign devices whose JSON differs from when
// they were seeded, or that a mutating request addressed.
func (l *Lab) ForeignChanges(ctx context.Context, s Seeded) ([]string, error) {
	var changed []string
	muts := l.Mutations()
	for _, id := range s.IDs {
		b, err := l.DeviceJSON(ctx, id)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(b, s.Before[id]) {
			changed = append(changed, id+": JSON changed")
		}
		for _, m := range muts {
			if strings.Contains(m, id) {
				changed = append(changed, id+": "+m)
			}
		}
	}
	return changed, nil
}

// Fleet is the fleet's devices in a listing, by slot, without those
// being deleted.
func Fleet(devs []Device) map[string][]Device { return FleetNamed(devs, "chaos") }

// FleetNamed is Fleet for the fleet called name.
func FleetNamed(devs []Device, name string) map[string][]Device {
	m := map[string][]Device{}
	for _, d := range devs {
		if d.Tag("lkfleet:fleet") != name || d.State == "deprovisioning" || d.State == "deleted" {
			continue
		}
		slot := d.Tag("lkfleet:slot")
		m[slot] = append(m[slot], d)
	}
	return m
}

// Converged compares the fleet in a listing with the desired slots and
// returns every difference (nil when exactly the desired slots have one
// active device each), and the number of slots with more than one device.
func Converged(devs []Device, desired []string) (problems []string, dups int) {
	fleet := Fleet(devs)
	for _, slot := range desired {
		ds := fleet[slot]
		switch {
		case len(ds) == 0:
			problems = append(problems, "slot "+slot+": no device")
		case len(ds) > 1:
			dups += len(ds) - 1
			problems = append(problems, fmt.Sprintf("slot %s: %d devices", slot, len(ds)))
		case ds[0].State != "active":
			problems = append(problems, fmt.Sprintf("slot %s: device %s is %s", slot, ds[0].ID, ds[0].State))
		}
	}
	for slot, ds := range fleet {
		if !slices.Contains(desired, slot) {
			problems = append(problems, fmt.Sprintf("slot %s: %d devices not desired", slot, len(ds)))
		}
	}
	slices.Sort(problems)
	return problems, dups
}

// settle waits out the simulator's list lag so that a listing shows every
// device created so far.
func (l *Lab) settle() { time.Sleep(l.cfg.Sim.ListLag + 50*time.Millisecond) }

// ApplyArgs are the arguments of every apply the harness runs.
func (l *Lab) ApplyArgs(poll time.Duration) []string {
	return []string{"apply", "-f", l.FleetFile, "--auto-approve", "-o", "json", "--poll-interval", poll.String()}
}

// Step is one lkfleet run and what it said.
type Step struct {
	Args    []string
	Code    int
	Took    time.Duration
	Summary Summary
	Stdout  string
	Stderr  string
}

// Apply runs one apply and checks that its exit code tells the truth:
// 0 only with every desired slot converged, 1 only with a summary that
// names a failure, never anything else. It returns the step and the
// problems found.
func (l *Lab) Apply(ctx context.Context, run Runner, poll time.Duration, desired []string) (Step, []string, error) {
	st := l.run(ctx, run, l.ApplyArgs(poll)...)
	var problems []string
	if strings.Contains(st.Stdout+st.Stderr, Token) {
		problems = append(problems, "apply printed the API token")
	}
	sum, ok := ParseSummary(st.Stdout)
	st.Summary = sum
	if !ok && st.Code != 1 && strings.TrimSpace(st.Stdout) != "" {
		problems = append(problems, fmt.Sprintf("apply exited %d without a summary; stderr: %s", st.Code, lastLine(st.Stderr)))
	}
	l.settle()
	devs, err := l.Listing(ctx)
	if err != nil {
		return st, problems, err
	}
	conv, _ := Converged(devs, desired)
	switch st.Code {
	case 0:
		if ok && sum.Result != "complete" {
			problems = append(problems, "apply exited 0 with result "+sum.Result)
		}
		if len(conv) > 0 {
			problems = append(problems, "apply exited 0 but the fleet is not converged: "+strings.Join(conv, "; "))
		}
	case 1:
		if ok && sum.Result == "complete" {
			problems = append(problems, "apply exited 1 with result complete")
		}
		if !ok && strings.TrimSpace(st.Stderr) == "" {
			problems = append(problems, "apply exited 1 and said nothing")
		}
	default:
		problems = append(problems, fmt.Sprintf("apply exited %d; stderr: %s", st.Code, lastLine(st.Stderr)))
	}
	return st, problems, nil
}

func (l *Lab) run(ctx context.Context, run Runner, args ...string) Step {
	start := time.Now()
	out, errs, code := run(ctx, l.Env(), args...)
	return Step{Args: args, Code: code, Took: time.Since(start), Stdout: out, Stderr: errs}
}

// Plan runs `plan --detailed-exitcode` and returns its exit code.
func (l *Lab) Plan(ctx context.Context, run Runner) Step {
	return l.run(ctx, run, "plan", "-f", l.FleetFile, "--detailed-exitcode")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
