package packet

import (
	"path"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/network"
)

// nicsOf is a plan's count of network ports from its specs, 0 if unknown.
func nicsOf(nics []struct {
	Count int `json:"count"`
}) int {
	n := 0
	for _, x := range nics {
		n += x.Count
	}
	return n
}

// networkState reduces a device's ports to what pkg/network derives the
// network type from. VLANs are named by their virtual network id (the
// last element of the href when the port does not carry the object). A
// device whose document lists no ports has a nil state.
func networkState(plan string, ports []packngo.Port, management, frozen bool) *network.State {
	if len(ports) == 0 {
		return nil
	}
	s := &network.State{Plan: plan, Frozen: frozen, ManagementIPs: management}
	for _, p := range ports {
		np := network.Port{
			ID: p.ID, Name: p.Name, IsBond: p.Type == network.PortTypeBond, Bonded: p.Data.Bonded,
			NetworkType: p.NetworkType,
		}
		if p.Bond != nil {
			np.BondName = p.Bond.Name
		}
		for _, v := range p.AttachedVirtualNetworks {
			np.VLANs = append(np.VLANs, vnetID(v))
		}
		if p.NativeVirtualNetwork != nil {
			np.Native = vnetID(*p.NativeVirtualNetwork)
		}
		s.Ports = append(s.Ports, np)
	}
	return s
}

func vnetID(v packngo.VirtualNetwork) string {
	if v.ID != "" {
		return v.ID
	}
	return path.Base(v.Href)
}

// network is the listed device's port state (nil without ports).
func (d *listedDevice) network() *network.State {
	mgmt := false
	for _, ip := range d.Network {
		mgmt = mgmt || ip.Management
	}
	slug := ""
	if d.Plan != nil {
		slug = d.Plan.Slug
	}
	return networkState(slug, d.NetworkPorts, mgmt, d.NetworkFrozen)
}
