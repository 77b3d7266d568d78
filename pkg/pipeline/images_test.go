package pipeline

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// storeFleet has one image published with lkfleet push (a mirror in ny)
// and one served from base_url.
const storeFleet = `apiVersion: lkfleet/v1
fleet: lab
project: 3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60
images:
  sshd:
    store:
      endpoint: http://s3.invalid
      bucket: images
      path_style: true
    mirrors:
      ny:
        bucket: images-ny
    cmdline: console=ttyS1
  plain:
    base_url: http://img.invalid/v1
    cmdline: console=ttyS0
groups:
  - name: web
    image: sshd
    zones: [am, ny]
  - name: db
    image: plain
    zones: [am]
`

// fakeImages resolves every store image to release "r1" on the location
// of the device's zone, as imagestore does, and records what it was given.
type fakeImages struct {
	mu        sync.Mutex
	calls     []string
	preflight []spec.Device // what Preflight was given
	err       error         // Preflight's answer
}

func (f *fakeImages) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeImages) Resolve(_ context.Context, desired []spec.Device) ([]spec.Device, error) {
	f.record("resolve")
	out := slices.Clone(desired)
	for i, d := range out {
		if st := d.Image.Store; st != nil {
			out[i].Image.BaseURL = st.For(d.Zone).PublicURL + "/r1"
		}
	}
	return out, nil
}

func (f *fakeImages) Preflight(_ context.Context, desired []spec.Device) error {
	f.record("preflight")
	f.preflight = desired
	return f.err
}

func (f *fakeImages) Warnings(desired []spec.Device, metroOf map[string]string) []string {
	f.record("warnings")
	return []string{"mirror note"}
}

// memHTTP answers every request in memory, recording it: 200 to a HEAD,
// 404 otherwise (nothing should be fetched, the cmdlines are given).
type memHTTP struct {
	mu   sync.Mutex
	reqs []string
}

func (m *memHTTP) RoundTrip(r *http.Request) (*http.Response, error) {
	m.mu.Lock()
	m.reqs = append(m.reqs, r.Method+" "+r.URL.String())
	m.mu.Unlock()
	code := http.StatusOK
	if r.Method != http.MethodHead {
		code = http.StatusNotFound
	}
	return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

func loadStore(t *testing.T) *spec.Fleet {
	t.Helper()
	f, err := spec.Load("lab.yml", []byte(storeFleet), spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPlanResolvesAndVerifiesStoreImagesThroughImages(t *testing.T) {
	f := loadStore(t)
	im, mem := &fakeImages{}, &memHTTP{}
	p, err := Plan(t.Context(), &fakeBackend{}, Request{Fleet: f, HTTP: &http.Client{Transport: mem}, Images: im})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"resolve", "preflight", "warnings"}; !slices.Equal(im.calls, want) {
		t.Errorf("image calls %q, want %q", im.calls, want)
	}
	if !slices.Contains(p.Warnings, "mirror note") {
		t.Errorf("warnings %q lack the image store's", p.Warnings)
	}
	// Scripts, revs and the artifact preflight see the resolved release on
	// the zone's location; the image without a store is left as it is.
	want := map[string]string{ // group/zone -> base URL
		"web/am": "http://s3.invalid/images/r1",
		"web/ny": "http://s3.invalid/images-ny/r1",
		"db/am":  "http://img.invalid/v1",
	}
	for _, c := range p.Changes {
		d := c.Desired
		base := want[d.Group+"/"+d.Zone]
		if d.Image.BaseURL != base || !strings.Contains(d.Script, "set base-url "+base+"\n") {
			t.Errorf("%s: base URL %q, script %q; want %s", d.Slot, d.Image.BaseURL, d.Script, base)
		}
	}
	if len(im.preflight) != 3 || im.preflight[0].Image.BaseURL == "" {
		t.Errorf("image preflight got %+v, want the 3 resolved devices", im.preflight)
	}
	if !slices.Contains(mem.reqs, "HEAD http://s3.invalid/images-ny/r1/sshd-kernel") {
		t.Errorf("artifact preflight requests %q lack the ny mirror's kernel", mem.reqs)
	}
}

func TestPlanFailsWhenTheImageStorePreflightFails(t *testing.T) {
	f := loadStore(t)
	boom := errors.New("verify images: 1 object(s) missing")
	im := &fakeImages{err: boom}
	b := &fakeBackend{}
	_, err := Plan(t.Context(), b, Request{Fleet: f, HTTP: &http.Client{Transport: &memHTTP{}}, Images: im})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "preflight: ") {
		t.Fatalf("err %v, want the image store's preflight error", err)
	}
	if slices.Contains(b.calls, "list") {
		t.Errorf("calls %q: the fleet was listed after a failed preflight", b.calls)
	}
	// --skip-preflight skips the image store's check too.
	im = &fakeImages{err: boom}
	if _, err := Plan(t.Context(), &fakeBackend{}, Request{Fleet: f, SkipPreflight: true, Images: im}); err != nil {
		t.Fatalf("skip-preflight: %v", err)
	}
	if want := []string{"resolve", "warnings"}; !slices.Equal(im.calls, want) {
		t.Errorf("skip-preflight image calls %q, want %q", im.calls, want)
	}
}

func TestStoreImagesNeedImages(t *testing.T) {
	f := loadStore(t)
	_, err := Desired(t.Context(), HTTPClient(), nil, f, nil)
	if err == nil || !strings.Contains(err.Error(), "image sshd is published with lkfleet push") {
		t.Fatalf("err %v, want the store image named", err)
	}
	// A fleet without store images needs none.
	if _, err := Desired(t.Context(), HTTPClient(), nil, load(t), nil); err != nil {
		t.Fatal(err)
	}
}
