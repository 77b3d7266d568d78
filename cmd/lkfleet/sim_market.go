package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// simMarketOptions are the reservation and spot market flags of lkfleet sim.
type simMarketOptions struct {
	reservations []string
	walk         float64
	interval     time.Duration
	notice       time.Duration
}

// addFlags registers the flags on f.
func (o *simMarketOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&o.reservations, "reservations", nil, "seed hardware reservations as plan:zone:count (repeatable; zone is a facility or metro)")
	f.Float64Var(&o.walk, "spot-price-walk", 0, "largest relative move of a spot price per step (0.1 = ±10%); 0 = prices stay")
	f.DurationVar(&o.interval, "spot-price-interval", time.Minute, "time between spot price steps")
	f.DurationVar(&o.notice, "spot-termination-notice", packetsim.DefaultSpotNotice, "time an outbid spot device runs after its termination_time is set")
}

// config converts the flags; every bad value is reported.
func (o *simMarketOptions) config() ([]packetsim.ReservationSeed, packetsim.SpotConfig, error) {
	var errs []error
	var seeds []packetsim.ReservationSeed
	for _, v := range o.reservations {
		rs, err := packetsim.ParseReservationSeed(v)
		if err != nil {
			errs = append(errs, errors.New("--reservations: "+err.Error()))
			continue
		}
		seeds = append(seeds, rs)
	}
	if o.walk < 0 || o.walk >= 1 {
		errs = append(errs, errors.New("--spot-price-walk must be at least 0 and below 1"))
	}
	if o.interval <= 0 || o.notice <= 0 {
		errs = append(errs, errors.New("--spot-price-interval and --spot-termination-notice must be positive"))
	}
	return seeds, packetsim.SpotConfig{Walk: o.walk, Interval: o.interval, Notice: o.notice}, errors.Join(errs...)
}
