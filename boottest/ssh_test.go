package boottest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// newSSHKey writes an unencrypted ed25519 private key to path (mode 0600,
// as ssh demands) and returns its authorized_keys line.
func newSSHKey(t *testing.T, path string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "boot-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}

// sshArgs runs OpenSSH with nothing from the user's configuration: only
// the given key, no agent, no known_hosts.
func sshArgs(key, port, deviceID string, tty bool) []string {
	args := []string{"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=20", "-p", port}
	if tty {
		args = append(args, "-tt")
	}
	return append(args, "--", deviceID+"@127.0.0.1")
}

// sshConsole is a running `ssh` attached to a device's console.
type sshConsole struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	mu      sync.Mutex
	out     bytes.Buffer
	changed chan struct{}
	exited  chan struct{}
	waitErr error // ssh's exit, once exited is closed
	stderr  bytes.Buffer
}

func startSSH(t *testing.T, key, port, deviceID string) *sshConsole {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("ssh: %v (install openssh-client)", err)
	}
	c := &sshConsole{changed: make(chan struct{}), exited: make(chan struct{})}
	c.cmd = exec.Command("ssh", sshArgs(key, port, deviceID, true)...)
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = &lockedWriter{mu: &c.mu, w: &c.stderr}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start ssh: %v", err)
	}
	go func() {
		defer close(c.exited)
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			c.mu.Lock()
			c.out.Write(buf[:n])
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			if err != nil {
				c.waitErr = c.cmd.Wait()
				return
			}
		}
	}()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.exited })
	return c
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (c *sshConsole) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Len()
}

// waitFor blocks until the console output (from byte offset from[0], if
// given) contains want; it fails the test after within.
func (c *sshConsole) waitFor(t *testing.T, want string, within time.Duration, from ...int) string {
	t.Helper()
	bound := time.NewTimer(within)
	defer bound.Stop()
	for {
		c.mu.Lock()
		out, ch, errs := c.out.String(), c.changed, c.stderr.String()
		c.mu.Unlock()
		if len(from) > 0 {
			out = out[min(from[0], len(out)):]
		}
		if strings.Contains(out, want) {
			return out
		}
		select {
		case <-ch:
		case <-c.exited:
			t.Fatalf("ssh exited before %q appeared\nstdout:\n%s\nstderr:\n%s", want, out, errs)
		case <-bound.C:
			t.Fatalf("no %q on the console after %v\nstdout:\n%s\nstderr:\n%s", want, within, out, errs)
		}
	}
}

// stop disconnects with ssh's escape sequence (newline, ~.), and kills
// ssh if it does not leave.
func (c *sshConsole) stop(t *testing.T) {
	io.WriteString(c.stdin, "\r~.")
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Logf("ssh did not leave on ~.; killing it")
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// waitExit waits for ssh to exit on its own and returns its exit code and
// stderr.
func (c *sshConsole) waitExit(t *testing.T, within time.Duration) (int, string) {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(within):
		t.Fatalf("ssh did not exit within %v", within)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(c.waitErr, &ee) {
		return ee.ExitCode(), c.stderr.String()
	}
	if c.waitErr != nil {
		t.Fatalf("ssh: %v", c.waitErr)
	}
	return 0, c.stderr.String()
}

// refusedSSH runs ssh with key and returns its exit code and stderr.
func refusedSSH(t *testing.T, key, port, deviceID string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", sshArgs(key, port, deviceID, false)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	return 0, stderr.String()
}
