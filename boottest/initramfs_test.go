package boottest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// cachedKernel returns the kernel scripts/boot-deps.sh unpacked, or skips.
func cachedKernel(t *testing.T) KernelTree {
	t.Helper()
	cache := os.Getenv(envCache)
	if cache == "" {
		cache = filepath.Join("..", ".cache", "boot")
	}
	k, err := FindKernel(filepath.Join(cache, "kernel"))
	if err != nil {
		t.Skipf("no unpacked Debian kernel (%v); run scripts/boot-deps.sh as root", err)
	}
	return k
}

func TestModuleClosureLoadsDependenciesFirst(t *testing.T) {
	k := cachedKernel(t)
	paths, err := k.ModuleClosure(NetModules...)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".ko"))
	}
	pos := func(n string) int {
		i := slices.Index(names, n)
		if i < 0 {
			t.Fatalf("closure %v lacks %s", names, n)
		}
		return i
	}
	// virtio_net needs net_failover (which needs failover) and virtio;
	// each must be loaded before what uses it.
	for _, dep := range [][2]string{{"virtio", "virtio_net"}, {"net_failover", "virtio_net"}, {"failover", "net_failover"}, {"virtio", "virtio_pci"}, {"virtio_ring", "virtio_net"}} {
		if pos(dep[0]) > pos(dep[1]) {
			t.Fatalf("closure %v loads %s after %s", names, dep[0], dep[1])
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(names)))) != len(names) {
		t.Fatalf("closure %v lists a module twice", names)
	}
	if _, err := k.ModuleClosure("no_such_module"); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Fatalf("unknown module: err = %v", err)
	}
}
