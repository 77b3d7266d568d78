package packet

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
)

// bigBody is the size from which a route's answers are remembered
// (bodySizes) and their buffers recycled (bodyPool): listing pages, not
// single devices.
const bigBody = 64 << 10

// bodySizes remembers the size of the last large answer of each route
// (method and path), so the next answer of that route is read into one
// buffer of about that size. io.ReadAll grows its buffer step by step:
// for a 2.8 MB listing page it allocated 6.6 MB, and a plan over 100,000
// devices read 660 MB to keep 280 MB, a third of the plan's allocations.
// Only routes that answered more than bigBody are kept, so the map holds
// the listing routes, not one entry per device.
type bodySizes struct{ m sync.Map }

// bodyPool recycles the buffers of large answers: a pooledBody gives its
// buffer back when it is closed (packngo closes every body once it has
// copied or decoded it), so waiting, which lists the fleet page after
// page for minutes, does not allocate (and zero) a fresh megabyte buffer
// per page.
var bodyPool keptBuffers

// keptBuffers holds the few large buffers that listings reuse, across
// garbage collections. A sync.Pool empties itself over two collections,
// and waiting's listings, a second or more apart, came after several: in
// 1,000 creates every page was read into a fresh buffer, a quarter of the
// apply's allocations. At most keptMax buffers are kept (the largest), so
// what stays is a few pages' worth, whatever the fleet's size.
type keptBuffers struct {
	mu   sync.Mutex
	bufs [][]byte
}

const keptMax = 4

// get returns an empty buffer of capacity at least n: the largest kept
// one if it is large enough, else a new one a quarter larger than n,
// since a fleet's pages grow while it is created.
func (k *keptBuffers) get(n int) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	best := -1
	for i, b := range k.bufs {
		if cap(b) >= n && (best < 0 || cap(b) > cap(k.bufs[best])) {
			best = i
		}
	}
	if best < 0 {
		return make([]byte, 0, n+n/4)
	}
	b := k.bufs[best]
	k.bufs = slices.Delete(k.bufs, best, best+1)
	return b[:0]
}

// put keeps b for a later get, in place of the smallest kept buffer when
// keptMax are kept already and b is larger.
func (k *keptBuffers) put(b []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.bufs) < keptMax {
		k.bufs = append(k.bufs, b[:0])
		return
	}
	small := 0
	for i := range k.bufs {
		if cap(k.bufs[i]) < cap(k.bufs[small]) {
			small = i
		}
	}
	if cap(b) > cap(k.bufs[small]) {
		k.bufs[small] = b[:0]
	}
}

// read reads resp's body, at most MaxResponseBody+1 bytes, into a buffer
// sized from its Content-Length or the route's last large answer, and
// returns it with the body to hand on: a reader over it that recycles a
// large buffer when closed.
func (s *bodySizes) read(req *http.Request, resp *http.Response) ([]byte, io.ReadCloser, error) {
	key := req.Method + " " + req.URL.Path
	n := resp.ContentLength
	if v, ok := s.m.Load(key); ok && n <= 0 {
		last := v.(int)
		n = int64(last + last/16)
	}
	n = min(max(n, 0), MaxResponseBody+1) + bytes.MinRead
	var buf []byte
	if n > bigBody {
		buf = bodyPool.get(int(n))
	} else {
		buf = make([]byte, 0, n)
	}
	data, err := readInto(buf, resp.Body, MaxResponseBody+1)
	if len(data) <= bigBody {
		return data, io.NopCloser(bytes.NewReader(data)), err
	}
	s.m.Store(key, len(data))
	return data, &pooledBody{r: bytes.NewReader(data), buf: data}, err
}

// readInto appends what r yields, at most limit bytes, to buf. Unlike
// bytes.Buffer it grows by one allocation a step (bytes.Buffer allocates
// twice under the race detector) and never past the limit: reading an
// endless answer costs about twice the limit (TestHugeResponseIsRefused).
func readInto(buf []byte, r io.Reader, limit int64) ([]byte, error) {
	r = io.LimitReader(r, limit)
	for {
		if len(buf) == cap(buf) {
			c := max(2*cap(buf), bytes.MinRead)
			if int64(c) > limit {
				c = max(int(limit), len(buf)+bytes.MinRead)
			}
			grown := make([]byte, len(buf), c)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// pooledBody is a large answer's body: Close gives its buffer to
// bodyPool, after which it reads nothing.
type pooledBody struct {
	mu  sync.Mutex
	r   *bytes.Reader
	buf []byte
}

func (b *pooledBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r == nil {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.r.Read(p)
}

// WriteTo keeps io.Copy to one write of the whole answer.
func (b *pooledBody) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r == nil {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.r.WriteTo(w)
}

func (b *pooledBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r != nil {
		b.r = nil
		bodyPool.put(b.buf)
		b.buf = nil
	}
	return nil
}
