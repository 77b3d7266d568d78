// Command lkfleet provisions fleets of LinuxKit machines on Packet-compatible
// bare metal from one declarative fleet file.
package main

import (
	"context"
	"os"
	"os/signal"
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
	code := Run(ctx, os.Args[1:], SystemEnv())
	stop()
	return code
}
