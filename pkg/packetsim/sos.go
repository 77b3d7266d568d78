package packetsim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// SOSConfig configures the simulator's SOS server.
type SOSConfig struct {
	// Listen is the address to serve on ("" = 127.0.0.1:0).
	Listen string
	// HostKey is the server's host key (nil = a fresh ed25519 key, so the
	// host key changes at every start).
	HostKey ssh.Signer
}

// SOS is the simulator's Serial Over SSH server, as Packet's
// sos.<facility>.platformequinix.com: `ssh <device-id>@HOST -p PORT`
// attaches to that device's serial console. The user name selects the
// device; the public keys registered in the device's project are the only
// ones accepted. A session replays the console from the current boot's
// start and then is live in both directions; any number of sessions may
// attach to one console (their input is merged, as on a shared serial
// line). A session ends, with exit status 0, when the device is deleted or
// powered off, or when the client disconnects.
type SOS struct {
	sim    *Sim
	ln     net.Listener
	config *ssh.ServerConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// StartSOS starts the SOS server. Close it when done.
func (s *Sim) StartSOS(cfg SOSConfig) (*SOS, error) {
	key := cfg.HostKey
	if key == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("start SOS server: host key: %w", err)
		}
		if key, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("start SOS server: host key: %w", err)
		}
	}
	addr := cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start SOS server: listen on %s: %w", addr, err)
	}
	o := &SOS{sim: s, ln: ln, conns: map[net.Conn]struct{}{}}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.config = &ssh.ServerConfig{
		PublicKeyCallback: o.authorize,
		ServerVersion:     "SSH-2.0-lkfleet-sim-sos",
	}
	o.config.AddHostKey(key)
	a := o.Addr()
	s.consoles.sosAddr.Store(&a)
	o.wg.Add(1)
	go o.accept()
	return o, nil
}

// Addr is the address the server listens on (HOST:PORT).
func (o *SOS) Addr() string { return o.ln.Addr().String() }

// Close stops accepting, ends every session and waits for them.
func (o *SOS) Close() error {
	o.sim.consoles.sosAddr.Store(nil)
	err := o.ln.Close()
	o.cancel()
	o.mu.Lock()
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (o *SOS) accept() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		if o.ctx.Err() != nil {
			o.mu.Unlock()
			c.Close()
			return
		}
		o.conns[c] = struct{}{}
		o.wg.Add(1)
		o.mu.Unlock()
		go func() {
			defer o.wg.Done()
			defer func() {
				o.mu.Lock()
				delete(o.conns, c)
				o.mu.Unlock()
				c.Close()
			}()
			o.serveConn(c)
		}()
	}
}

// LoadOrCreateHostKey reads an OpenSSH private key (unencrypted) from
// path, or, if there is no such file, creates an ed25519 key there (mode
// 0600): an SOS server that keeps its host key across restarts.
func LoadOrCreateHostKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("create SOS host key %s: %w", path, gerr)
		}
		block, merr := ssh.MarshalPrivateKey(priv, "lkfleet sim SOS host key")
		if merr != nil {
			return nil, fmt.Errorf("create SOS host key %s: %w", path, merr)
		}
		b = pem.EncodeToMemory(block)
		if werr := os.WriteFile(path, b, 0o600); werr != nil {
			return nil, fmt.Errorf("create SOS host key: %w", werr)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read SOS host key: %w", err)
	}
	k, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("read SOS host key %s: %w", path, err)
	}
	return k, nil
}

// sosHost is a device's sos value: the SOS server's HOST:PORT while one
// runs (ssh -p PORT <id>@HOST), else the service's host for the facility.
func (s *Sim) sosHost(facility string) string {
	if a := s.consoles.sosAddr.Load(); a != nil {
		return *a
	}
	return "sos." + facility + ".platformequinix.com"
}

// authorize is SOS's authentication: the user is a device id, and the key
// must be one of the device's project's SSH keys. Refusals carry a banner
// that says why.
func (o *SOS) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	id, ok := parseUUID(meta.User())
	var project string
	if ok {
		project, ok = o.sim.DeviceProject(id.String())
	}
	if ok {
		if l, _ := o.sim.deviceLife(id); l == lifeGone {
			ok = false
		}
	}
	if !ok {
		msg := fmt.Sprintf("lkfleet sim SOS: no device %q in this simulator; the user name must be a device id\n", meta.User())
		return nil, &ssh.BannerError{Err: errors.New("unknown device"), Message: msg}
	}
	want := key.Marshal()
	for _, line := range o.sim.ProjectSSHKeys(project) {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err == nil && bytes.Equal(k.Marshal(), want) {
			return &ssh.Permissions{Extensions: map[string]string{"device": id.String()}}, nil
		}
	}
	msg := fmt.Sprintf("lkfleet sim SOS: key %s is not one of project %s's SSH keys\n", ssh.FingerprintSHA256(key), project)
	return nil, &ssh.BannerError{Err: errors.New("key not in project"), Message: msg}
}

func (o *SOS) serveConn(c net.Conn) {
	// A client gets a bounded time to authenticate.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(c, o.config)
	if err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	id, _ := parseUUID(sc.Permissions.Extensions["device"])
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "the serial console offers sessions only")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.session(id, ch, creqs)
		}()
	}
}

// session serves one session channel: a shell request attaches it to the
// console; commands and subsystems are refused (a serial line runs none).
func (o *SOS) session(id uuid, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var (
		r    *ConsoleReader
		done chan struct{}
	)
	for req := range reqs {
		switch req.Type {
		case "shell":
			if r != nil {
				req.Reply(false, nil)
				continue
			}
			c := o.sim.consoles.get(id)
			r = c.Attach()
			done = make(chan struct{})
			req.Reply(true, nil)
			go func() {
				defer close(done)
				o.attach(id, c, r, ch)
			}()
		case "pty-req", "env", "window-change", "signal", "break":
			// Accepted and ignored: the guest's own tty does the line
			// discipline, as on a real serial console.
			if req.WantReply {
				req.Reply(true, nil)
			}
		case "exec", "subsystem":
			fmt.Fprintf(ch.Stderr(), "lkfleet sim SOS: this is a serial console; %s requests are not supported\r\n", req.Type)
			req.Reply(false, nil)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the channel (or the connection went away).
	if r != nil {
		r.Close()
		<-done
	}
}

// attach copies the console to the channel and the channel's data to the
// console's input until the device goes away or the reader is closed.
func (o *SOS) attach(id uuid, c *Console, r *ConsoleReader, ch ssh.Channel) {
	fmt.Fprintf(ch.Stderr(), "[lkfleet sim SOS: serial console of device %s; replaying from boot start, then live]\r\n", id)
	go io.Copy(consoleInput{c}, ch) // client EOF only stops input
	ctx, cancel := context.WithCancel(o.ctx)
	defer cancel()
	why := make(chan string, 1)
	go func() {
		reason := o.sim.waitSessionEnd(ctx, id)
		if reason == "" && o.ctx.Err() != nil {
			reason = "the simulator is stopping"
		}
		if reason != "" {
			r.Hangup()
		}
		why <- reason
	}()
	_, err := io.Copy(ch, r)
	cancel()
	reason := <-why
	if err != nil || reason == "" {
		return // the client went away first
	}
	fmt.Fprintf(ch.Stderr(), "\r\n[lkfleet sim SOS: %s; the console session ends]\r\n", reason)
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
	ch.Close()
}

// consoleInput writes a session's keystrokes to the console's input.
type consoleInput struct{ c *Console }

func (w consoleInput) Write(p []byte) (int, error) { return w.c.Input(p) }
