package planner

import "github.com/lkfleet/lkfleet/pkg/spec"

// fileHardware is a desired device's spec.Hardware in a saved plan;
// absent for on-demand devices, so older plans read the same.
type fileHardware struct {
	NextAvailable bool     `json:"next_available,omitempty"`
	Reservations  []string `json:"reservations,omitempty"`
	SpotMaxPrice  float64  `json:"spot_max_price,omitempty"`
}

func hardwareToFile(h spec.Hardware) *fileHardware {
	if !h.Reservation.Reserved() && !h.Spot() {
		return nil
	}
	return &fileHardware{NextAvailable: h.Reservation.NextAvailable, Reservations: h.Reservation.IDs, SpotMaxPrice: h.SpotMaxPrice}
}

// spec converts back; a nil *fileHardware is on demand.
func (f *fileHardware) spec() spec.Hardware {
	if f == nil {
		return spec.Hardware{}
	}
	return spec.Hardware{Reservation: spec.Reservation{NextAvailable: f.NextAvailable, IDs: f.Reservations}, SpotMaxPrice: f.SpotMaxPrice}
}
