package harness

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"time"
)

// Subprocess returns a Runner that executes the lkfleet binary at bin with
// only the given environment (plus PATH and HOME). Cancelling the context
// sends SIGINT, as Ctrl-C in a terminal would; a process still running 30 s
// later is killed and reported with exit code -1.
func Subprocess(bin string) Runner {
	return func(ctx context.Context, vars map[string]string, args ...string) (string, string, int) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 30 * time.Second
		err := cmd.Run()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			errb.WriteString(err.Error())
			code = -1
		}
		return out.String(), errb.String(), code
	}
}
