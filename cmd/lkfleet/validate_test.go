package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const validateProject = "3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60"

var validateVars = map[string]string{"PACKET_PROJECT_ID": validateProject, "BUILD_ID": "2026-11-25.1", "LKFLEET_SIM_URL": "http://127.0.0.1:8080"}

func writeValidateFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestValidateExampleFleets checks that every shipped example validates,
// with the device counts the examples promise.
func TestValidateExampleFleets(t *testing.T) {
	want := map[string]string{
		"demo.yml":        "5 devices in 2 groups, 2 zones",
		"nightly-lab.yml": "5 devices in 2 groups, 2 zones",
		"rollout.yml":     "28 devices in 3 groups, 5 zones",
	}
	files, err := filepath.Glob("../../fleets/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example fleets: %v", err)
	}
	for _, file := range files {
		summary, ok := want[filepath.Base(file)]
		if !ok {
			t.Errorf("%s: new example fleet; add its summary to this test", file)
			continue
		}
		out, errs, code := runCLI(t, validateVars, "validate", "-f", file)
		if code != 0 || errs != "" || out != file+": ok — "+summary+"\n" {
			t.Errorf("validate %s: code %d\nout %q\nerr %q", file, code, out, errs)
		}
	}
}

func TestValidateReportsEveryProblemOnItsOwnLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lab.yml")
	writeValidateFile(t, file, `apiVersion: lkfleet/v1
fleet: lab
images:
  sshd: {base_url: "https://img.example.com"}
  probe: {base_url: "https://img.example.com"}
groups:
  - name: web
    image: sshd
    zonse: [ams1]
  - name: db
    image: sshdd
`)
	out, errs, code := runCLI(t, validateVars, "validate", "--file", file)
	want := file + `:9:5: groups[0].zonse: unknown key; did you mean "zones"?` + "\n" +
		file + `:11:12: groups[1].image: unknown image "sshdd" (known: sshd, probe); did you mean "sshd"?` + "\n"
	if code != ExitError || out != "" || errs != want {
		t.Fatalf("code %d\nout %q\nerr %s\nwant %s", code, out, errs, want)
	}
}

func TestValidateProjectFlagReplacesUnsetVariable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lab.yml")
	writeValidateFile(t, file, "apiVersion: lkfleet/v1\nfleet: lab\nproject: ${PACKET_PROJECT_ID}\nimages: {i: {base_url: 'http://h'}}\ngroups: [{name: g, image: i}]\n")
	_, errs, code := runCLI(t, nil, "validate", "-f", file)
	if code != ExitError || !strings.Contains(errs, "environment variable PACKET_PROJECT_ID is not set") {
		t.Fatalf("without --project: code %d, err %q", code, errs)
	}
	out, errs, code := runCLI(t, nil, "validate", "-f", file, "--project", validateProject)
	if code != 0 || out != file+": ok — 1 device in 1 group, 1 zone\n" {
		t.Fatalf("with --project: code %d, out %q, err %q", code, out, errs)
	}
}

func TestValidateMissingFile(t *testing.T) {
	t.Chdir(t.TempDir())
	out, errs, code := runCLI(t, validateVars, "validate")
	if code != ExitError || out != "" || errs != "Error: read fleet file: open fleet.yml: no such file or directory\n" {
		t.Fatalf("code %d, out %q, err %q", code, out, errs)
	}
}

// TestLoadFleetReadsTemplatesNextToTheFleetFile runs from another
// directory: ipxe_template paths must resolve against the fleet file.
func TestLoadFleetReadsTemplatesNextToTheFleetFile(t *testing.T) {
	dir := t.TempDir()
	script := "#!ipxe\nchain http://boot.example.com/{{.Slot}}\n"
	writeValidateFile(t, filepath.Join(dir, "lab", "boot", "web.ipxe"), script)
	writeValidateFile(t, filepath.Join(dir, "lab", "fleet.yml"), "apiVersion: lkfleet/v1\nfleet: lab\nimages: {i: {base_url: 'http://h'}}\n"+
		"groups: [{name: web, image: i, ipxe_template: boot/web.ipxe}]\n")
	t.Chdir(dir)
	env := &Env{Getenv: func(k string) string { return validateVars[k] }}
	f, err := loadFleet(env, fleetFlags{File: filepath.Join("lab", "fleet.yml")})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Groups[0].IPXETemplate; got != script {
		t.Fatalf("template = %q, want the file's content", got)
	}
	if f.Project != validateProject {
		t.Fatalf("Project %q", f.Project)
	}
}
