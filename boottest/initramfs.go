// Package boottest boots what lkfleet renders on real firmware: Debian's
// iPXE (ipxe.lkrn) in QEMU fetches a Debian kernel and a tiny busybox
// initramfs from the simulator's --images and the guest reports back.
//
// The package holds the pieces the boot test and users need to do this on
// their own machine: locating the Debian packages (see scripts/boot-deps.sh)
// and building the initramfs. The tests live in boot_test.go and run under
// `make boot-test`.
package boottest

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Markers the initramfs prints on its console (the last console= of the
// kernel command line). Tests and users grep the serial log for them.
const (
	// MarkerCmdline starts the line that carries /proc/cmdline.
	MarkerCmdline = "LKFLEET-BOOT cmdline: "
	// MarkerNet starts the line with the address udhcpc obtained.
	MarkerNet = "LKFLEET-BOOT net: "
	// MarkerUserState starts each line that says how posting a user
	// state went ("none" when there is no metadata service).
	MarkerUserState = "LKFLEET-BOOT user state: "
	// MarkerDone is printed when the init has finished: just before the
	// guest powers off (no metadata service) or starts its shell.
	MarkerDone = "LKFLEET-BOOT done"
	// Prompt is the guest shell's prompt on the console.
	Prompt = "boottest# "
	// MetadataURL is where the guest finds its metadata service (the
	// simulator relays it there under --boot qemu).
	MetadataURL = "http://169.254.169.254"
)

// The kernel argument boottest.expect-hostname=NAME makes the guest's
// check compare its metadata's hostname with NAME: a mismatch posts user
// state failed with a message that says so.

// NetModules are the modules a Debian kernel needs for a virtio-net NIC in
// QEMU; their dependencies are added from the modules' own modinfo.
var NetModules = []string{"virtio_pci", "virtio_net"}

// initScript is /init. Nothing is open on fds 0-2 until /dev/console
// exists: the archive carries no device nodes (building it needs no root),
// so devtmpfs is mounted first. With a metadata service the guest posts
// running, then succeeded or failed, and stays up with a shell on its
// console; without one it powers off.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /lib/modules/load-order); do
	insmod /lib/modules/$m || echo "LKFLEET-BOOT insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 10 -T 1 >/dev/null 2>&1 || echo "LKFLEET-BOOT udhcpc failed"
echo "` + MarkerNet + `$(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "` + MarkerCmdline + `$(cat /proc/cmdline)"
field() { sed -n 's/.*"'"$1"'": *"\([^"]*\)".*/\1/p' /tmp/metadata; }
# post STATE CODE MESSAGE: user state, as the service takes it.
post() {
	msg=$(echo "$3" | tr -d '"\\')
	if timeout 30 wget -q -O /dev/null --header "Content-Type: application/json" \
		--post-data "{\"state\":\"$1\",\"code\":$2,\"message\":\"$msg\"}" "$url"; then
		echo "` + MarkerUserState + `$1 posted to $url"
	else
		echo "` + MarkerUserState + `$1 could not be posted to $url"
	fi
}
url=""
if timeout 30 wget -q -O /tmp/metadata "` + MetadataURL + `/metadata"; then
	url=$(field user_state_url)
	host=$(field hostname)
fi
if [ -z "$url" ]; then
	echo "` + MarkerUserState + `none"
	echo "` + MarkerDone + `"
	sync
	poweroff -f
fi
post running 1000 "init started on $host"
want=""
for arg in $(cat /proc/cmdline); do
	case "$arg" in boottest.expect-hostname=*) want="${arg#boottest.expect-hostname=}" ;; esac
done
if [ -n "$want" ] && [ "$want" != "$host" ]; then
	post failed 1002 "check failed: the metadata says hostname $host, expected $want"
else
	post succeeded 1001 "up: kernel $(uname -r), hostname $host; cmdline: $(cat /proc/cmdline)"
fi
echo "` + MarkerDone + `"
export PS1='` + Prompt + `' HOME=/ TERM=vt100
while true; do setsid cttyhack sh; done
`

// udhcpcScript configures the lease (busybox udhcpc runs it per event).
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound|renew)
	ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
	for r in $router; do route add default gw "$r" dev "$interface"; break; done
	;;
esac
exit 0
`

