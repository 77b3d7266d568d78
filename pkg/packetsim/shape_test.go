package packetsim

import (
	"net/url"
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
