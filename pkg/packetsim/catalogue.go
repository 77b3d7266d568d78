package packetsim

import (
	"encoding/json"
	"slices"
)

// metro is a metropolitan area holding facilities.
type metro struct {
	ID      uuid
	Code    string
	Name    string
	Country string
	json    json.RawMessage // pre-rendered Metro object
}

// facility is a data centre; it belongs to one metro.
type facility struct {
	ID    uuid
	Code  string
	Name  string
	Metro *metro
	json  json.RawMessage // pre-rendered Facility object
}

// plan is a machine type. Arch is "x86_64" or "arm64".
type plan struct {
	ID     uuid
	Slug   string
	Name   string
	Class  string
	Line   string
	Legacy bool
	Arch   string
	CPU    string
	CPUs   int
	Memory string
	Price  float64
	// Facilities lists the codes the plan is sold in.
	Facilities []string
	json       json.RawMessage // pre-rendered Plan object (GET /plans)
	devJSON    json.RawMessage // the lighter Plan object embedded in devices
}

// catalogue is the fixed set of metros, facilities and plans.
type catalogue struct {
	metros     []*metro
	facilities []*facility
	plans      []*plan
	metroBy    map[string]*metro
	facBy      map[string]*facility
	planBy     map[string]*plan
	osJSON     map[string]json.RawMessage
	osList     []json.RawMessage   // in catalogue order
	osOn       map[string][]string // plan slugs each OS is provisionable on
}

// capKey identifies one capacity pool: a facility and a plan.
type capKey struct{ fac, plan string }

func defaultCatalogue() *catalogue {
	c := &catalogue{metroBy: map[string]*metro{}, facBy: map[string]*facility{}, planBy: map[string]*plan{}, osJSON: map[string]json.RawMessage{}, osOn: map[string][]string{}}
	for _, m := range [][3]string{
		{"am", "Amsterdam", "NL"}, {"ny", "New York", "US"}, {"sv", "Silicon Valley", "US"},
		{"ty", "Tokyo", "JP"}, {"da", "Dallas", "US"}, {"fr", "Frankfurt", "DE"},
		{"sg", "Singapore", "SG"}, {"dc", "Washington DC", "US"}, {"ld", "London", "GB"},
		{"ch", "Chicago", "US"}, {"la", "Los Angeles", "US"}, {"sy", "Sydney", "AU"},
	} {
		mt := &metro{ID: nameID("metro:" + m[0]), Code: m[0], Name: m[1], Country: m[2]}
		mt.json = mustJSON(map[string]any{"href": "/metal/v1/locations/metros/" + mt.ID.String(), "id": mt.ID.String(), "code": mt.Code, "name": mt.Name, "country": mt.Country})
		c.metros = append(c.metros, mt)
		c.metroBy[mt.Code] = mt
	}
	for _, f := range [][3]string{
		{"ams1", "Amsterdam, NL", "am"}, {"am6", "Amsterdam 6, NL", "am"},
		{"ewr1", "Parsippany, NJ", "ny"}, {"ny5", "New York 5, NY", "ny"},
		{"sjc1", "Sunnyvale, CA", "sv"}, {"sv15", "Silicon Valley 15, CA", "sv"},
		{"nrt1", "Tokyo, JP", "ty"}, {"ty11", "Tokyo 11, JP", "ty"},
		{"dfw2", "Dallas 2, TX", "da"}, {"da11", "Dallas 11, TX", "da"},
		{"fra2", "Frankfurt 2, DE", "fr"}, {"fr2", "Frankfurt, DE", "fr"},
		{"sin3", "Singapore 3, SG", "sg"}, {"sg1", "Singapore 1, SG", "sg"},
		{"iad2", "Ashburn, VA", "dc"}, {"dc13", "Washington DC 13, VA", "dc"},
		{"ld7", "London 7, GB", "ld"}, {"ch3", "Chicago 3, IL", "ch"},
		{"la4", "Los Angeles 4, CA", "la"}, {"sy4", "Sydney 4, AU", "sy"},
	} {
		fc := &facility{ID: nameID("facility:" + f[0]), Code: f[0], Name: f[1], Metro: c.metroBy[f[2]]}
		fc.json = mustJSON(map[string]any{
			"href": "/metal/v1/facilities/" + fc.ID.String(), "id": fc.ID.String(), "code": fc.Code, "name": fc.Name,
			"features":  []string{"baremetal", "backend_transfer", "layer_2", "global_ipv4"},
			"ip_ranges": []string{"2001:db8::/32", "198.51.100.0/24", "203.0.113.0/24"},
			"metro":     json.RawMessage(fc.Metro.json),
		})
		c.facilities = append(c.facilities, fc)
		c.facBy[fc.Code] = fc
	}
	c.addPlans()
	c.addOperatingSystems()
	return c
}

