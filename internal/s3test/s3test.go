// Package s3test starts a real S3-compatible server (versitygw, posix
// backend) on 127.0.0.1 for end-to-end tests.
//
// versitygw is built once with `go install` outside this module (its
// dependencies never enter lkfleet's go.mod) and cached as
// .cache/bin/versitygw-VERSION under the repository root, or under the
// user cache directory when the repository root cannot be found. The
// first build takes about two minutes on two cores; later runs reuse the
// binary. Tests skip with a clear message only when it cannot be built.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the versitygw release the tests run against.
const Version = "v1.8.0"

// Credentials of the server's root account. They are test-only values for
// a loopback server, handed to the code under test through the standard
// AWS environment variables.
const (
	AccessKey = "lkfleet-test"
	SecretKey = "lkfleet-test-secret"
	Region    = "us-east-1"
)

// Server is a running versitygw.
type Server struct {
	// URL is the S3 endpoint, http://127.0.0.1:PORT.
	URL string
	// DataDir holds one directory per bucket, one file per object: tests
	// corrupt objects behind the server's back through it.
	DataDir string
	cmd     *exec.Cmd
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the cached versitygw binary, building it on first use.
func Binary() (string, error) {
	buildOnce.Do(func() { buildPath, buildErr = build() })
	return buildPath, buildErr
}

func cacheDir() (string, error) {
	if root, err := repoRoot(); err == nil {
		return filepath.Join(root, ".cache", "bin"), nil
	}
	uc, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(uc, "lkfleet", "bin"), nil
}

// repoRoot walks up from the working directory to the directory holding
// lkfleet's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module github.com/lkfleet/lkfleet\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("lkfleet's go.mod not found above the working directory")
		}
		dir = parent
	}
}

func build() (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "versitygw-"+Version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Test binaries of several packages may build at once: one builds,
	// the others wait on the lock and then find the binary.
	lock, err := os.OpenFile(filepath.Join(dir, ".versitygw.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", "github.com/versity/versitygw/cmd/versitygw@"+Version)
	// Outside any module, so lkfleet's go.mod is neither read nor changed.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install versitygw@%s: %v\n%s", Version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Start runs a fresh versitygw on a free loopback port with its data in a
// test temp directory, and sets the AWS environment variables (test
// credentials, region, no shared config files) for the test. The server is
// stopped when the test ends. The test is skipped when versitygw cannot be
// built (no network and no cached binary).
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("S3 server unavailable, skipping: versitygw %s cannot be built: %v", Version, err)
	}
	root := t.TempDir()
	data, meta := filepath.Join(root, "data"), filepath.Join(root, "meta")
	for _, d := range []string{data, meta} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--port", addr, "--quiet", "--region", Region,
		"posix", "--sidecar", meta, data)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	// One writer for both streams: exec copies each from its own goroutine.
	logs := &syncWriter{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	s := &Server{URL: "http://" + addr, DataDir: data, cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	if err := waitReady(s.URL, exited); err != nil {
		t.Fatalf("versitygw on %s: %v\n%s", addr, err, logs.String())
	}
	SetEnv(t)
	return s
}

// SetEnv points the standard AWS credential chain at the test server's
// root account, and away from any real configuration on the machine.
func SetEnv(t testing.TB) {
	empty := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           AccessKey,
		"AWS_SECRET_ACCESS_KEY":       SecretKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  Region,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             empty,
		"AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

// waitReady polls the port until the server answers HTTP. versitygw prints
// nothing reliable when it is ready, so this is the one wait on an outside
// process: bounded, and ended early if the process exits.
func waitReady(url string, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before serving: %v", err)
		case <-ctx.Done():
			return errors.New("not serving after 20s")
		case <-tick.C:
		}
	}
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// ObjectPath is the file that holds bucket/key on disk.
func (s *Server) ObjectPath(bucket, key string) string {
	return filepath.Join(s.DataDir, bucket, filepath.FromSlash(key))
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
