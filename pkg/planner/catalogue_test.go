package planner

import (
	"testing"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

func testCatalogue() Catalogue {
	return Catalogue{
		Plans: map[string]PlanInfo{
			"c3.small.x86":  {Arch: "x86_64", Locations: []string{"am", "ny"}},
			"m3.large.x86":  {Arch: "amd64"},
			"c3.large.arm":  {Arch: "arm64"},
			"baremetal_2a":  {Arch: "aarch64"},
			"n3.xlarge.x86": {Arch: "x86_64", Locations: []string{"sjc1"}},
		},
		Facilities: map[string]string{"ams1": "am", "ewr1": "ny", "sjc1": "sv"},
		Metros:     map[string]bool{"am": true, "ny": true, "sv": true},
	}
}

func TestCheckCatalogue(t *testing.T) {
	f := testFleet()
	withMachine := func(m string, slots ...string) []spec.Device {
		ds := desiredOf(f)
		for i := range ds {
			for _, s := range slots {
				if ds[i].Slot == s {
					ds[i].Machine = m
				}
			}
		}
		return ds
	}
	cases := []struct {
		name    string
		desired []spec.Device
		cat     Catalogue
		want    string
	}{
		{"all known", desiredOf(f), testCatalogue(), ""},
		{"typo in a machine type", withMachine("c3.smal.x86", "web/ams1/1", "web/ewr1/2"), testCatalogue(),
			`check machine type "c3.smal.x86" (slot web/ams1/1 and 1 more): unknown machine type; did you mean "c3.small.x86"?`},
		{"nothing close", withMachine("gpu.monster", "db/ams1/1"), testCatalogue(),
			`check machine type "gpu.monster" (slot db/ams1/1): unknown machine type; known machine types: baremetal_2a, c3.large.arm, c3.small.x86, m3.large.x86, n3.xlarge.x86`},
		{"typo in a zone, and a machine", func() []spec.Device {
			ds := withMachine("m3.large.x68", "db/ams1/1")
			ds[0].Zone = "amz1"
			return ds
		}(), testCatalogue(),
			`check machine type "m3.large.x68" (slot db/ams1/1): unknown machine type; did you mean "m3.large.x86"?` + "\n" +
				`check zone "amz1" (slot web/ams1/1): unknown facility or metro; did you mean "ams1"?`},
		{"metro zones are known", func() []spec.Device {
			ds := desiredOf(f)
			ds[0].Zone = "am"
			return ds
		}(), testCatalogue(), ""},
		{"architecture mismatch", func() []spec.Device {
			ds := withMachine("c3.large.arm", "db/ams1/1")
			return ds
		}(), testCatalogue(),
			`check machine type "c3.large.arm" (slot db/ams1/1): it is aarch64 but the image is built for x86_64`},
		{"not offered in the zone (facility of a listed metro is fine)", withMachine("n3.xlarge.x86", "db/ams1/1"), testCatalogue(),
			`check machine type "n3.xlarge.x86" (slot db/ams1/1): not offered in "ams1"; offered in sjc1`},
		{"unknown parts are not checked", withMachine("whatever", "db/ams1/1"), Catalogue{}, ""},
		{"empty catalogue of plans", withMachine("whatever", "db/ams1/1"), Catalogue{Plans: map[string]PlanInfo{}},
			`check machine type "c3.small.x86" (slot web/ams1/1 and 3 more): unknown machine type; the catalogue lists no machine types` + "\n" +
				`check machine type "whatever" (slot db/ams1/1): unknown machine type; the catalogue lists no machine types`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCatalogue(tc.desired, tc.cat)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
