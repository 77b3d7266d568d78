package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// simReadyFD names, in a background simulator's environment, the file
// descriptor on which it reports its PACKET_* lines once it serves. The
// starting process waits for them, so `eval "$(lkfleet sim --background)"`
// returns with a simulator that answers.
const simReadyFD = "LKFLEET_SIM_READY_FD"

// simStartTimeout bounds the wait for a background simulator to serve.
// Starting takes milliseconds; --boot qemu checks QEMU first.
const simStartTimeout = 30 * time.Second

// backgroundFlags are the flags of sim that are not passed on to the
// background process: those about running in the background, and the
// token's, which the starting process has resolved already and hands on
// in the environment (a command line is visible to every user in ps).
var backgroundFlags = map[string]bool{"background": true, "pid-file": true, "log-file": true, "token": true, "token-file": true}

// addBackgroundFlags declares --background, --pid-file and --log-file.
func addBackgroundFlags(cmd *cobra.Command, o *simOptions) {
	f := cmd.Flags()
	f.BoolVar(&o.background, "background", false, "start the simulator in the background, print its settings as shell export lines once it serves, and return (stop it with 'lkfleet sim stop')")
	f.StringVar(&o.pidFile, "pid-file", defaultSimFile("pid"), "with --background: where to write the simulator's pid ('lkfleet sim stop' reads it)")
	f.StringVar(&o.logFile, "log-file", defaultSimFile("log"), "with --background: where the simulator writes its output")
}

// defaultSimFile is the per-user default pid or log file of a background
// simulator: one per user unless --pid-file says otherwise, found by
// 'lkfleet sim stop' from any directory.
func defaultSimFile(ext string) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("lkfleet-sim-%d.%s", os.Getuid(), ext))
}

// simVar is one NAME=value line of the simulator's first output.
type simVar struct{ name, value string }

// exportLine is v as a POSIX shell export (values are URLs, hex and
// UUIDs, but quoting keeps a surprise from becoming a command).
func (v simVar) exportLine() string {
	return "export " + v.name + "='" + strings.ReplaceAll(v.value, "'", `'\''`) + "'"
}

// usableURL turns the URL of an address bound to every interface
// (0.0.0.0 or ::) into one a client on this machine can use.
func usableURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsUnspecified() {
		return raw
	}
	host := "127.0.0.1"
	if ip.To4() == nil {
		host = "::1"
	}
	u.Host = net.JoinHostPort(host, u.Port())
	return u.String()
}

// reportReady hands vars to the process that started this simulator in
// the background, if any, and closes the channel so it can return.
func reportReady(env *Env, vars []simVar) error {
	fdText := env.Getenv(simReadyFD)
	if fdText == "" {
		return nil
	}
	fd, err := strconv.Atoi(fdText)
	if err != nil {
		return fmt.Errorf("report readiness: %s=%q is not a file descriptor", simReadyFD, fdText)
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	for _, v := range vars {
		if _, err := fmt.Fprintf(f, "%s=%s\n", v.name, v.value); err != nil {
			return fmt.Errorf("report readiness: %w", err)
		}
	}
	return nil
}

// runSimBackground starts `lkfleet sim` with the same flags as a detached
// process, waits until it serves, records its pid and prints its settings
// in export form: `eval "$(lkfleet sim --background)"` sets them in the
// calling shell.
func runSimBackground(cmd *cobra.Command, env *Env, o *simOptions) error {
	if pid, ok := readSimPid(o.pidFile); ok && processAlive(pid) {
		return fmt.Errorf("a simulator already runs in the background (pid %d, %s): stop it with 'lkfleet sim stop%s', or give another --pid-file", pid, o.pidFile, pidFileArg(o.pidFile))
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start simulator in the background: %w", err)
	}
	var args []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if backgroundFlags[f.Name] {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	logf, err := os.OpenFile(o.logFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("start simulator in the background: log file: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start simulator in the background: %w", err)
	}
	defer r.Close()
	child := exec.Command(exe, append([]string{"sim"}, args...)...)
	child.Env = simChildEnv(os.Environ(), o.token)
	child.ExtraFiles = []*os.File{w}
	child.Stdout, child.Stderr = logf, logf
	// Its own session: Ctrl-C in the shell that started it, or the shell
	// exiting, does not stop it; 'lkfleet sim stop' does.
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start simulator in the background: %w", err)
	}
	w.Close()
	exited := make(chan error, 1)
	// Reaps the process should it stop while this one still runs.
	go func() { exited <- child.Wait() }()

	lines := make(chan []simVar, 1)
	go func() {
		var vars []simVar
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				vars = append(vars, simVar{k, v})
			}
		}
		lines <- vars
	}()
	ctx, cancel := context.WithTimeout(cmd.Context(), simStartTimeout)
	defer cancel()
	var vars []simVar
	select {
	case vars = <-lines:
	case <-ctx.Done():
		_ = child.Process.Signal(syscall.SIGTERM)
		if cmd.Context().Err() != nil {
			return withCode(ExitInterrupted, errors.New("interrupted while the simulator started; it was stopped"))
		}
		return fmt.Errorf("start simulator in the background: it did not serve within %s (log: %s)", simStartTimeout, o.logFile)
	}
	if len(vars) == 0 {
		// It ended before serving: its log says why.
		<-exited
		return fmt.Errorf("start simulator in the background: %s", lastLines(o.logFile))
	}
	pid := child.Process.Pid
	if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = child.Process.Signal(syscall.SIGTERM)
		return fmt.Errorf("start simulator in the background: pid file: %w", err)
	}
	for _, v := range vars {
		if _, err := fmt.Fprintln(env.Out, v.exportLine()); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Err, "lkfleet sim: running in the background (pid %d, log %s); stop it with: lkfleet sim stop%s\n", pid, o.logFile, pidFileArg(o.pidFile))
	return nil
}

