package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// asLkfleet, set in a process's environment, makes the test binary run as
// lkfleet itself (see TestMain).
const asLkfleet = "LKFLEET_TEST_AS_MAIN"

// TestMain lets the test binary stand in for lkfleet: when `sim
// --background` starts itself again (os.Executable is this binary), and
// when a test needs lkfleet as a real process (signals, a terminal).
func TestMain(m *testing.M) {
	if os.Getenv(simReadyFD) != "" || os.Getenv(asLkfleet) != "" {
		os.Exit(realMain())
	}
	os.Exit(m.Run())
}

func TestSimBackgroundEvalAndStop(t *testing.T) {
	dir := t.TempDir()
	pidFile, logFile := filepath.Join(dir, "sim.pid"), filepath.Join(dir, "sim.log")
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, nil, "sim", "--background", "--listen", "127.0.0.1:0", "--quiet",
		"--images", images, "--pid-file", pidFile, "--log-file", logFile)
	if code != 0 {
		t.Fatalf("sim --background: code %d, stderr %q", code, errs)
	}
	pid, ok := readSimPid(pidFile)
	if !ok || !processAlive(pid) {
		t.Fatalf("no live pid in %s after start", pidFile)
	}
	t.Cleanup(func() {
		if processAlive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if !strings.Contains(errs, "lkfleet sim stop --pid-file "+pidFile) {
		t.Errorf("stderr does not say how to stop it: %q", errs)
	}
	// The output, evaluated by a real shell, sets the settings.
	sh := exec.Command("sh", "-c", out+`
printf '%s\n' "$PACKET_API_URL" "$PACKET_AUTH_TOKEN" "$PACKET_PROJECT_ID" "$LKFLEET_SIM_URL"`)
	got, err := sh.Output()
	if err != nil {
		t.Fatalf("sh could not evaluate %q: %v", out, err)
	}
	v := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(v) != 4 || !strings.HasPrefix(v[0], "http://127.0.0.1:") || len(v[1]) < 32 || len(v[2]) != 36 || v[0] != v[3]+"/metal/v1/" {
		t.Fatalf("evaluated settings = %q from %q", v, out)
	}
	// It serves already: no waiting after the command returns.
	req, _ := http.NewRequest("GET", v[0]+"projects/"+v[2]+"/devices", nil)
	req.Header.Set("X-Auth-Token", v[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("list devices: %d", resp.StatusCode)
	}
	resp, err = http.Get(v[3] + "/images/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("image from --images: %d", resp.StatusCode)
	}

	if _, errs, code := runCLI(t, nil, "sim", "--background", "--listen", "127.0.0.1:0", "--pid-file", pidFile, "--log-file", logFile+"2"); code != ExitError || !strings.Contains(errs, "already runs in the background (pid "+strconv.Itoa(pid)) {
		t.Errorf("second start with the same pid file: code %d, stderr %q", code, errs)
	}

	if _, errs, code := runCLI(t, nil, "sim", "stop", "--pid-file", pidFile); code != 0 {
		t.Fatalf("sim stop: code %d, stderr %q", code, errs)
	}
	if processAlive(pid) {
		t.Fatalf("pid %d still runs after sim stop", pid)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left after stop: %v", err)
	}
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "stopping simulator") {
		t.Errorf("the simulator did not stop cleanly; log:\n%s", b)
	}
	if _, errs, code := runCLI(t, nil, "sim", "stop", "--pid-file", pidFile); code != ExitError || !strings.Contains(errs, "no background simulator") {
		t.Errorf("second stop: code %d, stderr %q", code, errs)
	}
}

func TestSimBackgroundReportsAFailedStart(t *testing.T) {
	// A port that is taken: the background process fails, and says why.
	busy := filepath.Join(t.TempDir(), "busy")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, errs, code := runCLI(t, nil, "sim", "--background", "--listen", ln.Addr().String(), "--pid-file", busy+".pid", "--log-file", busy+".log")
	if code != ExitError || !strings.Contains(errs, "address already in use") {
		t.Fatalf("code %d, stderr %q; want the bind error", code, errs)
	}
	if _, err := os.Stat(busy + ".pid"); !os.IsNotExist(err) {
		t.Errorf("pid file written for a simulator that never served")
	}
}

func TestSimRefusesAMissingImagesDir(t *testing.T) {
	_, errs, code := runCLI(t, nil, "sim", "--images", filepath.Join(t.TempDir(), "images"))
	if code != ExitError || !strings.Contains(errs, "images: not a directory") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}

func TestSimPrintsItsRootURL(t *testing.T) {
	out, _, _ := startSimCLI(t, "--quiet")
	vars := simVars(out.String())
	// simVars keeps PACKET_ names only; read the fourth line.
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 4 || lines[3] != "LKFLEET_SIM_URL="+strings.TrimSuffix(vars["PACKET_API_URL"], "/metal/v1/") {
		t.Fatalf("output %q lacks LKFLEET_SIM_URL after the PACKET_ lines", out.String())
	}
}

func TestUsableURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://0.0.0.0:8080":           "http://127.0.0.1:8080",
		"http://0.0.0.0:8080/metal/v1/": "http://127.0.0.1:8080/metal/v1/",
		"http://[::]:8080/metal/v1/":    "http://[::1]:8080/metal/v1/",
		"http://127.0.0.1:8080":         "http://127.0.0.1:8080",
		"http://192.0.2.7:8080":         "http://192.0.2.7:8080",
	} {
		if got := usableURL(in); got != want {
			t.Errorf("usableURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSimHelpShowsTheWorkingStart(t *testing.T) {
	out, _, _ := runCLI(t, nil, "sim", "--help")
	if strings.Contains(out, "head -3") || !strings.Contains(out, `eval "$(lkfleet sim --background`) || !strings.Contains(out, "lkfleet sim stop") {
		t.Fatalf("sim --help:\n%s", out)
	}
}

// TestSimBackgroundTokenStaysOffTheCommandLine: a token given by
// LKFLEET_SIM_TOKEN, --token-file or --token reaches the background
// simulator in its environment; its command line (which ps shows every
// user) and the export lines never hold it, and it is the one accepted.
func TestSimBackgroundTokenStaysOffTheCommandLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("file-token-789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		vars  map[string]string
		args  []string
		token string
	}{
		{"environment", map[string]string{simTokenEnv: "env-token-456"}, nil, "env-token-456"},
		{"file", map[string]string{simTokenEnv: "env-token-456"}, []string{"--token-file", file}, "file-token-789"},
		{"flag", nil, []string{"--token", "flag-token-123"}, "flag-token-123"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pidFile := filepath.Join(dir, c.name+".pid")
			out, errs, code := runCLI(t, c.vars, append([]string{"sim", "--background", "--listen", "127.0.0.1:0", "--quiet", "--rate-limit", "0",
				"--pid-file", pidFile, "--log-file", filepath.Join(dir, c.name+".log")}, c.args...)...)
			if code != 0 {
				t.Fatalf("sim --background: code %d, stderr %q", code, errs)
			}
			pid, ok := readSimPid(pidFile)
			if !ok {
				t.Fatalf("no pid in %s", pidFile)
			}
			t.Cleanup(func() {
				if processAlive(pid) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			if strings.Contains(out, c.token) || strings.Contains(out, "PACKET_AUTH_TOKEN") {
				t.Errorf("the given token was printed:\n%s", out)
			}
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if err != nil {
				t.Skipf("cannot read the background process's command line: %v", err)
			}
			if strings.Contains(string(cmdline), c.token) || strings.Contains(string(cmdline), "token") {
				t.Errorf("the background command line holds the token: %q", cmdline)
			}
			vars := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
					vars[k] = strings.Trim(v, "'")
				}
			}
			if got := simStatus(t, vars, c.token); got != 200 {
				t.Errorf("the %s token answers %d, want 200", c.name, got)
			}
			if got := simStatus(t, vars, "something-else"); got != 401 {
				t.Errorf("another token answers %d, want 401", got)
			}
			if _, errs, code := runCLI(t, nil, "sim", "stop", "--pid-file", pidFile); code != 0 {
				t.Errorf("sim stop: code %d, stderr %q", code, errs)
			}
		})
	}
}
