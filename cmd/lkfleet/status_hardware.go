package main

// shownState is the state column: an outbid spot device is terminating
// whatever the API's state says, so a person sees it is about to go.
func (r statusRow) shownState() string {
	if r.TerminationTime != "" {
		return r.State + " (terminating at " + r.TerminationTime + ")"
	}
	return r.State
}
