package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
)

// LiveFingerprint identifies the live fleet a plan was computed from: a
// sha256 over every device's (id, state, rev, slot, pending marker if
// any), sorted, so the order of a listing does not matter. Devices being deleted are left out, as Compute
// ignores them too: one vanishing between plan and apply changes nothing.
// apply FILE recomputes it from a fresh listing and refuses a difference.
func LiveFingerprint(live []Live) string {
	rows := make([]string, 0, len(live))
	for _, l := range live {
		if Ignored(l.State) {
			continue
		}
		// NUL cannot occur in these API strings, so rows cannot collide.
		row := []string{l.ID, l.State, l.Rev(), l.Slot()}
		if p := l.Pending(); p != "" {
			// A rebuild's PUT may change only the marker (the rev tag of an
			// unfinished rebuild already names the new rev); devices without
			// one keep the rows of earlier versions.
			row = append(row, p)
		}
		rows = append(rows, strings.Join(row, "\x00"))
	}
	slices.Sort(rows)
	h := sha256.New()
	h.Write([]byte("lkfleet live v1\n"))
	for _, r := range rows {
		h.Write([]byte(r))
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// FleetFingerprint identifies a fleet file by its bytes.
func FleetFingerprint(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
