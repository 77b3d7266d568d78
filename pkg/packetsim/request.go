package packetsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxBody bounds request bodies (userdata included).
const maxBody = 1 << 20

// decodeBody reads a JSON request body into v; false means a 422 was sent.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, required bool) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, "could not read request body: "+err.Error())
		return false
	}
	if len(b) > maxBody {
		writeErr(w, http.StatusUnprocessableEntity, "request body too large")
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if required {
			writeErr(w, http.StatusUnprocessableEntity, "request body is required")
			return false
		}
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeErr(w, http.StatusUnprocessableEntity, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// paging parses page and per_page like the service (422 when invalid).
func paging(w http.ResponseWriter, q url.Values) (page, perPage int, ok bool) {
	page, perPage = 1, 10
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			writeErr(w, http.StatusUnprocessableEntity, "page must be an integer between 1 and 100000")
			return 0, 0, false
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeErr(w, http.StatusUnprocessableEntity, "per_page must be an integer between 1 and 1000")
			return 0, 0, false
		}
		perPage = n
	}
	return page, perPage, true
}

// extraQuery keeps the request's parameters other than paging, raw and in
// order, for meta hrefs.
func extraQuery(raw string) string {
	var keep []string
	for _, kv := range strings.Split(raw, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if kv == "" || k == "page" || k == "per_page" {
			continue
		}
		keep = append(keep, kv)
	}
	return strings.Join(keep, "&")
}
