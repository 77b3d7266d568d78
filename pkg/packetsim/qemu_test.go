package packetsim_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func TestGuestScript(t *testing.T) {
	cases := []struct{ name, in, args, want string }{
		{
			"loopback hosts go through the gateway, args on the kernel line",
			"#!ipxe\ndhcp\nset base-url http://127.0.0.1:8080/images\nkernel ${base-url}/k ro console=ttyS1\ninitrd http://localhost/i\nboot\n",
			"extra=http://169.254.169.2:9/x",
			"#!ipxe\ndhcp\nset base-url http://169.254.169.2:8080/images\nkernel ${base-url}/k ro console=ttyS1 extra=http://169.254.169.2:9/x\ninitrd http://169.254.169.2/i\nboot\n",
		},
		{
			"args go before an || tail, other hosts stay",
			"#!ipxe\nkernel http://[::1]:1/k a || goto fail\ninitrd http://127.0.0.10/i\n",
			"x=1",
			"#!ipxe\nkernel http://169.254.169.2:1/k a x=1 || goto fail\ninitrd http://127.0.0.10/i\n",
		},
		{
			"a chain to a kernel takes the args when there is no kernel line",
			"#!ipxe\nchain http://127.0.0.1/k a\n",
			"x=1",
			"#!ipxe\nchain http://169.254.169.2/k a x=1\n",
		},
		{"no args", "#!ipxe\nkernel https://LOCALHOST/k\n", "", "#!ipxe\nkernel https://169.254.169.2/k\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := packetsim.GuestScript(tc.in, tc.args); got != tc.want {
				t.Fatalf("GuestScript:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestConsoleLines(t *testing.T) {
	in := "\x1bc\x1b[?7lSeaBIOS\r\nPress Ctrl-B...\b \b\b \bnet0: up\r\n\r\n  \nKernel panic\n"
	want := []string{"SeaBIOS", "Press Ctrl-B.net0: up", "Kernel panic"}
	if got := packetsim.ConsoleLines([]byte(in)); !slices.Equal(got, want) {
		t.Fatalf("ConsoleLines = %q, want %q", got, want)
	}
	b := &packetsim.QEMUBoot{Serial: [2][]byte{nil, []byte("a\nb\nc\n")}}
	if got, want := b.Tail(2), "--- ttyS1 (last 2 lines) ---\nb\nc"; got != want {
		t.Fatalf("Tail = %q, want %q", got, want)
	}
}

// fakeBooter records requests and answers from a table keyed by hostname.
type fakeBooter struct {
	mu   sync.Mutex
	reqs []packetsim.BootRequest
}

func (f *fakeBooter) Boot(_ context.Context, req packetsim.BootRequest) (string, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if strings.HasPrefix(req.Hostname, "bad") {
		return "", errors.New("guest never called back")
	}
	return "guest said hello", nil
}

func TestBooterDecidesUserState(t *testing.T) {
	fb := &fakeBooter{}
	srv := startSim(t, packetsim.Config{ProvisionTime: 5 * time.Millisecond, Booter: fb})
	imgs := srv.URL + "/images"
	// One device at a time: concurrent boots may leave a dialled, unused
	// connection that holds the server's shutdown for 5 s.
	good := createRaw(t, srv, createBody(`"hostname":"good","userdata":`+jsonString(goodScript(srv))))
	b, st, body := bootOf(t, srv, good.ID)
	if !b.OK || st != "succeeded" || body != "guest said hello" {
		t.Fatalf("good: boot %+v, user state %q %q", b, st, body)
	}
	bad := createRaw(t, srv, createBody(`"hostname":"bad","ipxe_script_url":"`+imgs+`/good.ipxe"`))
	b, st, body = bootOf(t, srv, bad.ID)
	if b.OK || st != "failed" || body != "guest never called back" {
		t.Fatalf("bad: boot %+v, user state %q %q", b, st, body)
	}
	broken := createRaw(t, srv, createBody(`"hostname":"broken","userdata":`+jsonString("#!ipxe\nkernel "+imgs+"/nope\nboot\n")))
	if b, _, _ = bootOf(t, srv, broken.ID); b.OK || !strings.Contains(b.Error, "HEAD") {
		t.Fatalf("broken: boot %+v, want the interpreter's failure", b)
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if len(fb.reqs) != 2 {
		t.Fatalf("booter got %d requests, want 2 (a script that fails interpretation is not booted): %+v", len(fb.reqs), fb.reqs)
	}
	for _, r := range fb.reqs {
		// The script URL is fetched by the sim and handed over as text.
		if r.Script != goodScript(srv) || r.Arch != "x86_64" || r.KernelURL != imgs+"/good-kernel" {
			t.Fatalf("booter request %+v", r)
		}
	}
}
