package packetsim

import (
	"errors"
	"fmt"
	"strings"
)

// BootSpec is what an iPXE script asks the machine to boot.
type BootSpec struct {
	// Kernel is the URL given to kernel (or imgexec); Args its arguments.
	Kernel string
	Args   string
	// Initrds are the initrd (or module) images in script order.
	Initrds []Initrd
	// Chain is the URL given to chain when the script chainloads instead
	// of booting a kernel itself; Args then holds the chain arguments.
	Chain string
	// Echoes are the expanded echo lines, in order.
	Echoes []string
	// Vars holds the variables set when the script finished.
	Vars map[string]string
}

// Initrd is one initrd image of a boot.
type Initrd struct {
	URL  string
	Name string // from --name / -n ("" if not given)
}

// Interpret runs an iPXE script the way the machine's iPXE would, as far as
// a boot depends on it: the #!ipxe header, comments, labels, dhcp (and the
// other network commands, which succeed), set, ${var} expansion (undefined
// variables expand to ""), echo, kernel/imgexec, initrd/module with
// --name, chain, boot, and `|| ...` / `&& ...` suffixes (commands succeed,
// so `||` tails are skipped). It fails on a missing header, an unknown
// command, a kernel or initrd without URL, boot without kernel, and a
// script that ends without booting.
func Interpret(script string) (*BootSpec, error) {
	lines := strings.Split(strings.ReplaceAll(script, "\r\n", "\n"), "\n")
	first := 0
	for first < len(lines) && strings.TrimSpace(lines[first]) == "" {
		first++
	}
	if first == len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[first]), "#!ipxe") {
		return nil, errors.New("script does not start with #!ipxe")
	}
	spec := &BootSpec{Vars: map[string]string{}}
	for i := first + 1; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ":") {
			continue
		}
		line, _, _ = strings.Cut(line, "||")
		line = strings.TrimSpace(line)
		if before, after, ok := strings.Cut(line, "&&"); ok {
			// Both sides run; handle the first now and the rest as a
			// following line.
			line = strings.TrimSpace(before)
			lines = append(lines[:i+1], append([]string{after}, lines[i+1:]...)...)
		}
		expanded := expandVars(line, spec.Vars)
		if len(expanded) > maxExpanded {
			return nil, fmt.Errorf("line %d: longer than %d bytes after expanding variables", n, maxExpanded)
		}
		fields := strings.Fields(expanded)
		if len(fields) == 0 {
			continue
		}
		cmd, args := fields[0], fields[1:]
		switch cmd {
		case "dhcp", "ifconf", "ifopen", "ifstat", "route", "sync", "sleep", "prompt", "imgfree", "ntp", "cpuid", "isset", "iseq":
			if cmd == "dhcp" || cmd == "ifconf" {
				spec.Vars["ip"] = "192.0.2.10"
				spec.Vars["netmask"] = "255.255.255.0"
				spec.Vars["gateway"] = "192.0.2.1"
			}
		case "set":
			if len(args) == 0 {
				return nil, fmt.Errorf("line %d: set needs a variable name", n)
			}
			name := args[0]
			// The value is the rest of the line, spacing kept.
			rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(expanded, "set")), name))
			spec.Vars[name] = rest
		case "clear":
			if len(args) > 0 {
				delete(spec.Vars, args[0])
			}
		case "echo":
			msg := strings.TrimSpace(strings.TrimPrefix(expanded, "echo"))
			msg = strings.TrimSpace(strings.TrimPrefix(msg, "-n"))
			spec.Echoes = append(spec.Echoes, msg)
		case "kernel", "imgexec", "initrd", "module", "chain", "imgfetch", "imgload", "imgselect":
			name, rest, err := imageArgs(args)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %v", n, cmd, err)
			}
			url, imgArgs := rest[0], strings.Join(rest[1:], " ")
			switch cmd {
			case "kernel", "imgselect", "imgload":
				spec.Kernel, spec.Args = url, imgArgs
			case "imgexec":
				spec.Kernel, spec.Args = url, imgArgs
				return spec, nil
			case "initrd", "module", "imgfetch":
				spec.Initrds = append(spec.Initrds, Initrd{URL: url, Name: name})
			case "chain":
				spec.Chain, spec.Args = url, imgArgs
				return spec, nil
			}
		case "imgargs":
			if len(args) == 0 {
				return nil, fmt.Errorf("line %d: imgargs needs an image", n)
			}
			spec.Args = strings.Join(args[1:], " ")
		case "boot":
			if spec.Kernel == "" {
				return nil, fmt.Errorf("line %d: boot without a kernel", n)
			}
			return spec, nil
		case "exit", "shell", "goto", "reboot", "poweroff":
			return nil, fmt.Errorf("line %d: %s before booting a kernel", n, cmd)
		default:
			return nil, fmt.Errorf("line %d: unknown command %q", n, cmd)
		}
	}
	if spec.Kernel != "" {
		return nil, errors.New("script ends without boot")
	}
	return nil, errors.New("script ends without booting a kernel")
}

// imageArgs splits [options] URL [args...] and returns the --name value.
func imageArgs(args []string) (name string, rest []string, err error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opt := args[0]
		args = args[1:]
		switch {
		case opt == "--name" || opt == "-n" || opt == "--timeout" || opt == "-t":
			if len(args) == 0 {
				return "", nil, fmt.Errorf("option %s needs a value", opt)
			}
			if opt == "--name" || opt == "-n" {
				name = args[0]
			}
			args = args[1:]
		case strings.HasPrefix(opt, "--name="):
			name = strings.TrimPrefix(opt, "--name=")
		case opt == "--autofree" || opt == "-a" || opt == "--replace" || opt == "-r":
		default:
			return "", nil, fmt.Errorf("unknown option %s", opt)
		}
	}
	if len(args) == 0 {
		return "", nil, errors.New("missing image URL")
	}
	return name, args, nil
}

// maxExpanded bounds a line after variable expansion. A script that
// doubles a variable line after line (set x ${x}${x}) would otherwise
// grow it exponentially and exhaust the simulator's memory; real iPXE
// runs out of its own small heap long before this.
const maxExpanded = 64 << 10

// expandVars replaces ${name} and ${name:type} with their values. It stops
// early once the result exceeds maxExpanded (the caller rejects the line).
func expandVars(line string, vars map[string]string) string {
	if !strings.Contains(line, "${") {
		return line
	}
	var b strings.Builder
	for {
		i := strings.Index(line, "${")
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		j := strings.IndexByte(line[i:], '}')
		if j < 0 {
			b.WriteString(line)
			return b.String()
		}
		b.WriteString(line[:i])
		name, _, _ := strings.Cut(line[i+2:i+j], ":")
		b.WriteString(vars[name])
		if b.Len() > maxExpanded {
			return b.String()
		}
		line = line[i+j+1:]
	}
}
