package harness

import "strings"

// networkKeys are the worker group's extra keys for Lab.NetworkType: a
// plan whose network can change, the type, and one VLAN when it carries
// VLANs.
func (l *Lab) networkKeys() string {
	if l.NetworkType == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n    machine: c3.small.x86\n    network_type: " + l.NetworkType)
	if l.NetworkType != "layer3" {
		b.WriteString("\n    vlans: [1001]")
	}
	return b.String()
}
