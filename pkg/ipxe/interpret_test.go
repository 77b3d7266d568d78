package ipxe_test

import (
	"reflect"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// TestDefaultScriptsBootInSimulator runs every default script shape, for
// both architectures, through the simulator's iPXE interpreter and checks
// that the machine would boot exactly the expected kernel, initrd(s) and
// kernel arguments.
func TestDefaultScriptsBootInSimulator(t *testing.T) {
	const base = "https://img.example.com/2026-11-25"
	kernel, initrd := base+"/sshd-kernel", base+"/sshd-initrd.img"
	tests := []struct {
		name       string
		machine    string
		cmdline    string
		kernelArgs string
		want       packetsim.BootSpec
	}{
		{
			name: "x86_64", machine: "baremetal_0", cmdline: "console=tty0 page_poison=1",
			want: packetsim.BootSpec{Kernel: kernel,
				Args:    "ip=dhcp nomodeset ro serial console=ttyS1,115200 console=tty0 page_poison=1",
				Initrds: []packetsim.Initrd{{URL: initrd}}},
		},
		{
			name: "x86_64 cmdline with ttyS1", machine: "c3.small.x86", cmdline: "console=ttyS1,115200 page_poison=1",
			want: packetsim.BootSpec{Kernel: kernel,
				Args:    "ip=dhcp nomodeset ro serial console=ttyS1,115200 page_poison=1",
				Initrds: []packetsim.Initrd{{URL: initrd}}},
		},
		{
			name: "x86_64 empty cmdline", machine: "baremetal_0", cmdline: "",
			want: packetsim.BootSpec{Kernel: kernel,
				Args:    "ip=dhcp nomodeset ro serial console=ttyS1,115200",
				Initrds: []packetsim.Initrd{{URL: initrd}}},
		},
		{
			name: "x86_64 kernel_args", machine: "baremetal_0", cmdline: "console=tty0", kernelArgs: "lkfleet.slot={{.Slot}}",
			want: packetsim.BootSpec{Kernel: kernel,
				Args:    "ip=dhcp nomodeset ro serial console=ttyS1,115200 console=tty0 lkfleet.slot=web/ams1/1",
				Initrds: []packetsim.Initrd{{URL: initrd}}},
		},
		{
			name: "aarch64", machine: "baremetal_2a", cmdline: "console=ttyAMA0",
			want: packetsim.BootSpec{Kernel: kernel,
				Args:    "initrd=initrd root=/dev/ram0 ip=dhcp nomodeset ro console=ttyAMA0",
				Initrds: []packetsim.Initrd{{URL: initrd, Name: "initrd"}}},
		},
		{
			name: "aarch64 empty cmdline", machine: "c3.large.arm64", cmdline: "",
			want: packetsim.BootSpec{Kernel: kernel,
				Args:    "initrd=initrd root=/dev/ram0 ip=dhcp nomodeset ro",
				Initrds: []packetsim.Initrd{{URL: initrd, Name: "initrd"}}},
		},
		{
			name: "aarch64 kernel_args", machine: "baremetal_2a", cmdline: "console=ttyAMA0", kernelArgs: "lkfleet.host={{.Hostname}}",
			want: packetsim.BootSpec{Kernel: kernel,
				Args:    "initrd=initrd root=/dev/ram0 ip=dhcp nomodeset ro console=ttyAMA0 lkfleet.host=web-ams1-1",
				Initrds: []packetsim.Initrd{{URL: initrd, Name: "initrd"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := device(1, tt.machine, spec.Image{Key: "sshd", Name: "sshd", BaseURL: base})
			d.KernelArgs = tt.kernelArgs
			out, err := ipxe.Render([]spec.Device{d}, map[string]string{"sshd": tt.cmdline}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := packetsim.Interpret(out[0].Script)
			if err != nil {
				t.Fatalf("interpret:\n%s\n%v", out[0].Script, err)
			}
			if got.Kernel != tt.want.Kernel || got.Args != tt.want.Args || got.Chain != "" ||
				!reflect.DeepEqual(got.Initrds, tt.want.Initrds) {
				t.Errorf("script:\n%sboots kernel %q\n  args %q\n  initrds %+v\n  chain %q\nwant kernel %q\n  args %q\n  initrds %+v",
					out[0].Script, got.Kernel, got.Args, got.Initrds, got.Chain, tt.want.Kernel, tt.want.Args, tt.want.Initrds)
			}
			if got.Vars["base-url"] != base {
				t.Errorf("base-url = %q, want %q", got.Vars["base-url"], base)
			}
		})
	}
}

// TestCustomTemplateBootsInSimulator checks that the URLs a custom template
// gets are the ones the default script boots.
func TestCustomTemplateBootsInSimulator(t *testing.T) {
	d := device(1, "baremetal_2a", sshd)
	d.IPXETemplate = everyVariable
	out, err := ipxe.Render([]spec.Device{d}, map[string]string{"sshd": "console=ttyAMA0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := packetsim.Interpret(out[0].Script)
	if err != nil {
		t.Fatalf("interpret:\n%s\n%v", out[0].Script, err)
	}
	if got.Kernel != sshd.KernelURL() || got.Args != "initrd=initrd console=ttyAMA0" ||
		!reflect.DeepEqual(got.Initrds, []packetsim.Initrd{{URL: sshd.InitrdURL(), Name: "initrd"}}) {
		t.Errorf("boots %+v", got)
	}
}
