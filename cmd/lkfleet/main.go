// Command lkfleet provisions fleets of LinuxKit machines on Packet-compatible
// bare metal from one declarative fleet file.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], SystemEnv())
	stop()
	os.Exit(code)
}
