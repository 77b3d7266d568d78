package packetsim_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// newKey returns a fresh ed25519 signer and its authorized_keys line.
func newKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// registerKey adds an SSH key to the test project through the API.
func registerKey(t *testing.T, srv *packetsim.Server, line string) {
	t.Helper()
	resp := apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/ssh-keys", `{"label":"sos-test","key":`+jsonString(line)+`}`, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST ssh-keys: status %d, want 201", resp.StatusCode)
	}
}

// sosSession is one client session on the SOS server.
type sosSession struct {
	t       *testing.T
	client  *ssh.Client
	sess    *ssh.Session
	in      io.WriteCloser
	mu      sync.Mutex
	out     bytes.Buffer
	stderr  bytes.Buffer
	changed chan struct{} // closed and replaced on output
	ended   chan error    // the session's Wait result
}

func dialSOS(addr, user string, key ssh.Signer, banners *[]string) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		BannerCallback: func(m string) error {
			if banners != nil {
				*banners = append(*banners, m)
			}
			return nil
		},
		Timeout: 10 * time.Second,
	})
}

func openSOS(t *testing.T, addr, user string, key ssh.Signer) *sosSession {
	t.Helper()
	c, err := dialSOS(addr, user, key, nil)
	if err != nil {
		t.Fatalf("ssh %s@%s: %v", user, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s := &sosSession{t: t, client: c, sess: sess, changed: make(chan struct{}), ended: make(chan error, 1)}
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatalf("pty-req: %v", err)
	}
	if s.in, err = sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	sess.Stdout = writerFunc(func(p []byte) {
		s.mu.Lock()
		s.out.Write(p)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	})
	sess.Stderr = writerFunc(func(p []byte) { s.mu.Lock(); s.stderr.Write(p); s.mu.Unlock() })
	if err := sess.Shell(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	go func() { s.ended <- sess.Wait() }()
	return s
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// waitOutput blocks until the session's output contains want (bounded so
// that a broken server fails the test instead of hanging it).
func (s *sosSession) waitOutput(want string) string {
	s.t.Helper()
	bound := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		out, ch := s.out.String(), s.changed
		s.mu.Unlock()
		if strings.Contains(out, want) {
			return out
		}
		select {
		case <-ch:
		case err := <-s.ended:
			s.t.Fatalf("session ended (%v) before %q appeared; output:\n%s", err, want, out)
		case <-bound:
			s.t.Fatalf("no %q in the console after 20 s; output:\n%s", want, out)
		}
	}
}

// waitMore blocks until the output grows beyond n bytes.
func (s *sosSession) waitMore(n int) {
	s.t.Helper()
	for {
		s.mu.Lock()
		l, ch := s.out.Len(), s.changed
		s.mu.Unlock()
		if l > n {
			return
		}
		select {
		case <-ch:
		case err := <-s.ended:
			s.t.Fatalf("session ended (%v) while waiting for output", err)
		case <-time.After(20 * time.Second):
			s.t.Fatal("no new console output for 20 s")
		}
	}
}

// waitEnd waits for the server to end the session and returns its stderr.
func (s *sosSession) waitEnd() string {
	s.t.Helper()
	select {
	case err := <-s.ended:
		if err != nil {
			s.t.Fatalf("session ended with %v, want exit status 0", err)
		}
	case <-time.After(20 * time.Second):
		s.t.Fatalf("the session did not end within 20 s")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

func startSOS(t *testing.T, srv *packetsim.Server) string {
	t.Helper()
	o, err := srv.Sim.StartSOS(packetsim.SOSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Errorf("close SOS: %v", err)
		}
	})
	return o.Addr()
}

// TestSOSConsole drives the console as SOS users do: the interpreter's
// boot shows on it, a second session replays from boot start, both see
// live output and type into the guest, and deleting the device ends both.
func TestSOSConsole(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	addr := startSOS(t, srv)
	key, line := newKey(t)
	registerKey(t, srv, line)
	d := createRaw(t, srv, `{"hostname":"sos-1","plan":"c3.small.x86","facility":"ams1","operating_system":"custom_ipxe","userdata":`+jsonString(goodScript(srv))+`}`)

	a := openSOS(t, addr, d.ID, key)
	// What the interpreter did, live or replayed: script lines, the
	// kernel it checked, the recorded result.
	a.waitOutput("recorded user state succeeded")
	out := a.waitOutput("")
	for _, want := range []string{"boot of sos-1 (" + d.ID + ")", "ipxe> initrd --name initrd", "kernel " + srv.URL + "/images/good-kernel console=ttyS1", "initrd " + srv.URL + "/images/good-initrd.img"} {
		if !strings.Contains(out, want) {
			t.Fatalf("console lacks %q:\n%s", want, out)
		}
	}

	con, ok := srv.Sim.Console(d.ID)
	if !ok {
		t.Fatal("no console for a live device")
	}
	con.Write([]byte("EARLY line\r\n"))
	b := openSOS(t, addr, d.ID, key)
	replay := b.waitOutput("EARLY line")
	if !strings.Contains(replay, "ipxe> kernel") || strings.Index(replay, "ipxe> kernel") > strings.Index(replay, "EARLY line") {
		t.Fatalf("the second session did not replay from boot start:\n%s", replay)
	}

	con.Write([]byte("LIVE line\r\n"))
	a.waitOutput("LIVE line")
	b.waitOutput("LIVE line")

	// Input from both sessions reaches the guest's serial port.
	pr, pw := io.Pipe()
	defer con.SetInput(pw)()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		var acc []byte
		for !bytes.Contains(acc, []byte("uname -r\r")) || !bytes.Contains(acc, []byte("B!")) {
			n, err := pr.Read(buf)
			if err != nil {
				break
			}
			acc = append(acc, buf[:n]...)
		}
		got <- string(acc)
	}()
	io.WriteString(a.in, "uname -r\r")
	io.WriteString(b.in, "B!")
	select {
	case s := <-got:
		if !strings.Contains(s, "uname -r\r") || !strings.Contains(s, "B!") {
			t.Fatalf("guest input = %q", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the sessions' input never reached the guest")
	}

	if resp := apiDo(t, srv, "DELETE", "/metal/v1/devices/"+d.ID, "", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	for _, s := range []*sosSession{a, b} {
		if e := s.waitEnd(); !strings.Contains(e, "the device was deleted") {
			t.Fatalf("session stderr %q, want the reason", e)
		}
	}
	// A deleted device is an unknown one.
	var banners []string
	if _, err := dialSOS(addr, d.ID, key, &banners); err == nil || !strings.Contains(strings.Join(banners, ""), "no device") {
		t.Fatalf("ssh to a deleted device: err %v, banners %q", err, banners)
	}
}

// TestSOSPowerOffEndsSession: a reboot keeps a session attached (it shows
// the new boot); powering the device off ends it.
func TestSOSPowerOffEndsSession(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	addr := startSOS(t, srv)
	key, line := newKey(t)
	registerKey(t, srv, line)
	d := createRaw(t, srv, `{"hostname":"sos-2","plan":"c3.small.x86","facility":"ams1","operating_system":"custom_ipxe","always_pxe":true,"userdata":`+jsonString(goodScript(srv))+`}`)
	s := openSOS(t, addr, d.ID, key)
	s.waitOutput("recorded user state succeeded")
	if resp := apiDo(t, srv, "POST", "/metal/v1/devices/"+d.ID+"/actions", `{"type":"reboot"}`, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reboot: %d", resp.StatusCode)
	}
	for {
		out := s.waitOutput("recorded user state succeeded")
		if strings.Count(out, "boot of sos-2") == 2 && strings.Count(out, "recorded user state succeeded") == 2 {
			break
		}
		s.waitMore(len(out))
	}
	if resp := apiDo(t, srv, "POST", "/metal/v1/devices/"+d.ID+"/actions", `{"type":"power_off"}`, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("power_off: %d", resp.StatusCode)
	}
	if e := s.waitEnd(); !strings.Contains(e, "the device was powered off") {
		t.Fatalf("session stderr %q, want the reason", e)
	}
}

// TestSOSRefusals: a key outside the project and an unknown device id are
// refused, each with a banner that says why.
func TestSOSRefusals(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	addr := startSOS(t, srv)
	key, line := newKey(t)
	registerKey(t, srv, line)
	other, _ := newKey(t)
	d := createRaw(t, srv, `{"hostname":"sos-3","plan":"c3.small.x86","facility":"ams1","operating_system":"custom_ipxe","userdata":`+jsonString(goodScript(srv))+`}`)

	// The device document says where its console is.
	var doc struct {
		SOS string `json:"sos"`
	}
	apiDo(t, srv, "GET", "/metal/v1/devices/"+d.ID, "", &doc)
	if doc.SOS != addr {
		t.Fatalf("sos = %q, want the SOS server's address %s", doc.SOS, addr)
	}

	var banners []string
	if _, err := dialSOS(addr, d.ID, other, &banners); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("a key outside the project: err %v, want refused", err)
	}
	if b := strings.Join(banners, ""); !strings.Contains(b, ssh.FingerprintSHA256(other.PublicKey())) || !strings.Contains(b, "is not one of project "+testProject) {
		t.Fatalf("banner %q, want the key's fingerprint and the project", b)
	}
	banners = nil
	if _, err := dialSOS(addr, "00000000-0000-4000-8000-000000000000", key, &banners); err == nil {
		t.Fatal("an unknown device id was accepted")
	}
	if b := strings.Join(banners, ""); !strings.Contains(b, `no device "00000000-0000-4000-8000-000000000000"`) {
		t.Fatalf("banner %q, want the unknown id named", b)
	}
	banners = nil
	if _, err := dialSOS(addr, "root", key, &banners); err == nil || !strings.Contains(strings.Join(banners, ""), "must be a device id") {
		t.Fatalf("user root: err %v, banners %q", err, banners)
	}
	// The registered key still works.
	c, err := dialSOS(addr, d.ID, key, nil)
	if err != nil {
		t.Fatalf("the project's key was refused: %v", err)
	}
	c.Close()
}

// TestLoadOrCreateHostKey: the first start creates the key file (0600),
// later starts read the same key, and a file that is no key is an error.
func TestLoadOrCreateHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sos_host_key")
	a, err := packetsim.LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	b, err := packetsim.LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.PublicKey().Marshal(), b.PublicKey().Marshal()) {
		t.Fatal("the second load gave another key")
	}
	writeFile(t, path, "not a key")
	if _, err := packetsim.LoadOrCreateHostKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a broken key file: %v", err)
	}
}
