package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lkfleet/lkfleet/internal/s3test"
	"github.com/lkfleet/lkfleet/pkg/imagestore"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// pushFleet boots web devices in two metros from a store with a mirror in
// ny. STORE is the S3 endpoint.
const pushFleet = `apiVersion: lkfleet/v1
fleet: e2e
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    store:
      endpoint: STORE
      bucket: images
      prefix: lab/sshd
      path_style: true
    mirrors:
      ny:
        bucket: images-ny
groups:
  - name: web
    image: sshd
    count: 1
    zones: [am, ny]
rollout:
  waves: [[am], [ny]]
`

func writeLinuxkitBuild(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"sshd-kernel":     strings.Repeat("kernel "+version+"\n", 20000),
		"sshd-initrd.img": strings.Repeat("initrd "+version+"\n", 5000),
		"sshd-cmdline":    "console=ttyS1 build=" + version,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var reRelease = regexp.MustCompile(`release ([0-9a-f]{16})`)

// TestPushPlanApplyMirrorsPrune is the image store end to end: a real S3
// server (versitygw) and the simulator, whose boots fetch from the store.
func TestPushPlanApplyMirrorsPrune(t *testing.T) {
	store := s3test.Start(t)
	store.CreateBucket(t, "images")
	store.CreateBucket(t, "images-ny")
	e := newE2E(t, packetsim.Config{})
	if err := os.WriteFile(e.fleet, []byte(strings.ReplaceAll(pushFleet, "STORE", store.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	defURL := store.PublicURL("images", "lab/sshd")
	nyURL := store.PublicURL("images-ny", "lab/sshd")

	// Before any push, a plan says there is nothing to boot yet.
	_, errs, code := e.run("plan", "-f", e.fleet)
	if code != 1 || !strings.Contains(errs, "nothing pushed to default store") {
		t.Fatalf("plan before push: exit %d, %s", code, errs)
	}

	// Push build 1 to the store and its mirror.
	b1 := writeLinuxkitBuild(t, "1")
	out := e.mustRun(0, "push", "-f", e.fleet, "--from", b1, "-o", "plain")
	m := reRelease.FindStringSubmatch(out)
	if m == nil || strings.Count(out, "manifest written, release published") != 2 || !strings.Contains(out, "Verified release") {
		t.Fatalf("first push:\n%s", out)
	}
	r1 := m[1]

	// Pushing it again uploads nothing anywhere.
	out = e.mustRun(0, "push", "-f", e.fleet, "--from", b1, "-o", "json")
	results := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("push -o json line %q: %v", line, err)
		}
		switch ev["event"] {
		case "start", "done", "published":
			t.Errorf("second push of the same build did %v: %s", ev["event"], line)
		case "result":
			results++
			if ev["bytes"].(float64) != 0 || ev["published"] != false {
				t.Errorf("second push result: %s", line)
			}
		}
	}
	if results != 2 {
		t.Fatalf("second push: %d results\n%s", results, out)
	}

	// Each device's script points at its metro's mirror (else the default).
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain", "--wait", "booted"}
	e.mustRun(0, apply...)
	kernels := map[string]string{}
	for _, b := range e.srv.Sim.Boots() {
		if !b.OK {
			t.Errorf("boot of %s failed: %s", b.Hostname, b.Error)
		}
		kernels[b.Hostname] = b.KernelURL
	}
	if kernels["web-am-1"] != defURL+"/"+r1+"/sshd-kernel" || kernels["web-ny-1"] != nyURL+"/"+r1+"/sshd-kernel" {
		t.Fatalf("kernels booted: %v", kernels)
	}

	// status shows the release each device runs.
	var rows []struct {
		Slot, Release string
	}
	if err := json.Unmarshal([]byte(e.mustRun(0, "status", "-f", e.fleet, "-o", "json")), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("status -o json: %v %+v", err, rows)
	}
	for _, r := range rows {
		if r.Release != r1 {
			t.Errorf("status: %s runs release %q, want %s", r.Slot, r.Release, r1)
		}
	}
	if out := e.mustRun(0, "status", "-f", e.fleet); strings.Count(out, "sshd release "+r1) != 2 {
		t.Errorf("status table lacks the release:\n%s", out)
	}

	// A second build: the plan shows the release change per device.
	b2 := writeLinuxkitBuild(t, "2")
	out = e.mustRun(0, "push", "-f", e.fleet, "--from", b2, "-o", "plain")
	r2 := reRelease.FindStringSubmatch(out)[1]
	if r2 == r1 {
		t.Fatal("two builds, one release")
	}
	out = e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "2 to rebuild") || !strings.Contains(out, r1) || !strings.Contains(out, r2) {
		t.Fatalf("plan after the second push:\n%s", out)
	}

	// Prune keeping 1 keeps r1 while devices run it.
	out = e.mustRun(0, "push", "-f", e.fleet, "--prune", "1", "--auto-approve", "-o", "plain")
	if !strings.Contains(out, "in use by a device") || !strings.Contains(out, "nothing to delete") {
		t.Fatalf("prune while r1 runs:\n%s", out)
	}

	e.mustRun(0, apply...)
	out, errs, code = e.run("push", "-f", e.fleet, "--prune", "1")
	if code != 1 || !strings.Contains(errs, "prune needs confirmation") {
		t.Fatalf("prune without a terminal or --auto-approve: exit %d, %s\n%s", code, errs, out)
	}
	out = e.mustRun(0, "push", "-f", e.fleet, "--prune", "1", "--auto-approve", "-o", "plain")
	if strings.Count(out, "deleted release "+r1) != 2 {
		t.Fatalf("prune after the rollout:\n%s", out)
	}
	if _, err := os.Stat(store.ObjectPath("images-ny", "lab/sshd/"+r1+"/sshd-kernel")); !os.IsNotExist(err) {
		t.Fatalf("pruned kernel still on the ny mirror: %v", err)
	}

	// A replaced object on one mirror fails the plan naming URL and mirror.
	k := "lab/sshd/" + r2 + "/sshd-initrd.img"
	if _, err := store.Client().PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String("images-ny"), Key: &k, Body: bytes.NewReader([]byte("half an initrd")),
	}); err != nil {
		t.Fatal(err)
	}
	_, errs, code = e.run("plan", "-f", e.fleet)
	if code != 1 || !strings.Contains(errs, nyURL+"/"+r2+"/sshd-initrd.img on mirror ny (s3://images-ny/lab/sshd): partial or stale") ||
		strings.Contains(errs, defURL+"/") {
		t.Fatalf("plan with a replaced object on the ny mirror: exit %d\n%s", code, errs)
	}

	// Pushing the build again repairs exactly that object.
	out = e.mustRun(0, "push", "-f", e.fleet, "--from", b2, "-o", "plain")
	if strings.Count(out, "uploading ") != 1 || !strings.Contains(out, "mirror ny (s3://images-ny/lab/sshd): uploading sshd-initrd.img") {
		t.Fatalf("repair push:\n%s", out)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")

	// A group in facility ewr1 does not use the mirror keyed by its metro
	// ny (mirrors match zones as written), and the plan says so.
	if err := os.WriteFile(e.fleet, []byte(strings.ReplaceAll(strings.ReplaceAll(pushFleet, "STORE", store.URL), "ny]", "ewr1]")), 0o644); err != nil {
		t.Fatal(err)
	}
	out = e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(out, `image sshd: devices in ewr1 boot from the default store (s3://images/lab/sshd), not from the mirror keyed by their metro "ny"`) {
		t.Fatalf("plan lacks the mirror warning:\n%s", out)
	}
}