// simChildEnv is the environment of a background simulator: this one's,
// with the readiness descriptor and the resolved token (--token,
// --token-file or $LKFLEET_SIM_TOKEN) in place of any inherited token; no
// token lets the simulator generate and report one.
func simChildEnv(environ []string, token string) []string {
	env := make([]string, 0, len(environ)+2)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, simTokenEnv+"=") && !strings.HasPrefix(kv, simReadyFD+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, simReadyFD+"=3")
	if token != "" {
		env = append(env, simTokenEnv+"="+token)
	}
	return env
}

// pidFileArg is the --pid-file argument 'lkfleet sim stop' needs for
// path: none for the default.
func pidFileArg(path string) string {
	if path == defaultSimFile("pid") {
		return ""
	}
	return " --pid-file " + path
}

// lastLines is the end of a background simulator's log, as one line.
func lastLines(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return "it stopped before serving (no output)"
	}
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > 3 {
		ls = ls[len(ls)-3:]
	}
	return strings.TrimPrefix(strings.Join(ls, "; "), "Error: ")
}

// readSimPid reads a pid file.
func readSimPid(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// processAlive reports whether pid names a running process.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// newSimStopCmd is `lkfleet sim stop`.
func newSimStopCmd(env *Env) *cobra.Command {
	var pidFile string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the simulator started with --background",
		Long: `stop sends the background simulator named by the pid file SIGTERM (it
saves --state, as Ctrl-C does) and waits until it has ended.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return stopSim(cmd.Context(), env, pidFile, wait)
		},
	}
	cmd.Flags().StringVar(&pidFile, "pid-file", defaultSimFile("pid"), "the pid file given to 'lkfleet sim --background'")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Second, "how long to wait for it to end")
	return cmd
}

// stopSim ends the simulator whose pid is in pidFile.
func stopSim(ctx context.Context, env *Env, pidFile string, wait time.Duration) error {
	pid, ok := readSimPid(pidFile)
	if !ok {
		return fmt.Errorf("no background simulator: %s does not hold a pid (start one with 'lkfleet sim --background')", pidFile)
	}
	if !processAlive(pid) {
		os.Remove(pidFile)
		return fmt.Errorf("the background simulator (pid %d) is not running any more; removed %s", pid, pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop simulator (pid %d): %w", pid, err)
	}
	// Not this process's child: there is nothing to wait on but the pid.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(wait)
	for processAlive(pid) {
		select {
		case <-t.C:
		case <-deadline:
			return fmt.Errorf("stop simulator (pid %d): still running after %s", pid, wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	os.Remove(pidFile)
	_, err := fmt.Fprintf(env.Err, "lkfleet sim: stopped (pid %d)\n", pid)
	return err
}
