package ipxe_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/<name>.golden, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n%s", name, ipxe.Diff(path, "got", string(want), got))
	}
}

var sshd = spec.Image{Key: "sshd", Name: "sshd", BaseURL: "https://img.example.com/2026-11-25"}

// device returns a plausible expanded device in slot web/ams1/<index>.
func device(index int, machine string, img spec.Image) spec.Device {
	d := spec.Device{
		Fleet:     "lab",
		Group:     "web",
		Zone:      "ams1",
		Index:     index,
		Machine:   machine,
		Billing:   "hourly",
		AlwaysPXE: true,
		Arch:      spec.ArchOfMachine(machine),
		Image:     img,
		UserTags:  []string{"lab"},
	}
	d.Slot = spec.SlotName(d.Group, d.Zone, d.Index)
	d.Hostname = "web-ams1-" + strings.TrimPrefix(d.Slot, "web/ams1/")
	return d
}

func withImage(img spec.Image, f func(*spec.Image)) spec.Image {
	f(&img)
	return img
}

// everyVariable is a custom template that uses every documented variable.
const everyVariable = `#!ipxe
# {{.Hostname}} {{.Fleet}} {{.Group}} {{.Zone}} {{.Index}} {{.Slot}} {{.Machine}} {{.Arch}}
# image {{.Image.Key}} {{.Image.Name}} {{.Image.BaseURL}}
dhcp
{{- if eq .Arch "aarch64"}}
initrd --name initrd {{.InitrdURL}}
kernel {{.KernelURL}} initrd=initrd {{.Cmdline}}
{{- else}}
kernel {{.KernelURL}} {{.Cmdline}}
initrd {{.InitrdURL}}
{{- end}}
boot
`

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name     string
		dev      spec.Device
		cmdlines map[string]string
		arches   map[string]string
		wantArch string
	}{
		{
			name:     "x86_64-fetched-cmdline",
			dev:      device(1, "c3.small.x86", sshd),
			cmdlines: map[string]string{"sshd": "console=tty0 page_poison=1"},
			wantArch: spec.ArchX86,
		},
		{
			name:     "x86_64-given-cmdline",
			dev:      device(1, "baremetal_0", withImage(sshd, func(i *spec.Image) { i.Cmdline = "console=tty0  \n page_poison=1" })),
			cmdlines: map[string]string{"sshd": "fetched-must-not-be-used"},
			wantArch: spec.ArchX86,
		},
		{
			name:     "x86_64-double-console",
			dev:      device(1, "baremetal_0", sshd),
			cmdlines: map[string]string{"sshd": "console=ttyS1,115200 page_poison=1"},
			wantArch: spec.ArchX86,
		},
		{
			name:     "x86_64-ttyS10-is-not-ttyS1",
			dev:      device(1, "baremetal_0", sshd),
			cmdlines: map[string]string{"sshd": "console=ttyS10"},
			wantArch: spec.ArchX86,
		},
		{
			name:     "x86_64-empty-cmdline",
			dev:      device(1, "baremetal_0", sshd),
			cmdlines: map[string]string{"sshd": ""},
			wantArch: spec.ArchX86,
		},
		{
			name: "x86_64-kernel-args",
			dev: func() spec.Device {
				d := device(2, "baremetal_0", sshd)
				d.KernelArgs = "lkfleet.slot={{.Slot}} lkfleet.host={{.Hostname}} lkfleet.arch={{.Arch}}"
				return d
			}(),
			cmdlines: map[string]string{"sshd": "console=tty0"},
			wantArch: spec.ArchX86,
		},
		{
			name: "x86_64-kernel-args-add-ttyS1",
			dev: func() spec.Device {
				d := device(1, "baremetal_0", sshd)
				d.KernelArgs = "console=ttyS1"
				return d
			}(),
			cmdlines: map[string]string{"sshd": "page_poison=1"},
			wantArch: spec.ArchX86,
		},
		{
			name:     "aarch64-from-slug",
			dev:      device(1, "baremetal_2a", sshd),
			cmdlines: map[string]string{"sshd": "console=ttyAMA0"},
			wantArch: spec.ArchARM,
		},
		{
			name:     "aarch64-from-catalogue",
			dev:      device(1, "m9.huge.custom", sshd),
			cmdlines: map[string]string{"sshd": "console=ttyAMA0"},
			arches:   map[string]string{"m9.huge.custom": "arm64"},
			wantArch: spec.ArchARM,
		},
		{
			name: "aarch64-kernel-args",
			dev: func() spec.Device {
				d := device(3, "c3.large.arm64", sshd)
				d.KernelArgs = "lkfleet.slot={{.Slot}} base={{.Cmdline}}"
				return d
			}(),
			cmdlines: map[string]string{"sshd": "console=ttyAMA0"},
			wantArch: spec.ArchARM,
		},
		{
			name: "image-arch-beats-catalogue",
			dev: func() spec.Device {
				d := device(1, "baremetal_0", withImage(sshd, func(i *spec.Image) { i.Arch = spec.ArchX86 }))
				return d
			}(),
			cmdlines: map[string]string{"sshd": "console=ttyS0"},
			arches:   map[string]string{"baremetal_0": "aarch64"},
			wantArch: spec.ArchX86,
		},
		{
			name: "custom-every-variable-x86_64",
			dev: func() spec.Device {
				d := device(4, "baremetal_0", withImage(sshd, func(i *spec.Image) { i.Key = "sshd-key"; i.Name = "sshd-name" }))
				d.IPXETemplate = everyVariable
				d.KernelArgs = "id={{.Hostname}}"
				return d
			}(),
			cmdlines: map[string]string{"sshd-key": "console=ttyS1"},
			wantArch: spec.ArchX86,
		},
		{
			name: "custom-every-variable-aarch64",
			dev: func() spec.Device {
				d := device(5, "baremetal_2a2", sshd)
				d.IPXETemplate = everyVariable
				return d
			}(),
			cmdlines: map[string]string{"sshd": "console=ttyAMA0"},
			wantArch: spec.ArchARM,
		},
		{
			name: "custom-tidied",
			dev: func() spec.Device {
				d := device(1, "baremetal_0", sshd)
				// Leading blank lines, CRLF, trailing blanks and several
				// final newlines are normalised away.
				d.IPXETemplate = "\n\n#!ipxe  \r\nchain {{.Image.BaseURL}}/{{.Hostname}}.ipxe\t\r\n\n\n"
				return d
			}(),
			cmdlines: map[string]string{"sshd": ""},
			wantArch: spec.ArchX86,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []spec.Device{tt.dev}
			out, err := ipxe.Render(in, tt.cmdlines, tt.arches)
			if err != nil {
				t.Fatal(err)
			}
			d := out[0]
			if d.Arch != tt.wantArch {
				t.Errorf("Arch = %q, want %q", d.Arch, tt.wantArch)
			}
			if d.Rev != d.ComputeRev() || len(d.Rev) != spec.RevLength {
				t.Errorf("Rev = %q, want ComputeRev() = %q", d.Rev, d.ComputeRev())
			}
			if in[0].Script != "" {
				t.Error("Render modified its input")
			}
			checkShape(t, d.Script)
			golden(t, tt.name, d.Script)
		})
	}
}

