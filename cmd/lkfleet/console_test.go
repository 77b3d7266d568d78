package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

func TestSOSArgs(t *testing.T) {
	const id = "3f782963-1da0-4787-a4b5-77a4d41bdf07"
	cases := []struct {
		sos, facility string
		want          []string
		err           string
	}{
		{"", "ams1", []string{"--", id + "@sos.ams1.platformequinix.com"}, ""},
		{"sos.ewr1.platformequinix.com", "ewr1", []string{"--", id + "@sos.ewr1.platformequinix.com"}, ""},
		{"127.0.0.1:2222", "ams1", []string{"-p", "2222", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "--", id + "@127.0.0.1"}, ""},
		{"[::1]:22", "ams1", []string{"-p", "22", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "--", id + "@[::1]"}, ""},
		{"me@sos.example.net", "ams1", []string{"--", "me@sos.example.net"}, ""},
		{"-oProxyCommand=evil", "ams1", nil, "not a valid host name"},
		{"-l@x", "ams1", nil, "not a valid user name"},
		{"host:0", "ams1", nil, "not a valid port"},
		{"a b", "ams1", nil, "not a valid host name"},
		// Hostile values an API (or whoever answers in its place) might
		// put in sos or facility: nothing reaches ssh as an option, a
		// second destination or a shell word.
		{"-oProxyCommand=touch /tmp/pwned", "", nil, "not a valid host name"},
		{"-oProxyCommand=sh@x", "", nil, "not a valid user name"},
		{"sos.ny5.example.com -oLocalCommand=x", "", nil, "not a valid host name"},
		{"u@h;reboot", "", nil, "not a valid host name"},
		{"u@-h", "", nil, "not a valid host name"},
		{"", "ams1 -F/dev/null", nil, "not a valid host name"},
	}
	for _, tc := range cases {
		got, err := sosArgs(planner.Live{ID: id, SOS: tc.sos, Facility: tc.facility})
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("sosArgs(%q) = %q, %v; want error %q", tc.sos, got, err, tc.err)
		case tc.err == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("sosArgs(%q) = %q, %v; want %q", tc.sos, got, err, tc.want)
		}
	}
}

func TestSSHEnvKeepsTheTokenOut(t *testing.T) {
	env := &Env{Getenv: func(k string) string {
		return map[string]string{"PATH": "/bin", "HOME": "/root", "PACKET_AUTH_TOKEN": "secret", "SSH_AUTH_SOCK": "/tmp/a"}[k]
	}}
	got := sshEnv(env)
	if want := []string{"PATH=/bin", "HOME=/root", "SSH_AUTH_SOCK=/tmp/a"}; !slices.Equal(got, want) {
		t.Fatalf("sshEnv = %q, want %q", got, want)
	}
}

// TestConsoleAttachesToSimulatorSOS runs `lkfleet console` for real: the
// real OpenSSH client, authenticated by an agent holding a key registered
// in the project, shows what the simulator's interpreter did on the
// device's console and ends cleanly when the device is deleted.
func TestConsoleAttachesToSimulatorSOS(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("console test: no ssh on PATH (Debian package openssh-client)")
	}
	e := newE2E(t, packetsim.Config{})
	sos, err := e.srv.Sim.StartSOS(packetsim.SOSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sos.Close() })

	// The key lives only in an agent that this test serves.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	signers, _ := keyring.Signers()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signers[0].PublicKey())))
	// The project's key, registered as a user does.
	req, _ := http.NewRequest("POST", e.srv.APIURL+"projects/"+e.srv.Sim.Project()+"/ssh-keys", strings.NewReader(`{"label":"console-test","key":"`+line+`"}`))
	req.Header.Set("X-Auth-Token", e2eToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusCreated {
		t.Fatalf("register key: HTTP %d, want 201", resp.StatusCode)
	}

	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain", "--wait", "booted")
	id := ids(e.status())["web/ams1/1"]
	host, port, _ := net.SplitHostPort(sos.Addr())
	out := e.mustRun(0, "console", "web-ams1-1", "-f", e.fleet, "--print")
	if want := "ssh -p " + port + " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -- " + id + "@" + host + "\n"; out != want {
		t.Fatalf("console --print = %q, want %q", out, want)
	}

	vars := map[string]string{"PATH": os.Getenv("PATH"), "HOME": t.TempDir(), "SSH_AUTH_SOCK": sock}
	for k, v := range e.vars {
		vars[k] = v
	}
	var mu sync.Mutex
	var stdout, stderr bytes.Buffer
	changed := make(chan struct{})
	env := &Env{
		In: strings.NewReader(""),
		Out: writerFunc(func(p []byte) {
			mu.Lock()
			stdout.Write(p)
			close(changed)
			changed = make(chan struct{})
			mu.Unlock()
		}),
		Err:    writerFunc(func(p []byte) { mu.Lock(); stderr.Write(p); mu.Unlock() }),
		Getenv: func(k string) string { return vars[k] },
	}
	exited := make(chan int, 1)
	go func() { exited <- Run(context.Background(), []string{"console", "web-ams1-1", "-f", e.fleet}, env) }()
	bound := time.After(30 * time.Second)
	for _, want := range []string{"boot of web-ams1-1 (" + id + ")", "ipxe> kernel ${base-url}/sshd-kernel", "recorded user state succeeded"} {
		for {
			mu.Lock()
			got, ch := stdout.String(), changed
			mu.Unlock()
			if strings.Contains(got, want) {
				break
			}
			select {
			case <-ch:
			case code := <-exited:
				t.Fatalf("console exited %d before %q appeared\nstdout:\n%s\nstderr:\n%s", code, want, got, stderr.String())
			case <-bound:
				t.Fatalf("no %q on the console\nstdout:\n%s\nstderr:\n%s", want, got, stderr.String())
			}
		}
	}
	e.deleteDevice(id)
	select {
	case code := <-exited:
		mu.Lock()
		defer mu.Unlock()
		if code != 0 || !strings.Contains(stderr.String(), "the device was deleted") {
			t.Fatalf("console exit %d after the delete, stderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the console session did not end when the device was deleted")
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// deleteDevice deletes a device through the API.
func (e *e2e) deleteDevice(id string) {
	e.t.Helper()
	req, _ := http.NewRequest("DELETE", e.srv.APIURL+"devices/"+id, nil)
	req.Header.Set("X-Auth-Token", e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		e.t.Fatalf("delete %s: %d", id, resp.StatusCode)
	}
}
