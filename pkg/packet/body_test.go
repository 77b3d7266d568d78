package packet

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestBodySizesReadsAnySize: answers are read whole and intact whether
// they are smaller, the same size or larger than the route's last one
// (and into recycled buffers), with and without a Content-Length; only
// large answers are remembered, and a closed body reads nothing.
func TestBodySizesReadsAnySize(t *testing.T) {
	sizes := []int{100 << 10, 100 << 10, 300 << 10, 70 << 10, 10, 0, 200 << 10}
	i := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := strings.Repeat(string(rune('a'+i%26)), sizes[i])
		if i%2 == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	var s bodySizes
	for i = range sizes {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metal/v1/projects/p/devices?page=1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, rc, err := s.read(req, resp)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Repeat([]byte{byte('a' + i%26)}, sizes[i])
		if !bytes.Equal(got, want) {
			t.Fatalf("answer %d: read %d bytes, want %d identical ones", i, len(got), len(want))
		}
		handed, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(handed, want) {
			t.Fatalf("answer %d: the body handed on reads %d bytes (%v), want %d identical ones", i, len(handed), err, len(want))
		}
		rc.Close()
		// A recycled buffer is not readable through the closed body.
		if n, err := rc.Read(make([]byte, 1)); sizes[i] > bigBody && (n != 0 || err == nil) {
			t.Fatalf("answer %d: read %d bytes after Close (%v)", i, n, err)
		}
	}
	n := 0
	s.m.Range(func(k, v any) bool { n++; return true })
	if n != 1 {
		t.Errorf("remembered %d routes, want 1 (the listing route, by path without query)", n)
	}
}

// TestKeptBuffersSurviveCollections: a listing's buffer is reused by the
// next listing even when garbage collections came in between (a
// sync.Pool would have dropped it), the largest buffer that fits is
// handed out, a buffer too small is not, and no more than keptMax are
// kept (the smallest gives way).
func TestKeptBuffersSurviveCollections(t *testing.T) {
	var k keptBuffers
	a := k.get(1 << 20)
	if cap(a) < 1<<20+1<<18 {
		t.Fatalf("new buffer for 1 MiB has capacity %d, want a quarter more", cap(a))
	}
	a = append(a, 'x')
	k.put(a)
	runtime.GC()
	runtime.GC()
	b := k.get(1 << 20)
	if len(b) != 0 || &b[:1][0] != &a[0] {
		t.Fatalf("after two collections get returned a new buffer (len %d), want the kept one, emptied", len(b))
	}
	k.put(b)
	if c := k.get(2 << 20); cap(c) < 2<<20 || &c[:1][0] == &a[0] {
		t.Fatalf("get(2 MiB) returned capacity %d or the 1.25 MiB buffer", cap(c))
	}
	for i := range keptMax + 2 {
		k.put(make([]byte, 0, (i+1)<<10))
	}
	if len(k.bufs) != keptMax {
		t.Fatalf("%d buffers kept, want %d", len(k.bufs), keptMax)
	}
	for _, kb := range k.bufs {
		if cap(kb) < 3<<10 {
			t.Errorf("kept a %d-byte buffer over larger ones", cap(kb))
		}
	}
	if got := k.get(0); cap(got) != 1<<20+1<<18 {
		t.Errorf("get(0) returned capacity %d, want the largest kept (%d)", cap(got), 1<<20+1<<18)
	}
}