// checkShape asserts what every script must satisfy on the wire.
func checkShape(t *testing.T, s string) {
	t.Helper()
	if first, _, _ := strings.Cut(s, "\n"); first != "#!ipxe" && !strings.HasPrefix(first, "#!ipxe ") && !strings.HasPrefix(first, "#!ipxe\t") {
		t.Errorf("script does not start with #!ipxe: %q", s)
	}
	if !strings.HasSuffix(s, "\n") || strings.HasSuffix(s, "\n\n") {
		t.Errorf("script must end with exactly one newline: %q", s)
	}
	for i, l := range strings.Split(s, "\n") {
		if strings.TrimRight(l, " \t\r") != l {
			t.Errorf("line %d has trailing whitespace: %q", i+1, l)
		}
	}
}

func TestDefaultScriptExact(t *testing.T) {
	// The two default scripts spelled out in full, independent of the golden
	// files, so an -update cannot silently change them.
	x86 := ipxe.DefaultScript("x86_64", "http://h/i", "k", "console=tty0")
	wantX86 := "#!ipxe\ndhcp\nset base-url http://h/i\n" +
		"kernel ${base-url}/k-kernel ip=dhcp nomodeset ro serial console=ttyS1,115200 console=tty0\n" +
		"initrd ${base-url}/k-initrd.img\nboot\n"
	if x86 != wantX86 {
		t.Errorf("x86_64:\n%s", ipxe.Diff("want", "got", wantX86, x86))
	}
	arm := ipxe.DefaultScript("aarch64", "http://h/i", "k", "console=ttyAMA0")
	wantARM := "#!ipxe\ndhcp\nset base-url http://h/i\n" +
		"initrd --name initrd ${base-url}/k-initrd.img\n" +
		"kernel ${base-url}/k-kernel initrd=initrd root=/dev/ram0 ip=dhcp nomodeset ro console=ttyAMA0\nboot\n"
	if arm != wantARM {
		t.Errorf("aarch64:\n%s", ipxe.Diff("want", "got", wantARM, arm))
	}
}