// TestPushChild is the lkfleet process TestPushKilledMidwayThenRerun kills:
// it only runs when that test starts this test binary as a child.
func TestPushChild(t *testing.T) {
	args := os.Getenv("LKFLEET_PUSH_CHILD")
	if args == "" {
		t.Skip("runs only as the child of TestPushKilledMidwayThenRerun")
	}
	env := SystemEnv()
	env.OutTTY = false
	os.Exit(Run(context.Background(), strings.Split(args, "\n"), env))
}

// TestPushKilledMidwayThenRerun kills a real push process (SIGKILL, no
// chance to clean up) right after its first object is stored: no manifest
// and no latest pointer may exist, and a re-run publishes the complete
// release reusing what was uploaded.
func TestPushKilledMidwayThenRerun(t *testing.T) {
	store := s3test.Start(t)
	store.CreateBucket(t, "images")
	store.CreateBucket(t, "images-ny")
	e := newE2E(t, packetsim.Config{})
	if err := os.WriteFile(e.fleet, []byte(strings.ReplaceAll(pushFleet, "STORE", store.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A kernel that is stored quickly, then an initrd large enough that
	// the kill lands while it is on its way.
	dir := t.TempDir()
	big := make([]byte, 32<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for name, body := range map[string][]byte{"sshd-kernel": []byte("kernel\n"), "sshd-initrd.img": big, "sshd-cmdline": []byte("console=ttyS1")} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"push", "-f", e.fleet, "--from", dir, "-o", "plain"}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPushChild$")
	cmd.Env = append(os.Environ(), "LKFLEET_PUSH_CHILD="+strings.Join(args, "\n"))
	for k, v := range e.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "uploaded sshd-kernel") {
			_ = cmd.Process.Kill()
			killed = true
			break
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the push ended before its kernel was reported uploaded\n%s", stderr.String())
	}

	b, err := imagestore.ReadBuild(dir, "sshd")
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{"images", "images-ny"} {
		for _, name := range []string{b.Release + "/manifest.json", "latest"} {
			if _, err := os.Stat(store.ObjectPath(bucket, "lab/sshd/"+name)); !os.IsNotExist(err) {
				t.Fatalf("after the kill, %s/lab/sshd/%s exists (%v)", bucket, name, err)
			}
		}
	}
	_, errs, code := e.run("plan", "-f", e.fleet)
	if code != 1 || !strings.Contains(errs, "nothing pushed") {
		t.Fatalf("plan after a killed push: exit %d\n%s", code, errs)
	}

	out := e.mustRun(0, "push", "-f", e.fleet, "--from", dir, "-o", "plain", "--verify", "full")
	if !strings.Contains(out, "sshd-kernel already there") || strings.Count(out, "release published") != 2 {
		t.Fatalf("re-run after the kill:\n%s", out)
	}
	e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
}

// TestPushProgressBarsOnTerminal runs push with the terminal view: one bar
// per file and location, each ending complete.
func TestPushProgressBarsOnTerminal(t *testing.T) {
	store := s3test.Start(t)
	store.CreateBucket(t, "images")
	store.CreateBucket(t, "images-ny")
	dir := t.TempDir()
	fleet := filepath.Join(dir, "fleet.yml")
	if err := os.WriteFile(fleet, []byte(strings.ReplaceAll(pushFleet, "STORE", store.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	env := &Env{In: strings.NewReader(""), Out: &out, Err: &errb, OutTTY: true,
		Getenv: func(k string) string {
			return map[string]string{"PACKET_PROJECT_ID": "3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60"}[k]
		}}
	if code := Run(context.Background(), []string{"push", "-f", fleet, "--from", writeLinuxkitBuild(t, "tty")}, env); code != 0 {
		t.Fatalf("push on a terminal: exit %d\n%s", code, errb.String())
	}
	for _, loc := range []string{"default", "mirror ny"} {
		for _, f := range []string{"sshd-kernel", "sshd-initrd.img", "sshd-cmdline"} {
			if !regexp.MustCompile(regexp.QuoteMeta(loc) + `[^\n]*` + regexp.QuoteMeta(f) + `[^\n]*✓`).MatchString(out.String()) {
				t.Errorf("no completed bar for %s %s:\n%q", loc, f, out.String())
			}
		}
	}
}

// cancelOn cancels when the output so far contains a marker: Ctrl-C at a
// known point of a push, without timing.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.marker) {
		c.cancel()
	}
	return n, err
}

// TestPushInterruptedExits130 interrupts a push (Ctrl-C) after its first
// object: exit 130, a message saying how to finish, nothing published.
func TestPushInterruptedExits130(t *testing.T) {
	store := s3test.Start(t)
	store.CreateBucket(t, "images")
	store.CreateBucket(t, "images-ny")
	dir := t.TempDir()
	fleet := filepath.Join(dir, "fleet.yml")
	if err := os.WriteFile(fleet, []byte(strings.ReplaceAll(pushFleet, "STORE", store.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	build := t.TempDir()
	for name, body := range map[string][]byte{"sshd-kernel": []byte("k"), "sshd-initrd.img": make([]byte, 24<<20), "sshd-cmdline": []byte("c")} {
		if err := os.WriteFile(filepath.Join(build, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOn{marker: "uploaded sshd-kernel", cancel: cancel}
	var errb bytes.Buffer
	env := &Env{In: strings.NewReader(""), Out: out, Err: &errb,
		Getenv: func(k string) string {
			return map[string]string{"PACKET_PROJECT_ID": "3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60"}[k]
		}}
	code := Run(ctx, []string{"push", "-f", fleet, "--from", build, "-o", "plain"}, env)
	if code != ExitInterrupted || !strings.Contains(errb.String(), "interrupted") || !strings.Contains(errb.String(), "run the same push again") {
		t.Fatalf("interrupted push: exit %d\n%s", code, errb.String())
	}
	matches, _ := filepath.Glob(store.ObjectPath("images", "lab/sshd/*/manifest.json"))
	if len(matches) != 0 {
		t.Fatalf("an interrupted push published %v", matches)
	}
}
