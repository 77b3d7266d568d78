package spec

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testEnv is the environment every fixture is loaded with.
var testEnv = map[string]string{
	"PACKET_PROJECT_ID": "3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60",
	"BUILD":             "2026-11-25",
}

// fixtureOptions resolves ipxe_template paths relative to the fixture, as
// the CLI does relative to the fleet file.
func fixtureOptions(file string) LoadOptions {
	dir := filepath.Dir(file)
	return LoadOptions{
		Getenv: func(k string) string { return testEnv[k] },
		ReadFile: func(p string) ([]byte, error) {
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			return os.ReadFile(p)
		},
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the result:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func fixtures(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/%s: %v", dir, err)
	}
	return files
}

// TestLoadValid loads each valid fixture and compares the fleet and its
// expansion with a JSON golden file next to it.
func TestLoadValid(t *testing.T) {
	for _, file := range fixtures(t, "valid") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Load(filepath.Base(file), data, fixtureOptions(file))
			if err != nil {
				t.Fatalf("Load: unexpected problems:\n%v", err)
			}
			devs, err := Expand(f)
			if err != nil {
				t.Fatalf("Expand: %v", err)
			}
			out, err := json.MarshalIndent(struct {
				Fleet   *Fleet
				Devices []Device
			}{f, devs}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, strings.TrimSuffix(file, ".yml")+".golden.json", string(out)+"\n")
		})
	}
}

// TestLoadInvalid loads each invalid fixture and compares every reported
// problem, with its position, to the .err file next to it.
func TestLoadInvalid(t *testing.T) {
	for _, file := range fixtures(t, "invalid") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Load(filepath.Base(file), data, fixtureOptions(file))
			if err == nil {
				t.Fatalf("Load accepted an invalid fixture: %+v", f)
			}
			if f != nil {
				t.Errorf("Load returned a fleet along with errors")
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Load error is %T, want spec.Errors", err)
			}
			checkGolden(t, strings.TrimSuffix(file, ".yml")+".err", err.Error()+"\n")
		})
	}
}
