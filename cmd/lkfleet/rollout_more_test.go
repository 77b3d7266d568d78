package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// --wait booted waits for the image to report in: a good image succeeds;
// an image whose initrd is missing fails to boot, the device is deleted
// and created once more, fails again, and apply exits 1 naming the
// hostname, slot, id and last event. --wait active calls the same broken
// device ready, and the next plan rebuilds it.
func TestRolloutWaitBooted(t *testing.T) {
	t.Run("good image", func(t *testing.T) {
		r := newRollout(t)
		r.write(fleetYAML("v1", 1, [][]string{{"ams1"}}, ""))
		r.apply(0, "--wait", "booted")
		done := time.Now()
		devs := r.status()
		if len(devs) != 1 || devs[0].Booted != "succeeded" {
			t.Fatalf("status: %+v", devs)
		}
		b, ok := bootAfter(r.srv.Sim.Boots(), devs[0].ID, time.Time{})
		if !ok || !b.OK || !b.Time.Before(done) {
			t.Fatalf("apply --wait booted returned before the boot: %+v", b)
		}
	})
	t.Run("missing initrd", func(t *testing.T) {
		r := newRollout(t)
		r.image("broken", "sshd-initrd.img")
		r.write(fleetYAML("broken", 1, [][]string{{"ams1"}}, ""))
		mark := r.rec.mark()
		out := r.apply(1, "--wait", "booted", "--skip-preflight")
		calls := r.rec.since(mark)
		var created []string
		deleted := map[string]time.Time{}
		for _, c := range calls {
			if c.Slot != "" {
				created = append(created, c.DeviceID)
			}
			if c.Method == http.MethodDelete {
				deleted[c.DeviceID] = c.Start
			}
		}
		if len(created) != 2 {
			t.Fatalf("%d creates, want the device and one retry", len(created))
		}
		boots := r.srv.Sim.Boots()
		for _, id := range created {
			b, ok := bootAfter(boots, id, time.Time{})
			if !ok || b.OK || !strings.HasPrefix(b.Error, "initrd:") {
				t.Errorf("boot of %s: %+v", id, b)
			}
		}
		first, _ := bootAfter(boots, created[0], time.Time{})
		if at, ok := deleted[created[0]]; !ok || !at.After(first.Time) {
			t.Errorf("the first device was not deleted after its failed boot (deleted %v)", ok)
		}
		if _, ok := deleted[created[1]]; ok {
			t.Errorf("the retried device was deleted; it must stay for inspection")
		}
		for _, want := range []string{"web-ams1-1 (web/ams1/1) id " + created[1] + ": boot failed: initrd: HEAD "} {
			if !strings.Contains(out, want) {
				t.Errorf("apply output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("missing initrd with --wait active", func(t *testing.T) {
		r := newRollout(t)
		r.image("broken", "sshd-initrd.img")
		r.write(fleetYAML("broken", 1, [][]string{{"ams1"}}, ""))
		r.apply(0, "--skip-preflight") // active is not booted
		var booted []statusDevice
		for range 100 { // the boot runs as the device turns active
			if booted = r.status(); len(booted) == 1 && booted[0].Booted != "" {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(booted) != 1 || booted[0].Booted != "failed" {
			t.Fatalf("status: %+v", booted)
		}
		out := r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode", "--skip-preflight")
		if !strings.Contains(out, "last boot failed: initrd:") {
			t.Errorf("the next plan does not rebuild the device whose boot failed:\n%s", out)
		}
	})
}

// rebuild: recreate gives every slot a new device (new id, same hostname,
// a boot of the new image) and deletes each old device only after its
// replacement has booted.
func TestRolloutRecreate(t *testing.T) {
	r := newRollout(t)
	waves := [][]string{{"ams1"}, {"ewr1"}}
	extra := "  max_unavailable: 1\n  rebuild: recreate\n"
	r.write(fleetYAML("v1", 2, waves, extra))
	r.apply(0)
	before := r.status()
	host := map[string]string{}
	for _, d := range before {
		host[d.Slot] = d.Hostname
	}

	r.write(fleetYAML("v2", 2, waves, extra))
	out := r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "will be rebuilt (recreate: a new device first, then this one is destroyed)") {
		t.Fatalf("plan:\n%s", out)
	}
	mark := r.rec.mark()
	out = r.apply(0, "--wait", "booted")
	if !strings.Contains(out, "4 rebuilt") {
		t.Fatalf("apply:\n%s", out)
	}
	calls := r.rec.since(mark)
	newID := map[string]string{}
	deletedAt := map[string]time.Time{}
	for _, c := range calls {
		if c.Slot != "" {
			newID[c.Slot] = c.DeviceID
		}
		if c.Method == http.MethodDelete {
			deletedAt[c.DeviceID] = c.Start
		}
	}
	boots := r.srv.Sim.Boots()
	after := r.status()
	if len(after) != 4 {
		t.Fatalf("after recreate: %+v", after)
	}
	for _, d := range after {
		old := ids(before)[d.Slot]
		switch {
		case d.ID == old:
			t.Errorf("%s kept its id %s", d.Slot, old)
		case d.ID != newID[d.Slot]:
			t.Errorf("%s is device %s, not the one created (%s)", d.Slot, d.ID, newID[d.Slot])
		case d.Hostname != host[d.Slot]:
			t.Errorf("%s: hostname %q, want %q", d.Slot, d.Hostname, host[d.Slot])
		}
		b, ok := bootAfter(boots, d.ID, time.Time{})
		if !ok || !b.OK || !strings.Contains(b.KernelURL, "/v2/") {
			t.Errorf("%s: boot of the new device: %+v", d.Slot, b)
			continue
		}
		at, ok := deletedAt[old]
		if !ok || !at.After(b.Time) {
			t.Errorf("%s: old device %s deleted at %v, before its replacement booted at %v (deleted: %v)", d.Slot, old, at, b.Time, ok)
		}
	}
	if n := r.srv.Sim.Stats().Duplicates; n != 0 {
		t.Errorf("%d duplicate slots left", n)
	}
	r.mustRun(0, "plan", "-f", r.fleet, "--detailed-exitcode")
}

// --rebuild GROUP and --rebuild SLOT reboot exactly the devices named and
// keep their ids; --replace SLOT gives that slot a new device and deletes
// the old one once the new one is active; unknown targets are refused.
func TestRolloutRebuildAndReplaceTargets(t *testing.T) {
	r := newRollout(t)
	r.write(strings.Replace(fleetYAML("v1", 2, [][]string{{"ams1"}}, ""), "rollout:", `  - name: db
    image: sshd
    count: 1
    zone: ams1
rollout:`, 1))
	r.apply(0)
	before := ids(r.status())
	slotOf := map[string]string{}
	for slot, id := range before {
		slotOf[id] = slot
	}
	changedSlots := func(calls []apiCall) []string {
		var out []string
		for id := range touched(calls) {
			out = append(out, slotOf[id])
		}
		sort.Strings(out)
		return out
	}

	for _, tc := range []struct {
		target, summary string
		want            []string
	}{
		{"db", "0 added, 1 rebuilt", []string{"db/ams1/1"}},
		{"web/ams1/2", "0 added, 1 rebuilt", []string{"web/ams1/2"}},
	} {
		mark := r.rec.mark()
		out := r.apply(0, "--rebuild", tc.target)
		calls := r.rec.since(mark)
		if got := changedSlots(calls); fmt.Sprint(got) != fmt.Sprint(tc.want) || !strings.Contains(out, tc.summary) {
			t.Errorf("--rebuild %s changed %v, want %v:\n%s", tc.target, got, tc.want, out)
		}
		var reboots int
		for _, c := range calls {
			if c.Action == "reboot" {
				reboots++
			}
		}
		if reboots != 1 {
			t.Errorf("--rebuild %s: %d reboots, want 1", tc.target, reboots)
		}
	}
	if now := ids(r.status()); fmt.Sprint(now) != fmt.Sprint(before) {
		t.Errorf("--rebuild changed ids: %v -> %v", before, now)
	}

	mark := r.rec.mark()
	out := r.apply(0, "--replace", "web/ams1/1")
	if !strings.Contains(out, "1 added, 0 rebuilt, 0 changed, 1 destroyed") {
		t.Errorf("--replace summary:\n%s", out)
	}
	var created apiCall
	var deleted []string
	var deleteAt time.Time
	for _, c := range r.rec.since(mark) {
		if c.Slot != "" {
			created = c
		}
		if c.Method == http.MethodDelete {
			deleted, deleteAt = append(deleted, slotOf[c.DeviceID]), c.Start
		}
	}
	if created.Slot != "web/ams1/1" || fmt.Sprint(deleted) != "[web/ams1/1]" {
		t.Fatalf("--replace web/ams1/1 created %q and deleted %v", created.Slot, deleted)
	}
	if !deleteAt.After(created.Start.Add(rolloutProvision)) {
		t.Errorf("the old device was deleted before the new one could be active")
	}
	now := ids(r.status())
	for slot, id := range before {
		if (id == now[slot]) != (slot != "web/ams1/1") {
			t.Errorf("%s: id %s -> %s", slot, id, now[slot])
		}
	}
	if now["web/ams1/1"] != created.DeviceID {
		t.Errorf("web/ams1/1 is %s, not the created %s", now["web/ams1/1"], created.DeviceID)
	}

	for _, bad := range [][]string{{"--rebuild", "nosuch"}, {"--replace", "web/ams1/9"}} {
		_, errs, code := r.run(append([]string{"plan", "-f", r.fleet}, bad...)...)
		if code != 1 || !strings.Contains(errs, bad[1]) {
			t.Errorf("plan %v: exit %d, stderr %q", bad, code, errs)
		}
	}
}

// stubLkfleet writes an executable "lkfleet" into dir that appends its
// arguments (and BUILD_ID and the token) to dir/calls and exits with $STUB_PLAN_EXIT for
// plan, 0 otherwise.
func stubLkfleet(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lkfleet")
	stub := "#!/bin/sh\necho \"BUILD_ID=$BUILD_ID TOKEN=${PACKET_AUTH_TOKEN:-} $*\" >> '" + filepath.Join(dir, "calls") + "'\n" +
		"if [ \"$1\" = plan ]; then exit \"$STUB_PLAN_EXIT\"; fi\nexit 0\n"
	if err := os.WriteFile(bin, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// The nightly examples gate the apply on plan --detailed-exitcode: 0 does
// nothing and succeeds, 2 applies with --auto-approve --rebuild all
// --wait booted, anything else fails without applying.
func TestNightlyExamples(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cases := []struct {
		planExit, wantExit int
		applied            bool
	}{{0, 0, false}, {2, 0, true}, {1, 1, false}, {3, 1, false}}

	t.Run("cron", func(t *testing.T) {
		for _, tc := range cases {
			dir := t.TempDir()
			// The token comes from the env file the script sources.
			envFile := filepath.Join(dir, "lab.env")
			if err := os.WriteFile(envFile, []byte("PACKET_AUTH_TOKEN=t0k\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(sh, filepath.Join("..", "..", "examples", "cron", "nightly-lab.sh"))
			cmd.Env = []string{
				"PATH=" + os.Getenv("PATH"), "LKFLEET=" + stubLkfleet(t, dir), "LKFLEET_ENV=" + envFile,
				"LOCK_FILE=" + filepath.Join(dir, "lock"), "BUILD_ID=2026-11-25.3",
				"STUB_PLAN_EXIT=" + fmt.Sprint(tc.planExit),
			}
			out, _ := cmd.CombinedOutput()
			calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
			wantCalls := "BUILD_ID=2026-11-25.3 TOKEN=t0k plan -f fleets/nightly-lab.yml --detailed-exitcode\n"
			if tc.applied {
				wantCalls += "BUILD_ID=2026-11-25.3 TOKEN=t0k " + nightlyApply + " --timeout 60m -o plain\n"
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.wantExit || string(calls) != wantCalls {
				t.Errorf("plan exit %d: script exit %d (want %d), calls:\n%s(want:\n%s)output:\n%s",
					tc.planExit, code, tc.wantExit, calls, wantCalls, out)
			}
		}
	})

	t.Run("github actions", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", "github-actions", "nightly-lab.yml"))
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			Jobs map[string]struct {
				Env   map[string]string `yaml:"env"`
				Steps []struct {
					ID  string `yaml:"id"`
					If  string `yaml:"if"`
					Run string `yaml:"run"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal(data, &wf); err != nil {
			t.Fatalf("workflow is not YAML: %v", err)
		}
		job := wf.Jobs["rebuild"]
		if job.Env["PACKET_AUTH_TOKEN"] != "${{ secrets.PACKET_AUTH_TOKEN }}" {
			t.Errorf("the token does not come from a secret: %q", job.Env["PACKET_AUTH_TOKEN"])
		}
		var plan, apply string
		for _, s := range job.Steps {
			switch {
			case s.ID == "plan":
				plan = s.Run
			case strings.Contains(s.Run, "lkfleet apply"):
				apply = strings.Join(strings.Fields(s.Run), " ")
				if s.If != "steps.plan.outputs.changes == 'true'" {
					t.Errorf("apply runs if %q", s.If)
				}
			}
		}
		if !strings.Contains(apply, `lkfleet apply -f "$FLEET_FILE" --auto-approve --rebuild all --wait booted`) {
			t.Errorf("apply step: %q", apply)
		}
		// Run the plan step's script with the stub as lkfleet.
		for _, tc := range cases {
			dir := t.TempDir()
			stubLkfleet(t, dir)
			output := filepath.Join(dir, "output")
			cmd := exec.Command(sh, "-e", "-c", plan)
			cmd.Env = []string{
				"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH"),
				"FLEET_FILE=fleets/nightly-lab.yml", "BUILD_ID=b7", "GITHUB_OUTPUT=" + output,
				"GITHUB_STEP_SUMMARY=" + filepath.Join(dir, "summary"), "STUB_PLAN_EXIT=" + fmt.Sprint(tc.planExit),
			}
			out, _ := cmd.CombinedOutput()
			got, _ := os.ReadFile(output)
			want := ""
			if tc.wantExit == 0 {
				want = fmt.Sprintf("changes=%v\n", tc.applied)
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.wantExit || string(got) != want {
				t.Errorf("plan exit %d: step exit %d (want %d), output %q (want %q)\n%s", tc.planExit, code, tc.wantExit, got, want, out)
			}
		}
	})
}
