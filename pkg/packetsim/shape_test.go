package packetsim

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
)

func TestShaping(t *testing.T) {
	doc := `{"href":"/d/1","project":{"href":"/p/1","id":"p1","organization":{"href":"/o/1","id":"o1"}},` +
		`"ip_addresses":[{"href":"/ip/1","address":"a"},{"href":"/ip/2","address":"b"}],"plan":{"href":"/pl/1","slug":"s"},"tags":["x"]}`
	collapsed := map[string]bool{"project": true, "project.organization": true}
	for _, c := range []struct{ query, want string }{
		{"", `{"href":"/d/1","ip_addresses":[{"address":"a","href":"/ip/1"},{"address":"b","href":"/ip/2"}],"plan":{"href":"/pl/1","slug":"s"},"project":{"href":"/p/1"},"tags":["x"]}`},
		{"include=project", `{"href":"/d/1","ip_addresses":[{"address":"a","href":"/ip/1"},{"address":"b","href":"/ip/2"}],"plan":{"href":"/pl/1","slug":"s"},"project":{"href":"/p/1","id":"p1","organization":{"href":"/o/1"}},"tags":["x"]}`},
		// A dotted include brings its parents whole too.
		{"include=project.organization", `{"href":"/d/1","ip_addresses":[{"address":"a","href":"/ip/1"},{"address":"b","href":"/ip/2"}],"plan":{"href":"/pl/1","slug":"s"},"project":{"href":"/p/1","id":"p1","organization":{"href":"/o/1","id":"o1"}},"tags":["x"]}`},
		{"exclude=ip_addresses,plan&include=project", `{"href":"/d/1","ip_addresses":[{"href":"/ip/1"},{"href":"/ip/2"}],"plan":{"href":"/pl/1"},"project":{"href":"/p/1","id":"p1","organization":{"href":"/o/1"}},"tags":["x"]}`},
		// Repeated parameters add up; names over three levels are ignored; plain values cannot be excluded.
		{"include=project&include=a.b.c.d&exclude=tags", `{"href":"/d/1","ip_addresses":[{"address":"a","href":"/ip/1"},{"address":"b","href":"/ip/2"}],"plan":{"href":"/pl/1","slug":"s"},"project":{"href":"/p/1","id":"p1","organization":{"href":"/o/1"}},"tags":["x"]}`},
	} {
		q, _ := url.ParseQuery(c.query)
		sh := parseShaping(q, true)
		if got := string(sh.shapeRaw([]byte(doc), collapsed)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.query, got, c.want)
		}
	}
	q, _ := url.ParseQuery("include=facility,plan")
	if !parseShaping(q, true).trivial(deviceCollapsed) {
		t.Errorf("include=facility,plan needs no reshaping of a device")
	}
	q, _ = url.ParseQuery("include=project")
	if parseShaping(q, true).trivial(deviceCollapsed) {
		t.Errorf("include=project was taken as trivial")
	}
	q, _ = url.ParseQuery("exclude=ip_addresses")
	if parseShaping(q, false).exclude != nil {
		t.Errorf("exclude was read on a route that does not take it")
	}
}

// TestExcludeFastPathMatchesShape: a device shaped field by field
// (appendExcluded, the listings' fast path) is the document the generic
// walk (shapeRaw) makes, for exclusions of every kind of attribute.
func TestExcludeFastPathMatchesShape(t *testing.T) {
	s := New(Config{})
	if _, err := s.Seed(SeedDevice{Hostname: "a", Tags: []string{"x"}, UserState: UserStateSucceeded}); err != nil {
		t.Fatal(err)
	}
	s.keys = append(s.keys, &sshKey{id: s.newID(), label: "k", key: "ssh-ed25519 AAAA k", created: s.now()})
	now := s.now()
	d := s.order[0]
	for _, query := range []string{
		"exclude=ip_addresses",
		"exclude=ip_addresses,operating_system,project,project_lite&include=facility",
		"exclude=ip_addresses,plan,facility,metro,operating_system,project,project_lite",
		"exclude=provisioning_events,ssh_keys,customdata,actions,tags,unknown",
		"exclude=network_ports,network_frozen,bonding_mode",
		"exclude=plan&exclude=facility&include=plan",
	} {
		q, _ := url.ParseQuery(query)
		sh := parseShaping(q, true)
		if !sh.flat(deviceCollapsed) {
			t.Errorf("%s: not taken as flat", query)
			continue
		}
		fast := s.appendDevice(nil, d, now, sh)
		j := s.render(d, now)
		j.Project, j.ProjectLite, j.SSHKeys = s.projectFullJSON(), s.projectLiteJSON(), s.sshKeysJSON(true)
		doc, _ := j.appendJSON(nil)
		var got, want any
		if err := json.Unmarshal(fast, &got); err != nil {
			t.Fatalf("%s: %v\n%s", query, err, fast)
		}
		if err := json.Unmarshal(sh.shapeRaw(doc, deviceCollapsed), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n fast %s\nshape %s", query, fast, sh.shapeRaw(doc, deviceCollapsed))
		}
	}
	for _, query := range []string{"exclude=ip_addresses.assigned_to", "exclude=plan&include=project"} {
		q, _ := url.ParseQuery(query)
		if parseShaping(q, true).flat(deviceCollapsed) {
			t.Errorf("%s taken as flat: it needs the walk", query)
		}
	}
}