func TestRenderErrorsNameDeviceAndSlot(t *testing.T) {
	cm := map[string]string{"sshd": "console=tty0"}
	tests := []struct {
		name string
		mod  func(*spec.Device)
		cm   map[string]string
		want []string
	}{
		{"unknown field in template", func(d *spec.Device) { d.IPXETemplate = "#!ipxe\n{{.Nope}}" }, cm,
			[]string{`render device "web-ams1-1" (slot web/ams1/1): ipxe_template: template: line 2: unknown field .Nope (available: .Hostname`}},
		{"unknown field in kernel_args", func(d *spec.Device) { d.KernelArgs = "x={{.Image.Nope}}" }, cm,
			[]string{`render device "web-ams1-1" (slot web/ams1/1): kernel_args: template: unknown field .Image.Nope`}},
		{"parse error", func(d *spec.Device) { d.IPXETemplate = "#!ipxe\n{{if}}" }, cm,
			[]string{`(slot web/ams1/1): ipxe_template:`, "missing value for if"}},
		{"no magic", func(d *spec.Device) { d.IPXETemplate = "dhcp\nboot\n" }, cm,
			[]string{`(slot web/ams1/1): ipxe_template: rendered script does not start with a "#!ipxe" line`}},
		{"magic glued to text", func(d *spec.Device) { d.IPXETemplate = "#!ipxeboot\n" }, cm,
			[]string{`ipxe_template: rendered script does not start with a "#!ipxe" line`}},
		{"runaway template", func(d *spec.Device) { d.IPXETemplate = "#!ipxe\n{{range 100000000}}0123456789{{end}}" }, cm,
			[]string{`(slot web/ams1/1): ipxe_template: template: line 2: {{range 100000000}}: more than 1000 iterations`}},
		{"runaway output", func(d *spec.Device) { d.IPXETemplate = "#!ipxe\n{{range 1000}}{{printf \"%01100d\" 0}}{{end}}" }, cm,
			[]string{`(slot web/ams1/1): ipxe_template: renders to more than`}},
		{"script too large", func(d *spec.Device) { d.IPXETemplate = "#!ipxe\n{{range 1000}}{{printf \"%0100d\" 0}}{{end}}" }, cm,
			[]string{`(slot web/ams1/1): ipxe_template: rendered output exceeds 65536 bytes`}},
		{"kernel_args too large", func(d *spec.Device) { d.KernelArgs = "{{range 1000}}0123456789{{end}}" }, cm,
			[]string{`(slot web/ams1/1): kernel_args: rendered output exceeds 4096 bytes`}},
		{"no cmdline", func(*spec.Device) {}, nil,
			[]string{`(slot web/ams1/1): image "sshd" has no cmdline: it is neither given nor fetched from https://img.example.com/2026-11-25/sshd-cmdline`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := device(1, "baremetal_0", sshd)
			tt.mod(&d)
			out, err := ipxe.Render([]spec.Device{d}, tt.cm, nil)
			if err == nil {
				t.Fatalf("no error; script:\n%s", out[0].Script)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestRenderReportsEveryDevice(t *testing.T) {
	a, b, c := device(1, "baremetal_0", sshd), device(2, "baremetal_0", sshd), device(3, "baremetal_0", sshd)
	a.KernelArgs = "{{.Bad1}}"
	c.KernelArgs = "{{.Bad3}}"
	_, err := ipxe.Render([]spec.Device{a, b, c}, map[string]string{"sshd": ""}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "slot web/ams1/1") || !strings.Contains(msg, "slot web/ams1/3") || strings.Contains(msg, "slot web/ams1/2") {
		t.Errorf("want errors for slots 1 and 3 only, got:\n%s", msg)
	}
}

func TestRevStability(t *testing.T) {
	cm := map[string]string{"sshd": "console=tty0"}
	render := func(d spec.Device, cm map[string]string) spec.Device {
		t.Helper()
		out, err := ipxe.Render([]spec.Device{d}, cm, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	base := device(1, "baremetal_0", sshd)
	ref := render(base, cm)
	if again := render(base, cm); again.Rev != ref.Rev || again.Script != ref.Script {
		t.Fatalf("same input rendered differently: %q vs %q", again.Rev, ref.Rev)
	}
	// Fields outside the boot configuration do not change the rev.
	same := base
	same.Hostname, same.UserTags, same.Wave = "renamed", []string{"other"}, 3
	if r := render(same, cm).Rev; r != ref.Rev {
		t.Errorf("hostname/tags/wave changed the rev: %s vs %s", r, ref.Rev)
	}

	changes := map[string]func(*spec.Device, map[string]string) map[string]string{
		"cmdline": func(_ *spec.Device, cm map[string]string) map[string]string {
			return map[string]string{"sshd": "console=tty1"}
		},
		"kernel_args": func(d *spec.Device, cm map[string]string) map[string]string { d.KernelArgs = "x=1"; return cm },
		"image base_url": func(d *spec.Device, cm map[string]string) map[string]string {
			d.Image.BaseURL += "-2"
			return cm
		},
		"image name": func(d *spec.Device, cm map[string]string) map[string]string { d.Image.Name = "other"; return cm },
		"arch":       func(d *spec.Device, cm map[string]string) map[string]string { d.Image.Arch = spec.ArchARM; return cm },
		"template": func(d *spec.Device, cm map[string]string) map[string]string {
			d.IPXETemplate = "#!ipxe\nboot\n"
			return cm
		},
		"machine":    func(d *spec.Device, cm map[string]string) map[string]string { d.Machine = "c3.small.x86"; return cm },
		"zone":       func(d *spec.Device, cm map[string]string) map[string]string { d.Zone = "ewr1"; return cm },
		"billing":    func(d *spec.Device, cm map[string]string) map[string]string { d.Billing = "monthly"; return cm },
		"always_pxe": func(d *spec.Device, cm map[string]string) map[string]string { d.AlwaysPXE = false; return cm },
		"script url": func(d *spec.Device, cm map[string]string) map[string]string {
			d.IPXEScriptURL = "http://s/x.ipxe"
			return cm
		},
	}
	seen := map[string]string{ref.Rev: "base"}
	for name, change := range changes {
		d := base
		cm2 := change(&d, cm)
		r := render(d, cm2).Rev
		if prev, dup := seen[r]; dup {
			t.Errorf("change %q gives the same rev %s as %q", name, r, prev)
		}
		seen[r] = name
	}
	// Userdata counts only when it is sent, i.e. with a script URL.
	withURL := base
	withURL.IPXEScriptURL = "http://s/x.ipxe"
	withUserdata := withURL
	withUserdata.Userdata = "#cloud-config\n"
	if render(withURL, cm).Rev == render(withUserdata, cm).Rev {
		t.Error("userdata did not change the rev")
	}
}
