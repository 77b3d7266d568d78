// Command lkfleet provisions fleets of LinuxKit machines on Packet-compatible
// bare metal from one declarative fleet file.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

func main() { os.Exit(realMain()) }

// realMain runs lkfleet as a process: arguments, streams and signals of
// its own. Tests run the test binary through it to get a real process.
func realMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first Ctrl-C cancels ctx: lkfleet stops scheduling, lets calls in
	// flight finish and prints what was done. Restoring the default handler
	// then lets a second Ctrl-C end the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	tuneGC(os.Getenv)
	tuneProcs(os.Getenv, os.Args[1:])
	done := profile(os.Getenv("LKFLEET_CPUPROFILE"), os.Getenv("LKFLEET_MEMPROFILE"))
	code := Run(ctx, os.Args[1:], SystemEnv())
	done()
	stop()
	return code
}

// GC settings of the lkfleet process (docs/architecture.md, "Memory and
// the garbage collector").
const (
	gcPercent   = 400
	memoryLimit = 256 << 20
)

// tuneGC lets the heap grow to memoryLimit before the collector works
// hard, instead of collecting every time the heap doubles: a plan over
// 100,000 devices holds about 170 MB at its peak and allocates a few
// hundred MB more on the way, and with the default GOGC=100 it collected
// 15 times (a sixth of its CPU) and still peaked near 300 MiB. GOGC=400
// with a soft limit of 256 MiB: plan 100,000 2.4–2.6 s → 1.9 s CPU and
// 270–290 → 258 MiB; apply 1,000 creates 1.5 → 1.44 ms per device. Past
// the limit (fleets well above 100,000 devices) the collector runs more
// often, capped by the runtime at about half the CPU; it never fails an
// allocation. GOGC or GOMEMLIMIT in the environment leaves both alone.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(gcPercent)
	debug.SetMemoryLimit(memoryLimit)
}

// oneProc are the commands that run on one processor (tuneProcs): API
// clients that spend their time waiting for answers and the rate limit.
var oneProc = map[string]bool{"plan": true, "apply": true, "destroy": true, "status": true}

// tuneProcs runs the API client commands with GOMAXPROCS=1 unless
// GOMAXPROCS is set (docs/architecture.md, "One processor for the API
// clients"). Their work comes in small pieces between wake-ups (an answer,
// a timer), and with more processors the runtime's scheduler spins
// looking for work after each one: on 2 cores one processor took 8–13 %
// less CPU for the same applies (1.38–1.44 → 1.21–1.24 ms per device at
// 1,000 creates, 1.19 → 1.09 ms at 10,000) and plan over 100,000 devices
// 2.32 → 1.94 s of CPU and 4.60 → 4.27 s of wall time. The simulator,
// push (hashing and uploads) and render keep every processor.
func tuneProcs(getenv func(string) string, args []string) {
	if getenv("GOMAXPROCS") != "" || !runsOnOneProc(args) {
		return
	}
	runtime.GOMAXPROCS(1)
}

// runsOnOneProc reports whether args name one of the oneProc commands.
func runsOnOneProc(args []string) bool {
	cmd, _, err := newRootCmd(&Env{Getenv: func(string) string { return "" }}).Find(args)
	return err == nil && cmd.HasParent() && !cmd.Parent().HasParent() && oneProc[cmd.Name()]
}

// profile starts the hidden profiling hook (docs/architecture.md,
// "Profiling"): LKFLEET_CPUPROFILE names a file for a CPU profile of the
// whole run, LKFLEET_MEMPROFILE one for a heap profile (allocations) at
// its end, both for `go tool pprof`. It is how the scale figures of
// docs/benchmarks.md are explained; a profile that cannot be written is
// reported and the run goes on without it. done stops and writes them.
func profile(cpu, mem string) (done func()) {
	var cpuFile *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "lkfleet: cpu profile %s: %v\n", cpu, err)
		} else {
			cpuFile = f
		}
	}
	return func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
		if mem == "" {
			return
		}
		f, err := os.Create(mem)
		if err == nil {
			runtime.GC() // the heap profile shows the state of the last GC
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "lkfleet: memory profile %s: %v\n", mem, err)
		}
	}
}
