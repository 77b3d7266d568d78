package packetsim

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUserStateWatch: the booter learns a guest's final user state from
// the POSTs the metadata handler accepted, and from nothing else.
func TestUserStateWatch(t *testing.T) {
	var seen []string
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // the body must reach the handler intact
		seen = append(seen, r.Method+" "+r.URL.Path+" "+string(b))
		if strings.Contains(string(b), "refuse") {
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	u := &userStateWatch{final: make(chan struct{}), log: func(string, ...any) {}}
	h := u.wrap(inner)
	post := func(body string) {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/events", strings.NewReader(body)))
	}
	final := func() bool {
		select {
		case <-u.final:
			return true
		default:
			return false
		}
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/metadata", nil))
	post(`{"state":"running","code":1000,"message":"init"}`)
	post(`{"state":"succeeded","code":1001,"message":"refuse me"}`)
	if final() {
		t.Fatal("running, or a post the handler refused, ended the boot")
	}
	post(`{"state":"failed","code":1002,"message":"check failed"}`)
	post(`{"state":"succeeded","code":1001,"message":"later"}`)
	if !final() || u.state != UserStateFailed || u.msg != "check failed" {
		t.Fatalf("final %v, state %q %q; want the first final state", final(), u.state, u.msg)
	}
	if len(seen) != 5 || seen[0] != "GET /metadata " || seen[2] != `POST /events {"state":"succeeded","code":1001,"message":"refuse me"}` {
		t.Fatalf("handler saw %q", seen)
	}
}

// TestRelay: the guestfwd relay carries one connection's bytes both ways,
// and every connection gets its own relay.
func TestRelay(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "metadata for "+r.URL.Path)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, path := range []string{"/metadata", "/userdata"} {
		guest, relayEnd := net.Pipe()
		done := make(chan int, 1)
		go func() { done <- relay(addr, relayEnd, relayEnd); relayEnd.Close() }()
		io.WriteString(guest, "GET "+path+" HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(guest), nil)
		if err != nil {
			t.Fatalf("%s through the relay: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "metadata for "+path {
			t.Fatalf("%s through the relay: %q", path, body)
		}
		guest.Close()
		if code := <-done; code != 0 {
			t.Fatalf("relay exit %d", code)
		}
	}
	if code := relay("127.0.0.1:1", strings.NewReader(""), io.Discard); code != 1 {
		t.Fatalf("relay to a closed port: exit %d, want 1", code)
	}
}
