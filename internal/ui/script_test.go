package ui

import (
	"errors"
	"time"

	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// t0 is the scripted run's start; every scripted event is an offset from it.
var t0 = time.Date(2026, 11, 25, 21, 40, 0, 0, time.UTC)

// scriptPlan is a two-wave plan: wave 1 (ams1) creates two devices and
// deletes one, wave 2 (ewr1) rebuilds one and creates one.
func scriptPlan() planner.Plan {
	dev := func(slot, zone, host string) *spec.Device {
		return &spec.Device{Slot: slot, Zone: zone, Hostname: host}
	}
	return planner.Plan{
		Fleet: "lab",
		Changes: []planner.Change{
			{Action: planner.Create, Wave: 0, Desired: dev("web/ams1/1", "ams1", "web-ams1-1")},
			{Action: planner.Create, Wave: 0, Desired: dev("web/ams1/2", "ams1", "web-ams1-2")},
			{Action: planner.Delete, Wave: 0, Live: &planner.Live{ID: "0ld3", Tags: []string{spec.TagSlot + "web/ams1/3"}, Hostname: "web-ams1-3", Facility: "ams1"}},
			{Action: planner.NoOp, Wave: 0, Desired: dev("web/ams1/4", "ams1", "web-ams1-4")},
			{Action: planner.Rebuild, Wave: 1, Desired: dev("web/ewr1/1", "ewr1", "web-ewr1-1"), Live: &planner.Live{ID: "e1", Tags: []string{spec.TagSlot + "web/ewr1/1"}, Hostname: "web-ewr1-1"}},
			{Action: planner.Create, Wave: 1, Desired: dev("web/ewr1/2", "ewr1", "web-ewr1-2")},
		},
		Rollout: spec.Rollout{Waves: [][]string{{"ams1"}, {"ewr1"}}},
	}
}

// scriptEvents is what the executor reports for scriptPlan: one device
// fails and is retried, one create is refused, and the rollout halts.
func scriptEvents() []executor.Event {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ch := func(s float64, k executor.EventKind, a planner.Action, slot, host, id, msg string) executor.Event {
		return executor.Event{Time: at(s), Kind: k, Wave: waveOfSlot(slot), Action: a, Slot: slot, Hostname: host, DeviceID: id, Message: msg}
	}
	st := func(s float64, k executor.EventKind, a planner.Action, slot, host, id, state string) executor.Event {
		e := ch(s, k, a, slot, host, id, "")
		e.State = state
		return e
	}
	refused := ch(16, executor.ChangeFailed, planner.Create, "web/ewr1/2", "web-ewr1-2", "", "")
	refused.Err = errors.New("create device \"web-ewr1-2\" (slot web/ewr1/2): 422 no capacity\nin ewr1")
	return []executor.Event{
		{Time: at(0), Kind: executor.WaveStarted, Wave: 0, Message: "ams1"},
		ch(1, executor.ChangeStarted, planner.Create, "web/ams1/1", "web-ams1-1", "", ""),
		ch(1, executor.ChangeStarted, planner.Create, "web/ams1/2", "web-ams1-2", "", ""),
		ch(1, executor.ChangeStarted, planner.Delete, "web/ams1/3", "web-ams1-3", "0ld3", ""),
		ch(2, executor.ChangeDone, planner.Create, "web/ams1/1", "web-ams1-1", "d1", ""),
		ch(2, executor.ChangeDone, planner.Create, "web/ams1/2", "web-ams1-2", "d2", ""),
		ch(2.5, executor.ChangeDone, planner.Delete, "web/ams1/3", "web-ams1-3", "0ld3", ""),
		st(3, executor.DeviceState, planner.Create, "web/ams1/1", "web-ams1-1", "d1", "queued"),
		st(4, executor.DeviceState, planner.Create, "web/ams1/1", "web-ams1-1", "d1", "provisioning"),
		st(4, executor.DeviceState, planner.Create, "web/ams1/2", "web-ams1-2", "d2", "provisioning"),
		st(8, executor.DeviceReady, planner.Create, "web/ams1/1", "web-ams1-1", "d1", "active"),
		ch(9, executor.DeviceFailed, planner.Create, "web/ams1/2", "web-ams1-2", "d2", "provisioning failed: no capacity"),
		ch(9, executor.Retrying, planner.Create, "web/ams1/2", "web-ams1-2", "d2", "deleting the failed device and creating it again (1 of 1)"),
		ch(10, executor.ChangeDone, planner.Create, "web/ams1/2", "web-ams1-2", "d2b", ""),
		st(14, executor.DeviceReady, planner.Create, "web/ams1/2", "web-ams1-2", "d2b", "active"),
		{Time: at(14), Kind: executor.WaveDone, Wave: 0},
		{Time: at(15), Kind: executor.WaveStarted, Wave: 1, Message: "ewr1"},
		ch(15, executor.ChangeStarted, planner.Rebuild, "web/ewr1/1", "web-ewr1-1", "e1", "reboot"),
		ch(15, executor.ChangeStarted, planner.Create, "web/ewr1/2", "web-ewr1-2", "", ""),
		refused,
		ch(16, executor.ChangeDone, planner.Rebuild, "web/ewr1/1", "web-ewr1-1", "e1", ""),
		st(17, executor.DeviceState, planner.Rebuild, "web/ewr1/1", "web-ewr1-1", "e1", "provisioning"),
		st(20, executor.DeviceReady, planner.Rebuild, "web/ewr1/1", "web-ewr1-1", "e1", "active"),
		{Time: at(20), Kind: executor.Halted, Wave: 1, Message: "wave 2 (ewr1) has 1 failed device, more than max_failures 0"},
		{Time: at(20.25), Kind: executor.Info, Wave: -1, Message: "waiting for calls in flight"},
	}
}

func waveOfSlot(slot string) int {
	if len(slot) > 8 && slot[4:8] == "ewr1" {
		return 1
	}
	return 0
}
