package packetsim

// nic is one network interface of a device, as its metadata names it.
// Bond is "bond0" while the port is a member of the bond and null once it
// left it (hybrid, layer2-individual): that is how an image tells the
// network types apart.
type nic struct {
	Name string  `json:"name"`
	MAC  string  `json:"mac"`
	Bond *string `json:"bond"`
}

// deviceNICs lists a device's physical interfaces from its port state
// (ports.go): eth0, eth1, ... as many as its plan has ports, in bond0 as
// provisioned. The device document's network_ports carry the same names
// and MACs.
func deviceNICs(d *device) []nic {
	ns := netView(d)
	bond := "bond0"
	out := make([]nic, 0, len(ns.ports)-1)
	for i := 1; i < len(ns.ports); i++ {
		n := nic{Name: portName(i), MAC: nicMAC(d.id, i-1)}
		if ns.ports[i].bonded {
			n.Bond = &bond
		}
		out = append(out, n)
	}
	return out
}

// nicMAC is the MAC address of a device's physical port i (eth<i>). It
// derives from the device id, so it is stable across restarts; 0x02 makes
// it a locally administered unicast address. Built without fmt: listings
// render it for every port of every device.
func nicMAC(dev uuid, i int) string {
	const hex = "0123456789abcdef"
	b := []byte("02:00:00:00:00:00")
	for k, x := range []byte{dev[0], dev[1], dev[2], dev[3], dev[4]&0xf0 | byte(i)} {
		b[3+3*k], b[4+3*k] = hex[x>>4], hex[x&15]
	}
	return string(b)
}

// metadataNetwork is the port part of a device's metadata (for the
// metadata service): bonding.mode, how bond0 aggregates its links now
// ("bonded" with every port in it, "individual" with none, "mixed"
// otherwise), and every physical port (deviceNICs). The caller holds s.mu.
func (s *Sim) metadataNetwork(d *device) (bondingMode int, linkAggregation string, ifaces []nic) {
	ifaces = deviceNICs(d)
	in := 0
	for _, n := range ifaces {
		if n.Bond != nil {
			in++
		}
	}
	switch in {
	case len(ifaces):
		linkAggregation = "bonded"
	case 0:
		linkAggregation = "individual"
	default:
		linkAggregation = "mixed"
	}
	return 4, linkAggregation, ifaces
}
