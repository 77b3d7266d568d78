package packet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// BenchmarkList10k lists a fleet of 10,000 devices (10 pages of 1,000)
// with iPXE userdata and a user state event each, as `lkfleet plan` does.
// The simulator runs in the same process: profile with -cpuprofile and
// focus on the client (e.g. pprof -focus 'packet\.').
func BenchmarkList10k(b *testing.B) {
	srv, err := packetsim.Start(packetsim.Config{Token: testToken, Project: testProject, Quiet: true})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	const n = 10000
	devs := make([]packetsim.SeedDevice, n)
	for i := range devs {
		slot := spec.SlotName("node", "ams1", i+1)
		devs[i] = packetsim.SeedDevice{
			Hostname:  fmt.Sprintf("node-ams1-%d", i+1),
			Tags:      []string{"bench", spec.TagFleet + "lab", spec.TagSlot + slot, spec.TagRev + "0123456789ab"},
			AlwaysPXE: true,
			Userdata:  "#!ipxe\ndhcp\nset base-url http://127.0.0.1:1/images/v1\nkernel ${base-url}/sshd-kernel ip=dhcp nomodeset ro serial console=ttyS1,115200 page_poison=1\ninitrd ${base-url}/sshd-initrd.img\nboot\n",
			UserState: packetsim.UserStateSucceeded,
		}
	}
	if _, err := srv.Sim.Seed(devs...); err != nil {
		b.Fatal(err)
	}
	c, err := New(Config{APIURL: srv.APIURL, Token: testToken, Project: testProject, Fleet: "lab"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		list func(context.Context) ([]planner.Live, error)
	}{{"List", c.List}, {"ListForPlan", c.ListForPlan}, {"ListStates", c.ListStates}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				live, err := bc.list(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(live) != n {
					b.Fatalf("listed %d devices, want %d", len(live), n)
				}
			}
		})
	}
}

// BenchmarkCreate sends one create per iteration to the in-process
// simulator, as apply does per device: the client's cost of one create
// exchange (request building, transport, answer decoding). Its allocs/op
// is the steady figure on a shared machine.
func BenchmarkCreate(b *testing.B) {
	srv, err := packetsim.Start(packetsim.Config{Token: testToken, Project: testProject, Quiet: true, ProvisionTime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c, err := New(Config{APIURL: srv.APIURL, Token: testToken, Project: testProject, Fleet: "lab"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Catalogue(ctx); err != nil {
		b.Fatal(err)
	}
	d := testDevice()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		d.Index, d.Hostname = i, fmt.Sprintf("web-ams1-%d", i)
		if _, err := c.Create(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
}
