package packetsim

import (
	"encoding/json"
	"fmt"
)

// nic is one network interface of a device, as its metadata names it.
type nic struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
	Bond string `json:"bond"`
}

// deviceNICs lists a device's interfaces: every plan has two ports, eth0
// and eth1, bonded as bond0 (the service's default for two-port plans).
// MACs derive from the device id, so they are stable across restarts.
// Device ports (network_ports) must use the same names and MACs.
func deviceNICs(d *device) []nic {
	out := make([]nic, 2)
	for i := range out {
		out[i] = nic{
			Name: fmt.Sprintf("eth%d", i),
			// 0x02: a locally administered unicast address.
			MAC:  fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", d.id[0], d.id[1], d.id[2], d.id[3], d.id[4]&0xf0|byte(i)),
			Bond: "bond0",
		}
	}
	return out
}

// devicePorts is where a device document gets its network_ports (and
// nothing while it returns nil): the port and VLAN model lives in ports.go.
var devicePorts = func(d *device) json.RawMessage { return nil }
