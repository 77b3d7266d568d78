package packet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
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
// device whose document lists no ports, or only their hrefs (a listing
// with exclude=network_ports), has a nil state.
func networkState(plan string, ports []packngo.Port, management, frozen bool) *network.State {
	if !slices.ContainsFunc(ports, func(p packngo.Port) bool { return p.ID != "" || p.Type != "" }) {
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

// DeviceNetwork reads one device's port state and metro (one GET): what
// each port step is computed from, so a conversion is idempotent.
func (c *Client) DeviceNetwork(ctx context.Context, id string) (network.State, string, error) {
	const op = "read ports of device"
	pc, release, err := c.api(ctx)
	defer release()
	if err != nil {
		return network.State{}, "", c.apiError(op, id, "", err, false)
	}
	// The metro names the VLANs' scope; ask for it whole, as the service
	// may otherwise answer with an href only.
	req, err := pc.NewRequest(http.MethodGet, "devices/"+url.PathEscape(id)+"?include=facility,metro", nil)
	if err != nil {
		return network.State{}, "", c.apiError(op, id, "", err, false)
	}
	var d listedDevice
	if _, err := pc.Do(req, &d); err != nil {
		return network.State{}, "", c.apiError(op, id, "", err, false)
	}
	s := d.network()
	if s == nil {
		return network.State{}, "", fmt.Errorf("%s %s: the device document lists no network_ports", op, id)
	}
	metro := ""
	switch {
	case d.Metro != nil && d.Metro.Code != "":
		metro = d.Metro.Code
	case d.Facility != nil && d.Facility.Metro != nil:
		metro = d.Facility.Metro.Code
	}
	if metro == "" {
		return network.State{}, "", fmt.Errorf("%s %s: the device document names no metro", op, id)
	}
	return *s, metro, nil
}

// layer3IPs are the addresses a port converted back to layer 3 asks for:
// public and private IPv4 and public IPv6, what it was provisioned with.
var layer3IPs = map[string]any{"request_ips": []map[string]any{
	{"address_family": 4, "public": true}, {"address_family": 4, "public": false}, {"address_family": 6, "public": true},
}}

// PortStep makes one port call. Requests take the form the API description
// gives (packngo sends some of them differently). Port calls act, so a
// failed one is not re-sent blindly: the caller reads the ports again and
// computes the next step (an IsIndeterminate error may have acted).
func (c *Client) PortStep(ctx context.Context, st network.Step) error {
	op := "port " + st.String()
	pc, release, err := c.api(withRetryClass(ctx, classOnce))
	defer release()
	if err != nil {
		return c.apiError(op, st.PortID, "", err, false)
	}
	method, body := http.MethodPost, any(nil)
	switch st.Op {
	case network.OpAssign, network.OpUnassign:
		body = map[string]string{"vnid": st.VLAN}
	case network.OpToLayer2:
		body = map[string]any{}
	case network.OpToLayer3:
		body = layer3IPs
	case network.OpClearNative:
		method = http.MethodDelete
	case network.OpBond, network.OpDisbond:
	default:
		return fmt.Errorf("%s: unknown port call", op)
	}
	req, err := pc.NewRequest(method, "ports/"+url.PathEscape(st.PortID)+"/"+string(st.Op), body)
	if err != nil {
		return c.apiError(op, st.PortID, "", err, false)
	}
	if _, err := pc.Do(req, nil); err != nil {
		return c.apiError(op, st.PortID, "", err, true)
	}
	return nil
}

type vnetJSON struct {
	ID          string   `json:"id"`
	VXLAN       int      `json:"vxlan"`
	MetroCode   string   `json:"metro_code"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	Metro       *struct {
		Code string `json:"code"`
	} `json:"metro"`
	Instances []json.RawMessage `json:"instances"`
}

func (v vnetJSON) toPlanner() planner.VirtualNetwork {
	m := v.MetroCode
	if m == "" && v.Metro != nil {
		m = v.Metro.Code
	}
	return planner.VirtualNetwork{ID: v.ID, VXLAN: v.VXLAN, Metro: m, Description: v.Description, Tags: v.Tags, Users: len(v.Instances)}
}

// VirtualNetworks lists the project's VLANs (one request).
func (c *Client) VirtualNetworks(ctx context.Context) ([]planner.VirtualNetwork, error) {
	const op = "list virtual networks"
	pc, release, err := c.api(ctx)
	defer release()
	if err != nil {
		return nil, c.apiError(op, "", "", err, false)
	}
	req, err := pc.NewRequest(http.MethodGet, "projects/"+url.PathEscape(c.project)+"/virtual-networks", nil)
	if err != nil {
		return nil, c.apiError(op, "", "", err, false)
	}
	var root struct {
		VirtualNetworks []vnetJSON `json:"virtual_networks"`
	}
	if _, err := pc.Do(req, &root); err != nil {
		return nil, c.apiError(op, "", "", err, false)
	}
	out := make([]planner.VirtualNetwork, 0, len(root.VirtualNetworks))
	for _, v := range root.VirtualNetworks {
		out = append(out, v.toPlanner())
	}
	return out, nil
}

// CreateVirtualNetwork creates a VLAN in a metro, tagged as the fleet's so
// that destroy knows it may delete it. A VLAN named by number is created
// with that VXLAN; one named by description gets the next free one.
func (c *Client) CreateVirtualNetwork(ctx context.Context, metro string, v spec.VLAN) (planner.VirtualNetwork, error) {
	op := "create virtual network " + v.String() + " in metro " + metro
	pc, release, err := c.api(withRetryClass(ctx, classOnce))
	defer release()
	if err != nil {
		return planner.VirtualNetwork{}, c.apiError(op, "", "", err, false)
	}
	in := map[string]any{"metro": metro, "tags": []string{spec.TagFleet + c.fleet}}
	if v.VXLAN != 0 {
		in["vxlan"] = v.VXLAN
	} else {
		in["description"] = v.Description
	}
	req, err := pc.NewRequest(http.MethodPost, "projects/"+url.PathEscape(c.project)+"/virtual-networks", in)
	if err != nil {
		return planner.VirtualNetwork{}, c.apiError(op, "", "", err, false)
	}
	var out vnetJSON
	if _, err := pc.Do(req, &out); err != nil {
		return planner.VirtualNetwork{}, c.apiError(op, "", "", err, true)
	}
	return out.toPlanner(), nil
}

// DeleteVirtualNetwork deletes a VLAN; one already gone is success. The
// service refuses (422) a VLAN a port still carries.
func (c *Client) DeleteVirtualNetwork(ctx context.Context, id string) error {
	const op = "delete virtual network"
	pc, release, err := c.api(ctx)
	defer release()
	if err != nil {
		return c.apiError(op, id, "", err, false)
	}
	req, err := pc.NewRequest(http.MethodDelete, "virtual-networks/"+url.PathEscape(id), nil)
	if err != nil {
		return c.apiError(op, id, "", err, false)
	}
	if _, err := pc.Do(req, nil); err != nil {
		if e := c.apiError(op, id, "", err, false); e.Status != http.StatusNotFound {
			return e
		}
	}
	return nil
}
