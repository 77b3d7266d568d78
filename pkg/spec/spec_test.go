package spec

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

const testUUID = "3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60"

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestProjectSources(t *testing.T) {
	withVar := "apiVersion: lkfleet/v1\nfleet: a\nproject: ${PACKET_PROJECT_ID}\ngroups: []\n"
	without := "apiVersion: lkfleet/v1\nfleet: a\ngroups: []\n"
	other := "11111111-2222-3333-4444-555555555555"
	tests := []struct {
		name, file string
		opts       LoadOptions
		want       string // project, or the error text
		wantErr    bool
	}{
		{"expanded", withVar, LoadOptions{Getenv: envOf(map[string]string{"PACKET_PROJECT_ID": testUUID})}, testUUID, false},
		{"unset variable", withVar, LoadOptions{}, "x.yml:3:10: project: environment variable PACKET_PROJECT_ID is not set (set it, or pass --project)", true},
		{"flag overrides and skips expansion", withVar, LoadOptions{Project: other}, other, false},
		{"flag must be a UUID", withVar, LoadOptions{Project: "nope"}, `x.yml: project: --project "nope" is not a project UUID`, true},
		{"no key: environment", without, LoadOptions{Getenv: envOf(map[string]string{"PACKET_PROJECT_ID": testUUID})}, testUUID, false},
		{"no key, no environment", without, LoadOptions{}, "x.yml:1:1: project: missing; give the project UUID here, set PACKET_PROJECT_ID, or pass --project", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Load("x.yml", []byte(tt.file), tt.opts)
			if tt.wantErr {
				if err == nil || err.Error() != tt.want {
					t.Fatalf("err = %v, want %s", err, tt.want)
				}
				return
			}
			if err != nil || f.Project != tt.want {
				t.Fatalf("project = %v, %v; want %s", f, err, tt.want)
			}
		})
	}
}

func TestIPXETemplateInlineWithoutReadFile(t *testing.T) {
	src := "apiVersion: lkfleet/v1\nfleet: a\nproject: " + testUUID + "\nimages: {i: {base_url: 'http://h'}}\n" +
		"groups: [{name: g, image: i, ipxe_template: 'x.ipxe'}]\n"
	_, err := Load("x.yml", []byte(src), LoadOptions{})
	want := "x.yml:5:45: groups[0].ipxe_template: the script must start with #!ipxe"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	src = strings.Replace(src, "'x.ipxe'", `"#!ipxe\nchain http://h/{{.Hostname}}"`, 1)
	f, err := Load("x.yml", []byte(src), LoadOptions{ReadFile: func(string) ([]byte, error) {
		t.Error("ReadFile called for a multi-line template")
		return nil, os.ErrNotExist
	}})
	if err != nil || f.Groups[0].IPXETemplate != "#!ipxe\nchain http://h/{{.Hostname}}" {
		t.Fatalf("inline template: %+v, %v", f, err)
	}
}

