package packet

import (
	"context"
	"encoding/json"
	"net/url"
)

// projectCustomdata is the part of a project read and written by
// Customdata and SetCustomdata. packngo's Project has no customdata field
// and its Update sends PATCH, which the API does not serve, so both calls
// go through packngo's DoRequest with this type.
type projectCustomdata struct {
	Customdata map[string]json.RawMessage `json:"customdata"`
}

// Customdata returns the project's customdata object, key by key, so a
// caller can change its own keys and write every other key back as it was.
func (c *Client) Customdata(ctx context.Context) (map[string]json.RawMessage, error) {
	pc, release, err := c.api(ctx)
	defer release()
	var p projectCustomdata
	if err == nil {
		_, err = pc.DoRequest("GET", "projects/"+url.PathEscape(c.project), nil, &p)
	}
	if err != nil {
		return nil, c.apiError("read project customdata", "", "", err, false)
	}
	if p.Customdata == nil {
		p.Customdata = map[string]json.RawMessage{}
	}
	return p.Customdata, nil
}

// SetCustomdata replaces the project's customdata with data (PUT
// /projects/{id}). The API replaces the whole object, so data must carry
// every key the caller wants kept. A PUT is idempotent and retried like a
// GET.
func (c *Client) SetCustomdata(ctx context.Context, data map[string]json.RawMessage) error {
	if data == nil {
		data = map[string]json.RawMessage{}
	}
	pc, release, err := c.api(ctx)
	defer release()
	if err == nil {
		_, err = pc.DoRequest("PUT", "projects/"+url.PathEscape(c.project), projectCustomdata{Customdata: data}, nil)
	}
	if err != nil {
		return c.apiError("write project customdata", "", "", err, false)
	}
	return nil
}
