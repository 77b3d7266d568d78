package packetsim

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// uuid is a 16-byte id, kept binary so 100,000 devices stay small.
type uuid [16]byte

// String formats u in the canonical 8-4-4-4-12 form.
func (u uuid) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// parseUUID accepts the canonical form (any case).
func parseUUID(s string) (uuid, bool) {
	var u uuid
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, false
	}
	return u, true
}

// nameID derives a stable version 5 style UUID from a name, for catalogue
// entries whose ids must not change between runs.
func nameID(name string) uuid {
	sum := sha1.Sum([]byte("lkfleet-packetsim:" + name))
	var u uuid
	copy(u[:], sum[:16])
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}

// timeFormat is RFC 3339 with milliseconds: clients compare event times
// with the time of their own actions, so whole seconds are too coarse.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// errorBody is the service's error document ({"errors": [...]}).
type errorBody struct {
	Errors []string `json:"errors"`
}

// writeJSON writes v with status; encoding errors cannot happen for the
// simulator's own types, so they only end the response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"errors":["internal error"]}`, http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func writeErr(w http.ResponseWriter, status int, msgs ...string) {
	writeJSON(w, status, errorBody{Errors: msgs})
}
