package packetsim_test

import (
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// FuzzInterpret feeds the iPXE interpreter arbitrary scripts (the corpus
// in testdata/fuzz/FuzzInterpret holds real and broken ones): it returns a
// BootSpec or an error, never panics, never loops, and a spec it returns
// boots exactly one of a kernel or a chain.
func FuzzInterpret(f *testing.F) {
	f.Add("#!ipxe\ndhcp\nset base http://127.0.0.1:1/img\nkernel ${base}/sshd-kernel console=ttyS1\ninitrd ${base}/sshd-initrd.img\nboot\n")
	f.Add("#!ipxe\nchain --autofree http://127.0.0.1:1/next.ipxe\n")
	f.Add("#!ipxe\n:retry\ndhcp || goto retry\nset a ${b}\nset b ${a}\necho ${a}${b}\nkernel x\nboot\n")
	f.Add("#!ipxe\r\nimgexec http://h/k\r\nmodule http://h/i\r\n")
	f.Add("kernel http://h/k\nboot\n")
	f.Add("#!ipxe\n:a\ngoto a\n")
	f.Add("#!ipxe\nset x ${x}${x}${x}${x}\nset x ${x}${x}${x}${x}\nset x ${x}${x}${x}${x}\nkernel ${x}\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, script string) {
		spec, err := packetsim.Interpret(script)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if spec == nil {
			t.Fatal("nil spec without an error")
		}
		if (spec.Kernel == "") == (spec.Chain == "") {
			t.Fatalf("spec boots kernel %q and chain %q: want exactly one", spec.Kernel, spec.Chain)
		}
		if !strings.HasPrefix(strings.TrimSpace(strings.ReplaceAll(script, "\r\n", "\n")), "#!ipxe") {
			t.Fatalf("accepted a script without #!ipxe: %q", script)
		}
	})
}

// TestInterpretBoundsExpansion doubles a variable forty times (a terabyte
// if expanded): the interpreter refuses the line instead of growing it.
func TestInterpretBoundsExpansion(t *testing.T) {
	script := "#!ipxe\nset x ab\n" + strings.Repeat("set x ${x}${x}\n", 40) + "kernel http://h/${x}\nboot\n"
	_, err := packetsim.Interpret(script)
	if err == nil || !strings.Contains(err.Error(), "after expanding variables") {
		t.Fatalf("exponential expansion: %v", err)
	}
	// Many references on one line to a variable just under the limit.
	script = "#!ipxe\nset x " + strings.Repeat("a", 60<<10) + "\nkernel " + strings.Repeat("${x}", 1<<16) + "\nboot\n"
	if _, err := packetsim.Interpret(script); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("wide expansion: %v", err)
	}
}
