package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// simStatus sends GET /projects/{id} with token and returns the status.
func simStatus(t *testing.T, vars map[string]string, token string) int {
	t.Helper()
	req, err := http.NewRequest("GET", vars["PACKET_API_URL"]+"projects/"+vars["PACKET_PROJECT_ID"], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSimTokenFromEnvironmentOrFile: the token need not be on the command
// line (where ps shows it); a token given either way is never printed.
func TestSimTokenFromEnvironmentOrFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("file-token-123\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		vars  map[string]string
		args  []string
		token string
	}{
		{"environment", map[string]string{simTokenEnv: "env-token-456"}, nil, "env-token-456"},
		{"file", map[string]string{simTokenEnv: "env-token-456"}, []string{"--token-file", file}, "file-token-123"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _, stop := startSimCLIEnv(t, c.vars, append([]string{"--quiet", "--rate-limit", "0"}, c.args...)...)
			vars := simVars(out.String())
			if _, printed := vars["PACKET_AUTH_TOKEN"]; printed || strings.Contains(out.String(), c.token) {
				t.Fatalf("the given token was printed:\n%s", out)
			}
			if got := simStatus(t, vars, c.token); got != 200 {
				t.Errorf("the %s token answers %d, want 200", c.name, got)
			}
			if got := simStatus(t, vars, "something-else"); got != 401 {
				t.Errorf("another token answers %d, want 401", got)
			}
			if code := stop(); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, args := range [][]string{{"--token-file", empty}, {"--token-file", filepath.Join(t.TempDir(), "none")}, {"--token", "x", "--token-file", file}} {
		_, errs, code := runCLI(t, nil, append([]string{"sim", "--listen", "127.0.0.1:0"}, args...)...)
		if code == 0 || !strings.Contains(errs, "--token") {
			t.Errorf("sim %v: exit %d, stderr %q; want a clear refusal", args, code, errs)
		}
	}
}
