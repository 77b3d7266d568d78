package boottest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/internal/s3test"
)

// storeFleet boots one device whose kernel and initrd come from a release
// pushed to an S3-compatible store (STORE: its endpoint).
const storeFleet = `apiVersion: lkfleet/v1
fleet: bootstore
project: ${PACKET_PROJECT_ID}
images:
  boot:
    store:
      endpoint: STORE
      bucket: images
      prefix: boottest
      path_style: true
defaults:
  machine: c3.small.x86
  zone: ams1
groups:
  - name: store
    image: boot
    count: 1
    kernel_args: "lkfleet.slot={{.Slot}}"
`

// TestRealBootFromStore pushes the boot image to a real S3 server
// (versitygw) with lkfleet push and applies a one-device fleet against
// lkfleet sim --boot qemu: iPXE in QEMU fetches kernel and initrd from the
// object store, and the guest reports back.
func TestRealBootFromStore(t *testing.T) {
	p := findPrereqs(t)
	bin := lkfleetBin(t)
	work := t.TempDir()
	build := filepath.Join(work, "build")
	if err := os.MkdirAll(build, 0o755); err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile(p.kernel.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(build, "boot-kernel"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(build, "boot-cmdline"), []byte(imageCmdline), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BuildInitramfs(p.kernel, p.busybox, filepath.Join(build, "boot-initrd.img")); err != nil {
		t.Fatal(err)
	}
	store := s3test.Start(t)
	store.CreateBucket(t, "images")
	empty := filepath.Join(work, "images")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startSim(t, bin, empty, filepath.Join(work, "sim-boots"))
	fleet := filepath.Join(work, "store.yml")
	writeFleet(t, fleet, strings.ReplaceAll(storeFleet, "STORE", store.URL))

	out, err := s.lkfleet(t, bin, "push", "-f", fleet, "--from", build, "-o", "plain")
	if err != nil || !strings.Contains(out, "release published") {
		t.Fatalf("lkfleet push: %v\n%s", err, out)
	}
	out, err = s.lkfleet(t, bin, "render", "-f", fleet, "--device", "store-ams1-1")
	if err != nil || !strings.Contains(out, store.PublicURL("images", "boottest")+"/") {
		t.Fatalf("the rendered script does not boot from the store: %v\n%s", err, out)
	}
	out, err = s.lkfleet(t, bin, "apply", "-f", fleet, "--auto-approve", "--wait", "booted", "--timeout", "6m", "-o", "plain", "--poll-interval", "1s")
	if err != nil {
		t.Fatalf("lkfleet apply --wait booted: %v\n%s", err, out)
	}
	st := s.devices(t)["store-ams1-1"].states // newest first
	if len(st) == 0 || st[0][0] != "succeeded" || !strings.Contains(st[0][1], "lkfleet.slot=store/ams1/1") {
		t.Fatalf("store-ams1-1: user states %q, want the newest succeeded with the guest's report", st)
	}
}
