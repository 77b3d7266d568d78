package packetsim

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// sshKey is a public key registered in the project. Devices list them and
// their metadata carries them; the SOS console accepts them.
type sshKey struct {
	id      uuid
	label   string
	key     string // authorized_keys form: "TYPE BASE64 [comment]"
	tags    []string
	created time.Time
}

// sshKeyCollapsed: a key's entity (the project) is an href.
var sshKeyCollapsed = map[string]bool{"entity": true}

// parseAuthorizedKey checks a public key in authorized_keys form without
// an SSH library: the blob must be base64 and start with its own type.
func parseAuthorizedKey(s string) (typ string, blob []byte, err error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return "", nil, fmt.Errorf("key must be TYPE BASE64 [COMMENT]")
	}
	blob, err = base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(blob) < 4 {
		return "", nil, fmt.Errorf("key data is not base64")
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(len(blob)) < 4+uint64(n) || string(blob[4:4+n]) != f[0] {
		return "", nil, fmt.Errorf("key data does not hold a %s key", f[0])
	}
	return f[0], blob, nil
}

// fingerprint is the MD5 form the service shows ("aa:bb:...").
func fingerprint(key string) string {
	_, blob, err := parseAuthorizedKey(key)
	if err != nil {
		return ""
	}
	sum := md5.Sum(blob)
	h := hex.EncodeToString(sum[:])
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func (k *sshKey) doc(project string) map[string]any {
	id := k.id.String()
	tags := k.tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{
		"id": id, "label": k.label, "key": k.key, "fingerprint": fingerprint(k.key), "tags": tags,
		"created_at": fmtTime(k.created), "updated_at": fmtTime(k.created),
		"href": "/metal/v1/ssh-keys/" + id, "entity": map[string]any{"href": "/metal/v1/projects/" + project},
	}
}

// sshKeysJSON renders the project's keys, whole or as hrefs; the caller
// holds s.mu.
func (s *Sim) sshKeysJSON(full bool) json.RawMessage {
	if len(s.keys) == 0 {
		return emptyArray
	}
	out := make([]any, 0, len(s.keys))
	for _, k := range s.keys {
		if full {
			out = append(out, k.doc(s.project))
		} else {
			out = append(out, hrefJSON{"/metal/v1/ssh-keys/" + k.id.String()})
		}
	}
	return mustJSON(out)
}

// ProjectSSHKeys returns the public keys registered in a project
// (authorized_keys form), nil for an unknown project.
func (s *Sim) ProjectSSHKeys(projectID string) []string {
	if strings.ToLower(projectID) != s.project {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k.key)
	}
	return out
}

// listSSHKeys answers GET /projects/{id}/ssh-keys (query searches key,
// label and fingerprint).
func (s *Sim) listSSHKeys(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	q := r.URL.Query()
	search := q.Get("query")
	var items []any
	s.mu.RLock()
	for _, k := range s.keys {
		if search == "" || strings.Contains(k.key, search) || strings.Contains(k.label, search) || strings.Contains(fingerprint(k.key), search) {
			items = append(items, k.doc(s.project))
		}
	}
	s.mu.RUnlock()
	if items == nil {
		items = []any{}
	}
	sh := parseShaping(q, false)
	writeJSON(w, http.StatusOK, map[string]any{"ssh_keys": json.RawMessage(sh.shapeJSON(items, sshKeyCollapsed))})
}

// createSSHKey answers POST /projects/{id}/ssh-keys.
func (s *Sim) createSSHKey(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	var in struct {
		Label string   `json:"label"`
		Key   string   `json:"key"`
		Tags  []string `json:"tags"`
	}
	if !decodeBody(w, r, &in, true) {
		return
	}
	var errs []string
	if strings.TrimSpace(in.Key) == "" {
		errs = append(errs, "key can't be blank")
	} else if _, _, err := parseAuthorizedKey(in.Key); err != nil {
		errs = append(errs, "key is not a valid public key: "+err.Error())
	}
	if strings.TrimSpace(in.Label) == "" {
		errs = append(errs, "label can't be blank")
	}
	key := strings.TrimSpace(in.Key)
	s.mu.Lock()
	if slices.ContainsFunc(s.keys, func(k *sshKey) bool { return fingerprint(k.key) == fingerprint(key) }) && len(errs) == 0 {
		errs = append(errs, "key has already been taken")
	}
	if len(errs) > 0 {
		s.mu.Unlock()
		writeErr(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	k := &sshKey{id: s.newID(), label: in.Label, key: key, tags: slices.Clone(in.Tags), created: s.now()}
	s.keys = append(s.keys[:len(s.keys):len(s.keys)], k)
	doc := parseShaping(r.URL.Query(), false).shapeJSON(k.doc(s.project), sshKeyCollapsed)
	s.markDirty()
	s.mu.Unlock()
	if !s.saved(w) {
		return
	}
	writeRaw(w, http.StatusCreated, doc)
}