// supports reports whether plan p is sold in facility code.
func (p *plan) supports(code string) bool { return slices.Contains(p.Facilities, code) }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// addPlans fills the plan catalogue; legacy plans are sold in the legacy
// facilities only.
func (c *catalogue) addPlans() {
	legacyFacs := []string{"ams1", "ewr1", "sjc1", "nrt1", "dfw2", "fra2", "sin3", "iad2"}
	var allFacs []string
	for _, f := range c.facilities {
		allFacs = append(allFacs, f.Code)
	}
	for _, p := range []plan{
		{Slug: "baremetal_0", Name: "Type 0", Class: "t1.small.x86", Line: "baremetal", Legacy: true, Arch: "x86_64", CPU: "Intel Atom C2550 @ 2.4Ghz", CPUs: 1, Memory: "8GB", Price: 0.07, Facilities: legacyFacs},
		{Slug: "baremetal_1", Name: "Type 1", Class: "c1.small.x86", Line: "baremetal", Legacy: true, Arch: "x86_64", CPU: "Intel E3-1240 v3", CPUs: 1, Memory: "32GB", Price: 0.4, Facilities: legacyFacs},
		{Slug: "baremetal_2", Name: "Type 2", Class: "m1.xlarge.x86", Line: "baremetal", Legacy: true, Arch: "x86_64", CPU: "Intel Xeon E5-2650 v4 @2.2GHz", CPUs: 2, Memory: "256GB", Price: 1.25, Facilities: legacyFacs},
		{Slug: "baremetal_2a", Name: "Type 2A", Class: "c1.large.arm", Line: "baremetal", Legacy: true, Arch: "arm64", CPU: "Cavium ThunderX CN8890 @2GHz (arm64)", CPUs: 2, Memory: "128GB", Price: 0.5, Facilities: legacyFacs},
		{Slug: "baremetal_3", Name: "Type 3", Class: "c1.xlarge.x86", Line: "baremetal", Legacy: true, Arch: "x86_64", CPU: "Intel E5-2640 v3", CPUs: 2, Memory: "128GB", Price: 1.75, Facilities: legacyFacs},
		{Slug: "c2.large.arm", Name: "c2.large.arm", Class: "c2.large.arm", Line: "baremetal", Legacy: true, Arch: "arm64", CPU: "Ampere eMAG 8180 @3.0GHz (arm64)", CPUs: 1, Memory: "128GB", Price: 1.0, Facilities: legacyFacs},
		{Slug: "c3.small.x86", Name: "c3.small.x86", Class: "c3.small.x86", Line: "baremetal", Arch: "x86_64", CPU: "Intel Xeon E-2278G @3.4GHz", CPUs: 1, Memory: "32GB", Price: 0.75, Facilities: allFacs},
		{Slug: "c3.medium.x86", Name: "c3.medium.x86", Class: "c3.medium.x86", Line: "baremetal", Arch: "x86_64", CPU: "AMD EPYC 7402P 24-Core Processor @ 2.8GHz", CPUs: 1, Memory: "64GB", Price: 1.5, Facilities: allFacs},
		{Slug: "m3.small.x86", Name: "m3.small.x86", Class: "m3.small.x86", Line: "baremetal", Arch: "x86_64", CPU: "Intel Xeon E-2378G @2.8GHz", CPUs: 1, Memory: "64GB", Price: 1.05, Facilities: allFacs},
		{Slug: "m3.large.x86", Name: "m3.large.x86", Class: "m3.large.x86", Line: "baremetal", Arch: "x86_64", CPU: "AMD EPYC 7502P 32-Core Processor @ 2.5GHz", CPUs: 1, Memory: "256GB", Price: 3.1, Facilities: allFacs},
		{Slug: "n3.xlarge.x86", Name: "n3.xlarge.x86", Class: "n3.xlarge.x86", Line: "baremetal", Arch: "x86_64", CPU: "Intel Xeon Gold 6314U @2.3GHz", CPUs: 2, Memory: "512GB", Price: 4.5, Facilities: allFacs},
		{Slug: "s3.xlarge.x86", Name: "s3.xlarge.x86", Class: "s3.xlarge.x86", Line: "baremetal", Arch: "x86_64", CPU: "Intel Xeon Silver 4214 @2.2GHz", CPUs: 2, Memory: "192GB", Price: 2.95, Facilities: allFacs},
		{Slug: "c3.large.arm64", Name: "c3.large.arm64", Class: "c3.large.arm64", Line: "baremetal", Arch: "arm64", CPU: "Ampere Altra Q80-30 80-core processor @ 2.8GHz (arm64)", CPUs: 1, Memory: "256GB", Price: 2.5, Facilities: allFacs},
	} {
		p.ID = nameID("plan:" + p.Slug)
		var in, inMetros []map[string]any
		seen := map[string]bool{}
		for _, code := range p.Facilities {
			f := c.facBy[code]
			in = append(in, map[string]any{"href": "/metal/v1/facilities/" + f.ID.String(), "price": map[string]any{"hour": p.Price}})
			if !seen[f.Metro.Code] {
				seen[f.Metro.Code] = true
				inMetros = append(inMetros, map[string]any{"href": "/metal/v1/locations/metros/" + f.Metro.ID.String(), "price": map[string]any{"hour": p.Price}})
			}
		}
		cats := []string{"compute", "current_gen"}
		if p.Legacy {
			cats = []string{"compute", "legacy_gen"}
		}
		p.json = mustJSON(map[string]any{
			"href": "/metal/v1/plans/" + p.ID.String(), "id": p.ID.String(), "slug": p.Slug, "name": p.Name, "class": p.Class, "line": p.Line,
			"legacy": false, "type": "standard", "categories": cats,
			"description":      p.Name + ": " + p.CPU + ", " + p.Memory + " RAM, arch " + p.Arch,
			"deployment_types": []string{"on_demand", "spot_market"},
			"pricing":          map[string]any{"hour": p.Price},
			"specs": map[string]any{
				"cpus":   []map[string]any{{"count": p.CPUs, "type": p.CPU}},
				"memory": map[string]any{"total": p.Memory},
				"drives": []map[string]any{{"count": 2, "size": "480GB", "type": "SSD", "category": "boot"}},
				"nics":   []map[string]any{{"count": planNICs(p.Slug), "type": "10Gbps"}},
			},
			"available_in":        in,
			"available_in_metros": inMetros,
		})
		p.devJSON = mustJSON(map[string]any{
			"href": "/metal/v1/plans/" + p.ID.String(), "id": p.ID.String(), "slug": p.Slug, "name": p.Name, "class": p.Class, "line": p.Line,
			"type": "standard", "categories": cats, "pricing": map[string]any{"hour": p.Price},
			"specs": map[string]any{"cpus": []map[string]any{{"count": p.CPUs, "type": p.CPU}}, "memory": map[string]any{"total": p.Memory}},
		})
		pp := p
		c.plans = append(c.plans, &pp)
		c.planBy[pp.Slug] = &pp
	}
}

