package imagestore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lkfleet/lkfleet/internal/s3test"
	"github.com/lkfleet/lkfleet/pkg/imagestore"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

const partSize = 5 << 20 // the S3 minimum; the kernel below is multipart

// writeBuild writes a fake linuxkit build: a kernel over one part size (so
// it goes multipart), an initrd and a cmdline.
func writeBuild(t *testing.T, name, cmdline string, kernelSize int) string {
	t.Helper()
	dir := t.TempDir()
	kernel := make([]byte, kernelSize)
	_, _ = rand.Read(kernel)
	initrd := make([]byte, 300<<10)
	_, _ = rand.Read(initrd)
	for f, data := range map[string][]byte{"-kernel": kernel, "-initrd.img": initrd, "-cmdline": []byte(cmdline)} {
		if err := os.WriteFile(filepath.Join(dir, name+f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loc(srv *s3test.Server, zone, bucket, prefix string) spec.StoreLocation {
	return spec.StoreLocation{Zone: zone, Endpoint: srv.URL, Region: s3test.Region, Bucket: bucket,
		Prefix: prefix, PathStyle: true, PublicURL: srv.PublicURL(bucket, prefix)}
}

func open(t *testing.T, locs ...spec.StoreLocation) []*imagestore.Store {
	t.Helper()
	var out []*imagestore.Store
	for _, l := range locs {
		s, err := imagestore.Open(context.Background(), l, imagestore.Options{PartSize: partSize})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

type recorder struct {
	mu     sync.Mutex
	events []imagestore.Event
}

func (r *recorder) add(e imagestore.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds(k imagestore.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func TestPushTwoMirrorsIdempotentVerifyPrune(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "images")
	srv.CreateBucket(t, "images-ny")
	locs := []spec.StoreLocation{loc(srv, "", "images", "lab/sshd"), loc(srv, "ny", "images-ny", "sshd")}
	stores := open(t, locs...)
	ctx := context.Background()
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }

	b1, err := imagestore.ReadBuild(writeBuild(t, "sshd", "console=ttyS1", partSize+1<<20), "sshd")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	res, err := imagestore.Push(ctx, b1, stores, imagestore.PushOptions{Progress: rec.add, Now: now, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if len(r.Uploaded) != 3 || !r.Published || !r.LatestMoved {
			t.Fatalf("first push to %s: %+v", r.Location, r)
		}
	}
	if rec.kinds(imagestore.FileProgress) == 0 {
		t.Error("no progress events")
	}

	// Both mirrors verify fully over the public URL, as a device sees them.
	c := imagestore.NewChecker(http.DefaultClient, imagestore.Full)
	var targets []imagestore.Target
	for _, l := range locs {
		targets = append(targets, imagestore.ReleaseTargets(l, b1.Release, "sshd")...)
	}
	if err := c.Verify(ctx, targets); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Latest(ctx, locs[1]); err != nil || got != b1.Release {
		t.Fatalf("latest on ny = %q, %v; want %s", got, err, b1.Release)
	}

	// The same build again uploads and writes nothing: the files on disk
	// keep their modification times.
	kernelPath := srv.ObjectPath("images", "lab/sshd/"+b1.Release+"/sshd-kernel")
	st1, _ := os.Stat(kernelPath)
	manPath := srv.ObjectPath("images", "lab/sshd/"+b1.Release+"/manifest.json")
	man1, _ := os.Stat(manPath)
	clock = clock.Add(time.Hour)
	rec2 := &recorder{}
	res, err = imagestore.Push(ctx, b1, stores, imagestore.PushOptions{Progress: rec2.add, Now: now, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if len(r.Uploaded) != 0 || r.Bytes != 0 || r.Published || r.LatestMoved || len(r.Skipped) != 3 {
			t.Fatalf("second push to %s did something: %+v", r.Location, r)
		}
	}
	if rec2.kinds(imagestore.FileStart) != 0 || rec2.kinds(imagestore.UpToDate) != 2 {
		t.Fatalf("second push events: %+v", rec2.events)
	}
	st2, _ := os.Stat(kernelPath)
	man2, _ := os.Stat(manPath)
	if !st1.ModTime().Equal(st2.ModTime()) || !man1.ModTime().Equal(man2.ModTime()) {
		t.Error("second push rewrote objects")
	}

	// A second build, then prune keeping 1: the first release survives
	// while a device runs it, and goes once none does.
	b2, err := imagestore.ReadBuild(writeBuild(t, "sshd", "console=ttyS1 v2", 1<<20), "sshd")
	if err != nil {
		t.Fatal(err)
	}
	if b2.Release == b1.Release {
		t.Fatal("two builds, one release id")
	}
	clock = clock.Add(time.Hour)
	if _, err := imagestore.Push(ctx, b2, stores, imagestore.PushOptions{Now: now, SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	script := "#!ipxe\nset base-url " + locs[1].PublicURL + "/" + b1.Release + "\nkernel ${base-url}/sshd-kernel console=ttyS1\n"
	st := &spec.ImageStore{Default: locs[0], Mirrors: locs[1:]}
	inUse, unknown := imagestore.InUse([]string{script, "#!ipxe\nchain http://elsewhere/x"}, st)
	if unknown != 1 || !slices.Equal(inUse, []string{b1.Release}) {
		t.Fatalf("InUse = %v, %d", inUse, unknown)
	}
	for _, s := range stores {
		rels, err := s.Releases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rels) != 2 || rels[0].ID != b2.Release {
			t.Fatalf("releases on %s: %+v", s.Loc.Bucket, rels)
		}
		plan := imagestore.PlanPrune(rels, 1, map[string]bool{b1.Release: true}, b2.Release, clock)
		for _, d := range plan {
			if d.Delete {
				t.Fatalf("prune would delete %s in use: %s", d.Release.ID, d.Reason)
			}
		}
		plan = imagestore.PlanPrune(rels, 1, nil, b2.Release, clock)
		if !plan[1].Delete || plan[1].Release.ID != b1.Release || plan[0].Delete {
			t.Fatalf("prune plan without users: %+v", plan)
		}
		if err := s.DeleteRelease(ctx, plan[1].Release); err != nil {
			t.Fatal(err)
		}
		rels, err = s.Releases(ctx)
		if err != nil || len(rels) != 1 || rels[0].ID != b2.Release {
			t.Fatalf("after prune on %s: %+v, %v", s.Loc.Bucket, rels, err)
		}
	}
	c = imagestore.NewChecker(http.DefaultClient, imagestore.Quick)
	if err := c.Verify(ctx, imagestore.ReleaseTargets(locs[0], b1.Release, "sshd")); !imagestore.IsVerifyError(err) {
		t.Fatalf("pruned release still verifies: %v", err)
	}
}

func TestVerifyNamesCorruptedObject(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "images")
	srv.CreateBucket(t, "images-ny")
	locs := []spec.StoreLocation{loc(srv, "", "images", "sshd"), loc(srv, "ny", "images-ny", "sshd")}
	stores := open(t, locs...)
	ctx := context.Background()
	b, err := imagestore.ReadBuild(writeBuild(t, "sshd", "console=ttyS1", 1<<20), "sshd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imagestore.Push(ctx, b, stores, imagestore.PushOptions{SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	all := append(imagestore.ReleaseTargets(locs[0], b.Release, "sshd"), imagestore.ReleaseTargets(locs[1], b.Release, "sshd")...)

	// Another writer replaces the ny initrd through the S3 API (same size):
	// the ETag gives it away to a quick check.
	initrdKey := "sshd/" + b.Release + "/sshd-initrd.img"
	junk := bytes.Repeat([]byte{'x'}, 300<<10)
	if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("images-ny"), Key: &initrdKey, Body: bytes.NewReader(junk)}); err != nil {
		t.Fatal(err)
	}
	err = imagestore.NewChecker(http.DefaultClient, imagestore.Quick).Verify(ctx, all)
	var ve *imagestore.VerifyError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 {
		t.Fatalf("quick verify after replacement: %v", err)
	}
	p := ve.Problems[0]
	if p.URL != locs[1].PublicURL+"/"+b.Release+"/sshd-initrd.img" || !strings.Contains(p.Location, "mirror ny") || !strings.Contains(p.Msg, "ETag") {
		t.Fatalf("problem = %+v", p)
	}

	// Bytes rotting on the default store's disk keep size and ETag: only a
	// full read sees them, and names the object.
	kpath := srv.ObjectPath("images", "sshd/"+b.Release+"/sshd-kernel")
	data, err := os.ReadFile(kpath)
	if err != nil {
		t.Fatal(err)
	}
	data[100] ^= 0xff
	if err := os.WriteFile(kpath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	def := imagestore.ReleaseTargets(locs[0], b.Release, "sshd")
	if err := imagestore.NewChecker(http.DefaultClient, imagestore.Quick).Verify(ctx, def); err != nil {
		t.Fatalf("quick verify should not see bit rot (it is documented not to): %v", err)
	}
	err = imagestore.NewChecker(http.DefaultClient, imagestore.Full).Verify(ctx, def)
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || !strings.HasSuffix(ve.Problems[0].URL, "/sshd-kernel") || !strings.Contains(ve.Problems[0].Msg, "SHA-256") {
		t.Fatalf("full verify after bit rot: %v", err)
	}

	// A truncated object (a partial write) fails on size.
	if err := os.WriteFile(kpath, data[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	err = imagestore.NewChecker(http.DefaultClient, imagestore.Quick).Verify(ctx, def)
	if !errors.As(err, &ve) || !strings.Contains(ve.Problems[0].Msg, "partial") {
		t.Fatalf("quick verify after truncation: %v", err)
	}

	// Pushing again repairs what is broken and nothing else.
	res, err := imagestore.Push(ctx, b, stores, imagestore.PushOptions{SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res[0].Uploaded, []string{"sshd-kernel"}) || !slices.Equal(res[1].Uploaded, []string{"sshd-initrd.img"}) {
		t.Fatalf("repair push uploaded %v and %v", res[0].Uploaded, res[1].Uploaded)
	}
	if err := imagestore.NewChecker(http.DefaultClient, imagestore.Full).Verify(ctx, all); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptedPushPublishesNothingThenCompletes(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "images")
	l := loc(srv, "", "images", "sshd")
	stores := open(t, l)
	b, err := imagestore.ReadBuild(writeBuild(t, "sshd", "console=ttyS1", partSize+1<<20), "sshd")
	if err != nil {
		t.Fatal(err)
	}
	// Stop the push as soon as the kernel is on the store.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = imagestore.Push(ctx, b, stores, imagestore.PushOptions{SetLatest: true, Progress: func(e imagestore.Event) {
		if e.Kind == imagestore.FileDone && e.File == "sshd-kernel" {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted push: %v", err)
	}
	c := imagestore.NewChecker(http.DefaultClient, imagestore.Quick)
	if _, err := c.Manifest(context.Background(), l, b.Release); err == nil {
		t.Fatal("an interrupted push published a manifest")
	}
	if _, err := c.Latest(context.Background(), l); err == nil {
		t.Fatal("an interrupted push moved latest")
	}
	rels, err := stores[0].Releases(context.Background())
	if err != nil || len(rels) != 1 || rels[0].Complete {
		t.Fatalf("after interruption: %+v, %v", rels, err)
	}

	res, err := imagestore.Push(context.Background(), b, stores, imagestore.PushOptions{SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res[0].Skipped, "sshd-kernel") || !res[0].Published {
		t.Fatalf("re-run: %+v", res[0])
	}
	if err := imagestore.NewChecker(http.DefaultClient, imagestore.Full).Verify(context.Background(), imagestore.ReleaseTargets(l, b.Release, "sshd")); err != nil {
		t.Fatal(err)
	}
}

func TestPushErrors(t *testing.T) {
	if _, err := imagestore.ReadBuild(t.TempDir(), "sshd"); err == nil || !strings.Contains(err.Error(), "sshd-kernel is missing") || !strings.Contains(err.Error(), "sshd-initrd.img is missing") {
		t.Fatalf("missing artifacts: %v", err)
	}
	srv := s3test.Start(t)
	b, err := imagestore.ReadBuild(writeBuild(t, "sshd", "x", 1000), "sshd")
	if err != nil {
		t.Fatal(err)
	}
	stores := open(t, loc(srv, "", "nope", "sshd"))
	_, err = imagestore.Push(context.Background(), b, stores, imagestore.PushOptions{})
	if err == nil || !strings.Contains(err.Error(), `bucket "nope" does not exist`) {
		t.Fatalf("missing bucket: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, err := imagestore.Open(context.Background(), loc(srv, "", "images", ""), imagestore.Options{}); !errors.Is(err, imagestore.ErrNoCredentials) {
		t.Fatalf("no credentials: %v", err)
	}
}
