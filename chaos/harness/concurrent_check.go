package harness

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// holderPID finds the pid a lease refusal names ("... (pid 4711 on host) ...").
var holderPID = regexp.MustCompile(`\(pid (\d+) on `)

// checkCodes checks that every concurrent apply's exit code tells the
// truth: 0 with the fleet converged at that moment; 1 either refused
// because the fleet is locked (naming another of the trial's applies as
// the holder, with no device changed through its door) or with a summary
// naming a failure; nothing else.
func (l *Lab) checkCodes(res *ConcurrentResult, cfg ConcurrentConfig, procs []*proc) {
	pids := map[int]bool{}
	for _, p := range procs {
		pids[p.cmd.Process.Pid] = true
	}
	add := func(i int, format string, a ...any) {
		res.Problems = append(res.Problems, fmt.Sprintf("apply %d: ", i+1)+fmt.Sprintf(format, a...))
	}
	for i, p := range procs {
		res.Codes = append(res.Codes, p.code)
		out, errs := p.out.String(), p.err.String()
		if strings.Contains(out+errs, Token) {
			add(i, "printed the API token")
		}
		if strings.Contains(errs, "Waiting up to ") {
			res.Waited++
		}
		switch {
		case p.code == 0:
			if len(p.atExit) > 0 {
				add(i, "exited 0 but the simulator then showed: %s", strings.Join(p.atExit, "; "))
			}
		case p.code == 1 && strings.Contains(errs, `fleet "chaos" is locked: apply by `):
			res.Refused++
			m := holderPID.FindStringSubmatch(errs)
			if m == nil {
				add(i, "refused without naming the holder's pid: %s", lastLine(errs))
			} else if pid, _ := strconv.Atoi(m[1]); !pids[pid] || pid == p.cmd.Process.Pid {
				add(i, "refused naming pid %d, not another apply of the trial: %s", pid, lastLine(errs))
			}
			if ch := p.door.deviceChanges(); len(ch) > 0 {
				add(i, "refused, yet changed devices: %s", strings.Join(ch, ", "))
			}
		case p.code == 1:
			sum, ok := ParseSummary(out)
			if !ok || sum.Result == "complete" || len(sum.Failed)+len(sum.NotDone) == 0 && sum.Halted == "" {
				add(i, "exited 1 without naming a failure; stderr: %s", lastLine(errs))
			}
		default:
			add(i, "exited %d; stderr: %s", p.code, lastLine(errs))
		}
	}
	want := 0
	if cfg.LockTimeout == 0 {
		want = cfg.Applies - 1
	}
	if res.Refused != want {
		res.Problems = append(res.Problems, fmt.Sprintf("%d applies refused because the fleet was locked, want %d (--lock-timeout %s)", res.Refused, want, cfg.LockTimeout))
	}
}

// checkAfter checks the fleet once every concurrent apply has ended,
// after the list lag: converged (after one follow-up apply when an apply
// had failed devices), zero duplicates, zero empty slots, no create
// beyond the slots and the failed provisions' replacements, no foreign
// change, and a clean `plan --detailed-exitcode`.
func (l *Lab) checkAfter(ctx context.Context, res *ConcurrentResult, cfg ConcurrentConfig, desired []string, seeded Seeded) error {
	run := Subprocess(cfg.Bin)
	l.settle()
	devs, err := l.Listing(ctx)
	if err != nil {
		return err
	}
	if conv, _ := Converged(devs, desired); len(conv) > 0 {
		failed := false
		for _, c := range res.Codes {
			failed = failed || c == 1
		}
		if !failed || res.Refused == len(res.Codes) {
			res.Problems = append(res.Problems, "every apply ended, none failed, and the fleet is not converged: "+strings.Join(conv, "; "))
		}
		// The failed devices are replaced by the next apply, as an
		// operator would run it.
		res.FollowUp = true
		_, problems, err := l.Apply(ctx, run, cfg.Poll, desired)
		if err != nil {
			return err
		}
		res.Problems = append(res.Problems, problems...)
		if devs, err = l.Listing(ctx); err != nil {
			return err
		}
	}
	fleet := Fleet(devs)
	for _, slot := range desired {
		if n := len(fleet[slot]); n == 0 {
			res.Empty++
		} else {
			res.Duplicates += n - 1
		}
	}
	stats := l.Sim().Stats()
	res.Faults = maps.Clone(stats.Faults)
	res.Creates = stats.Creates
	res.ExtraCreates = stats.Creates - len(desired) - stats.Faults[packetsim.FaultFailedProvision]
	if res.Duplicates+res.Empty+stats.Duplicates > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("after the applies: %d duplicates and %d empty slots listed, %d duplicates in the simulator", res.Duplicates, res.Empty, stats.Duplicates))
	}
	if res.ExtraCreates > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d creates beyond the %d slots and %d failed provisions", res.ExtraCreates, len(desired), stats.Faults[packetsim.FaultFailedProvision]))
	}
	p := l.Plan(ctx, run)
	res.PlanCode = p.Code
	if p.Code != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("plan --detailed-exitcode at the end exited %d: %s", p.Code, lastLine(p.Stdout+p.Stderr)))
	}
	if res.ForeignChanged, err = l.ForeignChanges(ctx, seeded); err != nil {
		return err
	}
	for _, c := range res.ForeignChanged {
		res.Problems = append(res.Problems, "foreign device "+c)
	}
	return nil
}