func TestExpandEnv(t *testing.T) {
	env := envOf(map[string]string{"A": "x", "B_2": "y"})
	tests := []struct {
		in, want, missing, err string
	}{
		{"plain", "plain", "", ""},
		{"${A}-${B_2}", "x-y", "", ""},
		{"$$5 and $ and $x", "$5 and $ and $x", "", ""},
		{"$${A}", "${A}", "", ""},
		{"${C}${D}", "", "C,D", ""},
		{"${A", "", "", "unterminated"},
		{"${1A}", "", "", "bad variable reference"},
		{"trailing $", "trailing $", "", ""},
	}
	for _, tt := range tests {
		got, missing, err := expandEnv(tt.in, env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expandEnv(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || strings.Join(missing, ",") != tt.missing {
			t.Errorf("expandEnv(%q) = %q, %v, %v; want %q, %q", tt.in, got, missing, err, tt.want, tt.missing)
		}
	}
}

func TestCompareSlots(t *testing.T) {
	want := []string{"db/ams1/1", "web/ams1/2", "web/ams1/10", "web/ams2/1", "web/ams10/1", "web2/ams1/1", "web10/ams1/1", "not-a-slot", "x/y/0"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, CompareSlots)
	if !slices.Equal(got, want) {
		t.Fatalf("sorted = %v\nwant     %v", got, want)
	}
	for _, c := range []struct {
		a, b string
		want int
	}{{"a01", "a1", -1}, {"a1", "a01", 1}, {"a", "a0", -1}, {"", "", 0}, {"b", "a9", 1}} {
		if got := NaturalCompare(c.a, c.b); got != c.want {
			t.Errorf("NaturalCompare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestExpandHandBuiltFleet(t *testing.T) {
	f := &Fleet{
		Name:   "lab",
		Images: []Image{{Key: "i", Name: "i", BaseURL: "http://h"}},
		Groups: []Group{{Name: "web", Image: "i", Count: 2, Zones: []string{"ams1"}, Machine: "baremetal_2a", Hostname: "{{.Group}}{{.Index}}"}},
	}
	devs, err := Expand(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[1].Hostname != "web2" || devs[1].Arch != ArchARM || devs[1].Wave != 0 || devs[0].Slot != "web/ams1/1" {
		t.Fatalf("devices = %+v", devs)
	}
	f.Groups[0].Hostname = "{{.Group}}"
	f.Groups = append(f.Groups, Group{Name: "db", Image: "missing", Count: 1, Zones: []string{"ams1"}})
	_, err = Expand(f)
	want := `expand fleet "lab": group "web": hostname: renders "web" for slot web/ams1/2, already the hostname of slot web/ams1/1; hostnames must be unique across the fleet` + "\n" +
		`expand fleet "lab": group "db": image: unknown image "missing"`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if _, err := Expand(nil); err == nil {
		t.Fatal("Expand(nil) succeeded")
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"zone", "zones", "machine", "groups"}
	for in, want := range map[string]string{"zonse": "zones", "zon": "zone", "machien": "machine", "Groups": "groups", "xyz": "", "group": "groups"} {
		if got := Suggest(in, cands); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRenderTemplateLimits(t *testing.T) {
	// Within the iteration budget (template_budget.go), over the output cap.
	_, err := RenderTemplate("t", `{{range 1000}}{{printf "%01100d" 0}}{{end}}`, TemplateData{})
	if err == nil || !strings.Contains(err.Error(), "renders to more than") {
		t.Fatalf("err = %v, want a size error", err)
	}
	out, err := RenderTemplate("t", "{{.Image.Name}} {{.Index}}", TemplateData{Index: 3, Image: TemplateImage{Name: "sshd"}})
	if err != nil || out != "sshd 3" {
		t.Fatalf("render = %q, %v", out, err)
	}
}

// FuzzLoad feeds arbitrary bytes to Load: it must never panic, problems
// must be well formed, and whatever Load accepts must expand.
func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := os.ReadDir("testdata/" + dir)
		for _, e := range files {
			if strings.HasSuffix(e.Name(), ".yml") {
				data, err := os.ReadFile("testdata/" + dir + "/" + e.Name())
				if err != nil {
					f.Fatal(err)
				}
				f.Add(data)
			}
		}
	}
	opts := LoadOptions{
		Getenv: envOf(testEnv),
		ReadFile: func(p string) ([]byte, error) {
			if p == "a.ipxe" {
				return []byte("#!ipxe\nboot {{.Slot}}"), nil
			}
			return nil, os.ErrNotExist
		},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, err := Load("f.yml", data, opts)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T is not spec.Errors", err)
			}
			for _, e := range es {
				if e.File != "f.yml" || e.Msg == "" || e.Line < 0 || !utf8.ValidString(e.Path) && utf8.Valid(data) {
					t.Fatalf("malformed problem %+v", e)
				}
			}
			if fl != nil {
				t.Fatal("fleet returned with errors")
			}
			return
		}
		devs, err := Expand(fl)
		if err != nil {
			t.Fatalf("Load accepted a fleet that Expand rejects: %v", err)
		}
		hosts := map[string]bool{}
		for i, d := range devs {
			if hosts[d.Hostname] || !reLabel.MatchString(d.Hostname) {
				t.Fatalf("bad or duplicate hostname %q", d.Hostname)
			}
			hosts[d.Hostname] = true
			if i > 0 && CompareSlots(devs[i-1].Slot, d.Slot) >= 0 {
				t.Fatalf("devices out of order: %s then %s", devs[i-1].Slot, d.Slot)
			}
			if d.Wave < 0 || d.Wave >= len(fl.Rollout.Waves) {
				t.Fatalf("device %s in wave %d of %d", d.Slot, d.Wave, len(fl.Rollout.Waves))
			}
		}
	})
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"ams1", "ams1", 0}, {"ams1", "amz1", 1}, {"", "abc", 3},
		{"kitten", "sitting", 3}, {"c3.smal.x86", "c3.small.x86", 1},
		{"zonse", "zones", 1}, // a transposition is one edit
	} {
		if got := EditDistance(c.a, c.b); got != c.d {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

func TestNormalizeArch(t *testing.T) {
	for in, want := range map[string]string{
		"x86_64": ArchX86, "amd64": ArchX86, " X86 ": ArchX86,
		"aarch64": ArchARM, "arm64": ArchARM, "ARM": ArchARM,
		"": "", "riscv64": "",
	} {
		if got := NormalizeArch(in); got != want {
			t.Errorf("NormalizeArch(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDefaultHostnameMatchesTemplate keeps hostname's shortcut for the
// default template printing what text/template prints for it.
func TestDefaultHostnameMatchesTemplate(t *testing.T) {
	tmpl, err := ParseTemplate("hostname", DefaultHost)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []HostnameData{
		{Group: "web", Zone: "ams1", Index: 1},
		{Fleet: "lab", Group: "node10", Zone: "am", Index: 100000, Machine: "c3.small.x86"},
		{Group: "a<b>&'\"", Zone: "z 1", Index: 7},
		{Group: "", Zone: "", Index: 0},
	} {
		want, err := execTemplate(tmpl, DefaultHost, d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := hostname(tmpl, DefaultHost, d)
		if err != nil || got != want {
			t.Errorf("hostname(%+v) = %q, %v; the template prints %q", d, got, err, want)
		}
	}
}