// KernelTree is a Debian kernel package unpacked with dpkg-deb -x.
type KernelTree struct {
	// Root is the directory the package was unpacked into.
	Root string
	// Version is the kernel release, e.g. 6.1.0-26-amd64.
	Version string
	// Vmlinuz is the kernel image.
	Vmlinuz string
}

// FindKernel locates the kernel image and its release in an unpacked
// linux-image package.
func FindKernel(root string) (KernelTree, error) {
	imgs, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(imgs) == 0 {
		return KernelTree{}, fmt.Errorf("find kernel in %s: no boot/vmlinuz-*", root)
	}
	sort.Strings(imgs)
	img := imgs[len(imgs)-1]
	ver := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
	if _, err := os.Stat(filepath.Join(root, "lib", "modules", ver)); err != nil {
		return KernelTree{}, fmt.Errorf("find kernel in %s: modules of %s: %w", root, ver, err)
	}
	return KernelTree{Root: root, Version: ver, Vmlinuz: img}, nil
}

// modDir is the module tree of k.
func (k KernelTree) modDir() string {
	return filepath.Join(k.Root, "lib", "modules", k.Version)
}

// ModuleClosure returns the module files needed to load names, dependencies
// first. Modules built into the kernel (modules.builtin) are left out.
// Dependencies come from each module's .modinfo section ("depends="), the
// data modinfo(8) and depmod(8) read, so no kmod tools are needed and an
// unpacked package without modules.dep works.
func (k KernelTree) ModuleClosure(names ...string) ([]string, error) {
	dir := k.modDir()
	files := map[string]string{} // normalised name -> path
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if base, ok := strings.CutSuffix(d.Name(), ".ko"); ok && !d.IsDir() {
			files[normMod(base)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list modules of %s: %w", k.Version, err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[normMod(strings.TrimSuffix(filepath.Base(l), ".ko"))] = true
		}
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = normMod(name)
		switch {
		case state[name] == 2 || builtin[name]:
			return nil
		case state[name] == 1:
			return fmt.Errorf("module %s: dependency cycle through %s", name, from)
		}
		p, ok := files[name]
		if !ok {
			if compressed, _ := filepath.Glob(filepath.Join(dir, "kernel", "*", "*", name+".ko.*")); len(compressed) > 0 {
				return fmt.Errorf("module %s (needed by %s): only compressed modules found; unpack them first", name, from)
			}
			return fmt.Errorf("module %s (needed by %s): not in %s", name, from, dir)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, "the initramfs"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// normMod makes module names comparable: the kernel treats - and _ alike.
func normMod(s string) string { return strings.ReplaceAll(s, "-", "_") }

// moduleDepends reads the depends= entry of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("read module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read module %s: .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, d)
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// BuildInitramfs writes a gzipped newc initramfs to out: busybox (which
// must be statically linked), the modules of NetModules with their
// dependencies, and an /init that brings up eth0 with udhcpc, prints the
// markers, and either posts its user state through the metadata service
// at MetadataURL and runs a shell on its console, or (no metadata
// service) powers off. It runs cpio(1) to pack the archive.
func BuildInitramfs(k KernelTree, busybox, out string) error {
	mods, err := k.ModuleClosure(NetModules...)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	stage, err := os.MkdirTemp("", "lkfleet-initramfs-")
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	defer os.RemoveAll(stage)
	var loadOrder []string
	files := map[string][]byte{
		"init":              []byte(initScript),
		"etc/udhcpc.script": []byte(udhcpcScript),
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	files["bin/busybox"] = bb
	for _, m := range mods {
		b, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		files["lib/modules/"+filepath.Base(m)] = b
		loadOrder = append(loadOrder, filepath.Base(m))
	}
	files["lib/modules/load-order"] = []byte(strings.Join(loadOrder, "\n") + "\n")
	names := []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp"}
	for _, d := range names {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	for name, b := range files {
		mode := os.FileMode(0o644)
		if name == "init" || name == "bin/busybox" || name == "etc/udhcpc.script" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(stage, name), b, mode); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var archive, stderr bytes.Buffer
	cmd := exec.Command("cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0")
	cmd.Dir = stage
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	cmd.Stdout, cmd.Stderr = &archive, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build initramfs: cpio: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(archive.Bytes()); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	if err := os.WriteFile(out, gz.Bytes(), 0o644); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	return nil
}
