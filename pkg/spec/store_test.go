package spec

import "testing"

func TestImageStoreForAndLocations(t *testing.T) {
	def := StoreLocation{Bucket: "images", PublicURL: "https://s3/images"}
	ny := StoreLocation{Zone: "ny", Bucket: "images-ny", PublicURL: "https://s3/images-ny"}
	ewr1 := StoreLocation{Zone: "ewr1", Bucket: "images-ny", PublicURL: "https://cdn/images-ny"}
	sv := StoreLocation{Zone: "sv", Bucket: "images-sv", PublicURL: "https://s3/images-sv"}
	st := &ImageStore{Default: def, Mirrors: []StoreLocation{ewr1, ny, sv}}
	for zone, want := range map[string]string{"ny": "https://s3/images-ny", "ewr1": "https://cdn/images-ny", "sv": "https://s3/images-sv", "am": "https://s3/images"} {
		if got := st.For(zone).PublicURL; got != want {
			t.Errorf("For(%s) = %s, want %s", zone, got, want)
		}
	}
	locs := st.Locations()
	if len(locs) != 3 || locs[0].Zone != "" || locs[1].Zone != "ewr1" || locs[2].Zone != "sv" {
		t.Fatalf("Locations = %+v; want the default, then ewr1 (shared with ny) and sv once each", locs)
	}
}
