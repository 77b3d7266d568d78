package ipxe_test

import (
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// FuzzRender feeds arbitrary templates, cmdlines and kernel_args through
// Render. It must never panic, and whatever it renders must be a well-formed
// script; the default script must keep its shape whatever the cmdline holds
// (a newline in a cmdline must not become a new iPXE command). The seed
// corpus is testdata/fuzz/FuzzRender plus the seeds below.
func FuzzRender(f *testing.F) {
	f.Add("", "console=ttyS1", "", false)
	f.Add("", "console=ttyAMA0", "lkfleet.slot={{.Slot}}", true)
	f.Add(everyVariable, "console=tty0 page_poison=1", "id={{.Hostname}}", false)
	f.Add("#!ipxe\nchain {{.Image.BaseURL}}/{{.Hostname}}.ipxe", "", "", false)
	f.Add("{{define \"x\"}}{{template \"x\"}}{{end}}#!ipxe{{template \"x\"}}", "", "", false)
	f.Add("", "a\nkernel evil\n", "{{.Cmdline}}\nboot", false)
	f.Fuzz(func(t *testing.T, tmpl, cmdline, kernelArgs string, arm bool) {
		machine := "baremetal_0"
		if arm {
			machine = "baremetal_2a"
		}
		d := device(1, machine, sshd)
		d.IPXETemplate = tmpl
		d.KernelArgs = kernelArgs
		out, err := ipxe.Render([]spec.Device{d}, map[string]string{"sshd": cmdline}, nil)
		if err != nil {
			if !strings.Contains(err.Error(), "(slot web/ams1/1)") {
				t.Errorf("error does not name the slot: %v", err)
			}
			return
		}
		s := out[0].Script
		checkShape(t, s)
		if len(out[0].Rev) != spec.RevLength {
			t.Errorf("rev %q", out[0].Rev)
		}
		if tmpl != "" {
			return
		}
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		want := []string{"#!ipxe", "dhcp", "set ", "kernel ${base-url}/sshd-kernel ", "initrd ${base-url}/sshd-initrd.img", "boot"}
		if arm {
			want[3], want[4] = "initrd --name initrd ${base-url}/sshd-initrd.img", "kernel ${base-url}/sshd-kernel initrd=initrd root=/dev/ram0 "
		}
		if len(lines) != len(want) {
			t.Fatalf("default script has %d lines, want %d:\n%s", len(lines), len(want), s)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], w)
			}
		}
		if !arm && strings.Count(s, "console=ttyS1") > 1 && !strings.Contains(cmdline+" "+kernelArgs, "console=ttyS1") {
			t.Errorf("ttyS1 console added twice:\n%s", s)
		}
	})
}