// addOperatingSystems fills the operating system catalogue: custom_ipxe
// (the only one that boots here) on every plan, and a few real slugs.
// Images for arm64 plans exist for the current distributions only.
func (c *catalogue) addOperatingSystems() {
	var all, x86 []string
	for _, p := range c.plans {
		all = append(all, p.Slug)
		if p.Arch == "x86_64" {
			x86 = append(x86, p.Slug)
		}
	}
	for _, o := range []struct {
		slug, name, distro, version string
		on                          []string
	}{
		{"custom_ipxe", "Custom iPXE", "custom_ipxe", "1", all},
		{"ubuntu_22_04", "Ubuntu 22.04 LTS", "ubuntu", "22.04", all},
		{"ubuntu_24_04", "Ubuntu 24.04 LTS", "ubuntu", "24.04", all},
		{"debian_12", "Debian 12", "debian", "12", all},
		{"rocky_9", "Rocky Linux 9", "rocky", "9", x86},
		{"flatcar_stable", "Flatcar Container Linux (stable)", "flatcar", "stable", x86},
	} {
		doc := mustJSON(map[string]any{
			"href": "/metal/v1/operating-systems/" + o.slug, "id": nameID("os:" + o.slug).String(), "slug": o.slug, "name": o.name, "distro": o.distro,
			"distro_label": o.distro, "version": o.version, "provisionable_on": o.on,
			"preinstallable": false, "licensed": false, "pricing": map[string]any{},
			"default_operating_system": o.slug != "ubuntu_22_04" && o.distro == "ubuntu",
		})
		c.osJSON[o.slug] = doc
		c.osList = append(c.osList, doc)
		c.osOn[o.slug] = o.on
	}
}
