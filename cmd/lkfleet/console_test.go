package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

func TestSOSArgs(t *testing.T) {
	const id = "3f782963-1da0-4787-a4b5-77a4d41bdf07"
	cases := []struct {
		sos, facility string
		want          []string
		err           string
	}{
		{"", "ams1", []string{"--", id + "@sos.ams1.platformequinix.com"}, ""},
		{"sos.ewr1.platformequinix.com", "ewr1", []string{"--", id + "@sos.ewr1.platformequinix.com"}, ""},
		{"127.0.0.1:2222", "ams1", []string{"-p", "2222", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "--", id + "@127.0.0.1"}, ""},
		{"[::1]:22", "ams1", []string{"-p", "22", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "--", id + "@[::1]"}, ""},
		{"me@sos.example.net", "ams1", []string{"--", "me@sos.example.net"}, ""},
		{"-oProxyCommand=evil", "ams1", nil, "not a valid host name"},
		{"-l@x", "ams1", nil, "not a valid user name"},
		{"host:0", "ams1", nil, "not a valid port"},
		{"a b", "ams1", nil, "not a valid host name"},
	}
	for _, tc := range cases {
		got, err := sosArgs(planner.Live{ID: id, SOS: tc.sos, Facility: tc.facility})
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("sosArgs(%q) = %q, %v; want error %q", tc.sos, got, err, tc.err)
		case tc.err == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("sosArgs(%q) = %q, %v; want %q", tc.sos, got, err, tc.want)
		}
	}
}

func TestSSHEnvKeepsTheTokenOut(t *testing.T) {
	env := &Env{Getenv: func(k string) string {
		return map[string]string{"PATH": "/bin", "HOME": "/root", "PACKET_AUTH_TOKEN": "secret", "SSH_AUTH_SOCK": "/tmp/a"}[k]
	}}
	got := sshEnv(env)
	if want := []string{"PATH=/bin", "HOME=/root", "SSH_AUTH_SOCK=/tmp/a"}; !slices.Equal(got, want) {
		t.Fatalf("sshEnv = %q, want %q", got, want)
	}
}
