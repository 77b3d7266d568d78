package spec

import "fmt"

// Strategy is how a device whose boot configuration changed picks up the
// new one (rollout.rebuild). The strategies and what each implies live in
// one table, strategies; adding one costs a row there and a case in the
// executor, which sends it (see docs/architecture.md).
type Strategy string

// The rebuild strategies of a fleet file.
const (
	StrategyReboot    Strategy = "reboot"
	StrategyReinstall Strategy = "reinstall"
	StrategyRecreate  Strategy = "recreate"
)

// strategyInfo is what the planner, the executor and the fleet file check
// need to know of a strategy.
type strategyInfo struct {
	name Strategy
	// inPlace: the device keeps its hardware and id (a PUT of the new
	// boot config and an action); otherwise a new device is created and
	// the old one deleted once the new one is ready.
	inPlace bool
	// needsAlwaysPXE: the device only loads the new script when it
	// PXE-boots on every boot; a plain reboot boots the installed image.
	needsAlwaysPXE bool
}

// strategies in the order defaults are chosen from: the first in-place
// strategy a device can use is its default.
var strategies = []strategyInfo{
	{name: StrategyReboot, inPlace: true, needsAlwaysPXE: true},
	{name: StrategyReinstall, inPlace: true},
	{name: StrategyRecreate},
}

func (s Strategy) info() (strategyInfo, bool) {
	for _, i := range strategies {
		if i.name == s {
			return i, true
		}
	}
	return strategyInfo{}, false
}

// Strategies lists every strategy, in table order (for messages).
func Strategies() []string {
	out := make([]string, len(strategies))
	for i, s := range strategies {
		out[i] = string(s.name)
	}
	return out
}

// Known reports whether s is a strategy of the table.
func (s Strategy) Known() bool {
	_, ok := s.info()
	return ok
}

// InPlace reports whether s rebuilds a device on its own hardware.
func (s Strategy) InPlace() bool {
	i, _ := s.info()
	return i.inPlace
}

// NeedsAlwaysPXE reports whether s only works on devices with always_pxe.
func (s Strategy) NeedsAlwaysPXE() bool {
	i, _ := s.info()
	return i.needsAlwaysPXE
}

// DefaultStrategy is the strategy of a device when the rollout names none:
// the first in-place strategy that works with its always_pxe setting
// (reboot with always_pxe, else reinstall).
func DefaultStrategy(alwaysPXE bool) Strategy {
	for _, i := range strategies {
		if i.inPlace && (alwaysPXE || !i.needsAlwaysPXE) {
			return i.name
		}
	}
	return StrategyRecreate
}

// For resolves the strategy s for one device: "" is DefaultStrategy, and a
// strategy the device cannot use (reboot without always_pxe) becomes the
// default, with a note that says why. It is the one place that resolves a
// rebuild's strategy; the planner records the result in the Change.
func (s Strategy) For(alwaysPXE bool) (Strategy, string) {
	switch {
	case s == "":
		return DefaultStrategy(alwaysPXE), ""
	case s.NeedsAlwaysPXE() && !alwaysPXE:
		d := DefaultStrategy(false)
		return d, fmt.Sprintf("%s instead of %s: without always_pxe a %s does not load the new script", d, s, s)
	}
	return s, ""
}
