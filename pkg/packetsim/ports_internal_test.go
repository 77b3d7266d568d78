package packetsim

import (
	"strings"
	"testing"
)

// The metadata's interfaces follow the ports: a port out of the bond has
// bond null, and MACs match the device document's.
func TestMetadataNetwork(t *testing.T) {
	s := New(Config{Quiet: true})
	defer s.Close()
	ids, err := s.Seed(SeedDevice{Plan: "c3.small.x86"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := parseUUID(ids[0])
	s.mu.Lock()
	d := s.devs[u]
	netFor(d).ports[2].bonded = false
	mode, agg, ifs := s.metadataNetwork(d)
	j := s.render(d, s.now())
	doc := s.metadataDoc(d, "http://meta", false, s.now())
	s.mu.Unlock()
	// The metadata service's document carries the same port state.
	netDoc := doc["network"].(map[string]any)
	if b := netDoc["bonding"].(map[string]any); b["mode"] != 4 || b["link_aggregation"] != "mixed" {
		t.Errorf("metadata bonding %v", b)
	}
	if got := netDoc["interfaces"].([]nic); len(got) != 2 || got[1].Bond != nil || got[0].MAC != ifs[0].MAC {
		t.Errorf("metadata interfaces %+v, want %+v", got, ifs)
	}
	if mode != 4 || agg != "mixed" || len(ifs) != 2 || ifs[0].Bond == nil || *ifs[0].Bond != "bond0" || ifs[1].Bond != nil {
		t.Fatalf("metadata network: mode %d %+v", mode, ifs)
	}
	for i, m := range ifs {
		if p := j.NetworkPorts[i+1]; p.Data.MAC != m.MAC || p.Name != m.Name || !strings.HasPrefix(m.MAC, "02:") || len(m.MAC) != 17 {
			t.Errorf("interface %+v, port %+v", m, p)
		}
	}
}
