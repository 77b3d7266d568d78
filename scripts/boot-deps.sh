#!/bin/sh
# boot-deps.sh [CACHE_DIR] — install what the real-boot test needs, only when
# it is missing: the Debian packages ipxe, qemu-system-x86, busybox-static,
# cpio and openssh-client (the console test), and a Debian x86-64 kernel
# with its modules, extracted (not installed) under CACHE_DIR (default .cache/boot) so the host's own kernel
# and boot loader are never touched.
#
# Exit status: 0 ready; 77 cannot install here (not root, or no apt-get) and
# something is missing; anything else is a real failure.
set -eu

cache=${1:-.cache/boot}
need=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
[ -f /usr/lib/ipxe/ipxe.lkrn ] || [ -f /usr/share/ipxe/ipxe.lkrn ] || need="$need ipxe"
[ -x /bin/busybox ] && file_is_static=$(ldd /bin/busybox 2>&1 | grep -c 'not a dynamic' || true) || file_is_static=0
[ "$file_is_static" = 1 ] || need="$need busybox-static"
command -v cpio >/dev/null 2>&1 || need="$need cpio"
command -v ssh >/dev/null 2>&1 || need="$need openssh-client"
kernel_ready() { ls "$cache"/kernel/boot/vmlinuz-* >/dev/null 2>&1; }

if [ -z "$need" ] && kernel_ready; then
	echo "boot-deps: everything present (kernel in $cache/kernel)"
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	kernel_ready || need="$need kernel(linux-image-amd64, unpacked into $cache)"
	echo "boot-deps: missing:$need — run as root on Debian/Ubuntu (apt-get) to install them" >&2
	exit 77
fi

export DEBIAN_FRONTEND=noninteractive
if [ -n "$need" ] || ! kernel_ready; then
	# Package lists may be absent in a fresh container.
	apt-get update -qq
fi
if [ -n "$need" ]; then
	echo "boot-deps: installing$need"
	# shellcheck disable=SC2086 # word splitting is wanted
	apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

if ! kernel_ready; then
	# linux-image-amd64 is a metapackage: download the versioned image it
	# depends on and unpack it without installing it.
	pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[^ ]*-amd64\)$/\1/p' | head -1)
	if [ -z "$pkg" ]; then
		echo "boot-deps: cannot find the kernel package linux-image-amd64 depends on" >&2
		exit 1
	fi
	echo "boot-deps: extracting $pkg into $cache/kernel"
	mkdir -p "$cache/deb"
	rm -rf "$cache/kernel.tmp"
	(cd "$cache/deb" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
	dpkg-deb -x "$cache"/deb/"$pkg"_*.deb "$cache/kernel.tmp"
	rm -rf "$cache/kernel"
	mv "$cache/kernel.tmp" "$cache/kernel"
	rm -f "$cache"/deb/*.deb
fi
kernel_ready || { echo "boot-deps: no vmlinuz under $cache/kernel/boot" >&2; exit 1; }
echo "boot-deps: ready"
