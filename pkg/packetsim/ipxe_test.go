package packetsim_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func TestInterpret(t *testing.T) {
	spec, err := packetsim.Interpret("\n#!ipxe\r\n# comment\n:start\ndhcp || goto start\nset base http://127.0.0.1:1/img\n" +
		"set name sshd\necho booting ${name} from ${base} on ${ip}\n" +
		"kernel --name k ${base}/${name}-kernel console=ttyS1  lkfleet.slot=web/ams1/1 ${undefined}\n" +
		"initrd --name initrd ${base}/${name}-initrd.img\ninitrd ${base}/extra.img\nboot\necho never\n")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Kernel != "http://127.0.0.1:1/img/sshd-kernel" || spec.Args != "console=ttyS1 lkfleet.slot=web/ams1/1" {
		t.Errorf("kernel %q args %q", spec.Kernel, spec.Args)
	}
	want := []packetsim.Initrd{{URL: "http://127.0.0.1:1/img/sshd-initrd.img", Name: "initrd"}, {URL: "http://127.0.0.1:1/img/extra.img"}}
	if !slices.Equal(spec.Initrds, want) {
		t.Errorf("initrds %+v, want %+v", spec.Initrds, want)
	}
	if !slices.Equal(spec.Echoes, []string{"booting sshd from http://127.0.0.1:1/img on 192.0.2.10"}) {
		t.Errorf("echoes %q", spec.Echoes)
	}

	chain, err := packetsim.Interpret("#!ipxe\nchain http://127.0.0.1:1/next.ipxe a=b\nkernel x\n")
	if err != nil || chain.Chain != "http://127.0.0.1:1/next.ipxe" || chain.Args != "a=b" || chain.Kernel != "" {
		t.Errorf("chain: %+v, %v", chain, err)
	}

	for _, tc := range []struct{ name, script, want string }{
		{"no header", "kernel http://x/k\nboot\n", "does not start with #!ipxe"},
		{"unknown command", "#!ipxe\nfrobnicate now\n", `line 2: unknown command "frobnicate"`},
		{"boot without kernel", "#!ipxe\ndhcp\nboot\n", "line 3: boot without a kernel"},
		{"no boot", "#!ipxe\nkernel http://x/k\n", "ends without boot"},
		{"nothing", "#!ipxe\necho hi\n", "ends without booting a kernel"},
		{"kernel without url", "#!ipxe\nkernel --name k\nboot\n", "line 2: kernel: missing image URL"},
		{"exit", "#!ipxe\nexit\n", "line 2: exit before booting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := packetsim.Interpret(tc.script)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
