package lease

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// startEtcd runs a real etcd (the Debian package etcd-server) on two free
// 127.0.0.1 ports with its data in a temporary directory, and returns its
// client URL once it serves. The test skips when etcd is not installed.
func startEtcd(t *testing.T) EtcdURL {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not installed (apt-get install etcd-server): skipping the etcd lease tests")
	}
	client, peer := freePort(t), freePort(t)
	cURL, pURL := "http://127.0.0.1:"+client, "http://127.0.0.1:"+peer
	cmd := exec.Command(bin,
		"--name", "lkfleet-test",
		"--data-dir", t.TempDir(),
		"--listen-client-urls", cURL, "--advertise-client-urls", cURL,
		"--listen-peer-urls", pURL, "--initial-advertise-peer-urls", pURL,
		"--initial-cluster", "lkfleet-test="+pURL,
		"--log-level", "info", "--logger", "zap",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// etcd says when it serves; wait for that line, not for a time.
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if l := sc.Text(); !said && (strings.Contains(l, "serving client traffic") || strings.Contains(l, "ready to serve client requests")) {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("etcd exited before serving")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not start within 30s")
	}
	return EtcdURL{Endpoints: []string{cURL}, Prefix: "/lkfleet-test"}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func dial(t *testing.T, u EtcdURL) *clientv3.Client {
	t.Helper()
	cli, err := DialEtcd(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestEtcdLease(t *testing.T) {
	u := startEtcd(t)
	ctx := t.Context()
	ttl := 2 * time.Second // etcd's smallest useful TTL; the kill case waits it out

	a := NewEtcd(dial(t, u), u.Prefix, "web", ttl)
	if err := a.Acquire(ctx, who(1)); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	b := NewEtcd(dial(t, u), u.Prefix, "web", ttl)
	err := b.Acquire(ctx, who(2))
	var he *HeldError
	if !errors.As(err, &he) || he.Holder == nil || he.Holder.Holder != who(1).Holder {
		t.Fatalf("second acquire: %v, want HeldError naming host-1", err)
	}
	if h, err := b.Holder(ctx); err != nil || h == nil || h.Holder != who(1).Holder || h.Since.IsZero() {
		t.Fatalf("holder: %+v %v", h, err)
	}
	if err := NewEtcd(dial(t, u), u.Prefix, "db", ttl).Acquire(ctx, who(3)); err != nil {
		t.Errorf("other fleet: %v", err)
	}
	if err := a.Renew(ctx); err != nil {
		t.Errorf("renew: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	if h, err := b.Holder(ctx); err != nil || h != nil {
		t.Fatalf("holder after release: %+v %v", h, err)
	}
	if err := b.Acquire(ctx, who(2)); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}

	t.Run("killed holder expires", func(t *testing.T) {
		// b's process "dies": its client goes away without releasing.
		b.cli.Close()
		c := NewEtcd(dial(t, u), u.Prefix, "web", ttl)
		var lines []string
		start := time.Now()
		h, err := Hold(ctx, c, who(4), HoldOptions{Timeout: 20 * time.Second, Retry: 100 * time.Millisecond,
			OnWait: func(i *Info) { lines = append(lines, i.Holder) }})
		if err != nil {
			t.Fatalf("after the holder died: %v", err)
		}
		if len(lines) != 1 || lines[0] != who(2).Holder {
			t.Errorf("wait lines %q, want one naming %s", lines, who(2).Holder)
		}
		t.Logf("took over a killed holder's lease after %s", time.Since(start).Round(time.Millisecond))

		// unlock breaks a live holder: it sees the loss at its next renewal.
		broke, err := NewEtcd(dial(t, u), u.Prefix, "web", ttl).Break(ctx)
		if err != nil || broke == nil || broke.Holder != who(4).Holder {
			t.Fatalf("break: %+v %v", broke, err)
		}
		select {
		case <-h.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("holder did not notice the break")
		}
		if cause := context.Cause(h.Context()); !errors.Is(cause, ErrLost) {
			t.Errorf("cause %v, want ErrLost", cause)
		}
		h.Release()
		if err := NewEtcd(dial(t, u), u.Prefix, "web", ttl).Acquire(ctx, who(5)); err != nil {
			t.Errorf("acquire after break: %v", err)
		}
	})
}

func TestParseEtcdURL(t *testing.T) {
	for in, want := range map[string]string{
		"etcd://10.0.0.1:2379/team/lkfleet":        "http://10.0.0.1:2379 /team/lkfleet",
		"etcd://a:2379,b:2379":                     "http://a:2379,http://b:2379 /lkfleet",
		"etcd://a/x":                               `error: --lock "etcd://a/x": endpoint "a" needs HOST:PORT`,
		"http://a:2379/x":                          `error: --lock "http://a:2379/x": want etcd://HOST:PORT/PREFIX`,
		"etcd:///x":                                `error: --lock "etcd:///x": want etcd://HOST:PORT/PREFIX`,
		"etcd://[::1]:2379/p/":                     "http://[::1]:2379 /p",
		"etcd://127.0.0.1:2379,127.0.0.1:2380/a/b": "http://127.0.0.1:2379,http://127.0.0.1:2380 /a/b",
	} {
		u, err := ParseEtcdURL(in)
		got := strings.Join(u.Endpoints, ",") + " " + u.Prefix
		if err != nil {
			got = "error: " + err.Error()
		}
		if got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
}
