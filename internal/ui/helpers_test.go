package ui

import (
	"github.com/lkfleet/lkfleet/pkg/executor"
)

func executorInfo(msg string) executor.Event {
	return executor.Event{Time: t0, Kind: executor.Info, Wave: -1, Message: msg}
}
