package packetsim_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// seedFleet puts n fleet devices into the simulator.
func seedFleet(t testing.TB, sim *packetsim.Sim, n int) {
	t.Helper()
	devs := make([]packetsim.SeedDevice, n)
	for i := range devs {
		devs[i] = packetsim.SeedDevice{
			Hostname:  fmt.Sprintf("web-ams1-%d", i+1),
			Tags:      []string{"lkfleet:fleet=lab", fmt.Sprintf("lkfleet:slot=web/ams1/%d", i+1), "lkfleet:rev=0123456789ab"},
			AlwaysPXE: true, IPXEScriptURL: "http://127.0.0.1:8080/scripts/web.ipxe", UserState: packetsim.UserStateSucceeded,
		}
	}
	if _, err := sim.Seed(devs...); err != nil {
		t.Fatal(err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestMemory100k checks the simulator holds 100,000 devices in well under
// 300 MiB.
func TestMemory100k(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 100,000 devices")
	}
	before := heapInUse()
	sim := packetsim.New(packetsim.Config{})
	defer sim.Close()
	seedFleet(t, sim, 100000)
	used := heapInUse() - before
	t.Logf("100,000 devices: %.1f MiB of heap", float64(used)/(1<<20))
	if used > 300<<20 {
		t.Fatalf("100,000 devices use %d MiB, want < 300", used>>20)
	}
	runtime.KeepAlive(sim)
}

// BenchmarkList10k lists 10,000 devices in 10 pages: in full, as plan
// lists them (no addresses) and as waiting lists them (only states). The
// lighter listings must not cost the simulator more than the full one.
func BenchmarkList10k(b *testing.B) {
	srv, err := packetsim.Start(packetsim.Config{Token: testToken, Project: testProject})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	seedFleet(b, srv.Sim, 10000)
	for _, bc := range []struct{ name, query string }{
		{"full", "include=facility"},
		{"plan", "include=facility&exclude=ip_addresses,operating_system,project,project_lite"},
		{"states", "exclude=ip_addresses,plan,facility,metro,operating_system,project,project_lite"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				for page := 1; page <= 10; page++ {
					req, _ := http.NewRequest("GET", fmt.Sprintf("%sprojects/%s/devices?tag=lkfleet:fleet=lab&page=%d&per_page=1000&%s", srv.APIURL, testProject, page, bc.query), nil)
					req.Header.Set("X-Auth-Token", testToken)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n < 1000 {
						b.Fatalf("page %d: %d (%d bytes)", page, resp.StatusCode, n)
					}
				}
			}
		})
	}
}

// BenchmarkCreate creates devices over HTTP from 8 concurrent clients.
func BenchmarkCreate(b *testing.B) {
	srv, err := packetsim.Start(packetsim.Config{Token: testToken, Project: testProject, ProvisionTime: 1 << 62})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	body := `{"plan":"baremetal_0","facility":"ams1","operating_system":"custom_ipxe","tags":["lkfleet:fleet=lab"],"ipxe_script_url":"http://127.0.0.1:1/x.ipxe","always_pxe":true}`
	url := srv.APIURL + "projects/" + testProject + "/devices"
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header.Set("X-Auth-Token", testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				b.Fatalf("create: %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}
