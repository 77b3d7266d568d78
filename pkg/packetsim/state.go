package packetsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// stateVersion is bumped when the state file format changes.
const stateVersion = 1

type stateFile struct {
	Version int           `json:"version"`
	Project string        `json:"project"`
	Seq     uint32        `json:"seq"`
	Devices []stateDevice `json:"devices"`
	Boots   []Boot        `json:"boots"`
	VLANs   []stateVNet   `json:"vlans,omitempty"` // vlans.go
}

type stateEvent struct {
	ID    string    `json:"id"`
	At    time.Time `json:"at"`
	Type  string    `json:"type"`
	State string    `json:"state,omitempty"`
	Body  string    `json:"body,omitempty"`
}

type stateDevice struct {
	ID            string          `json:"id"`
	Seq           uint32          `json:"seq"`
	Hostname      string          `json:"hostname"`
	Description   string          `json:"description,omitempty"`
	Tags          []string        `json:"tags,omitempty"`
	Plan          string          `json:"plan"`
	Facility      string          `json:"facility"`
	OS            string          `json:"os"`
	AlwaysPXE     bool            `json:"always_pxe,omitempty"`
	IPXEScriptURL string          `json:"ipxe_script_url,omitempty"`
	Userdata      string          `json:"userdata,omitempty"`
	Billing       string          `json:"billing"`
	Locked        bool            `json:"locked,omitempty"`
	Customdata    json.RawMessage `json:"customdata,omitempty"`
	Created       time.Time       `json:"created"`
	Updated       time.Time       `json:"updated"`
	Phase         phase           `json:"phase"`
	PhaseAt       time.Time       `json:"phase_at"`
	PhaseDur      time.Duration   `json:"phase_dur"`
	FailProv      bool            `json:"fail_prov,omitempty"`
	DeletedAt     time.Time       `json:"deleted_at,omitzero"`
	BootAt        time.Time       `json:"boot_at,omitzero"`
	BootLocal     bool            `json:"boot_local,omitempty"`
	Events        []stateEvent    `json:"events,omitempty"`
	Net           *stateNet       `json:"net,omitempty"` // ports.go
}

// snapshot copies the state for saving; the caller holds s.mu.
func (s *Sim) snapshot() stateFile {
	now := s.now()
	st := stateFile{Version: stateVersion, Project: s.project, Seq: s.seq, Boots: s.boots}
	for _, d := range s.order {
		if d.goneAt(now, s.cfg.DeprovisionTime) {
			continue
		}
		sd := stateDevice{
			ID: d.id.String(), Seq: d.seq, Hostname: d.hostname, Description: d.description, Tags: d.tags,
			Plan: d.plan.Slug, Facility: d.fac.Code, OS: d.os, AlwaysPXE: d.alwaysPXE, IPXEScriptURL: d.ipxeURL,
			Userdata: d.userdata, Billing: d.billing, Locked: d.locked, Customdata: d.customdata,
			Created: d.created, Updated: d.updated, Phase: d.phase, PhaseAt: d.phaseAt, PhaseDur: d.phaseDur,
			FailProv: d.failProv, DeletedAt: d.deletedAt, BootAt: d.bootAt, BootLocal: d.bootLocal,
			Net: d.net.toState(),
		}
		for _, e := range d.events {
			sd.Events = append(sd.Events, stateEvent{ID: e.id.String(), At: e.at, Type: e.typ, State: e.state, Body: e.body})
		}
		st.Devices = append(st.Devices, sd)
	}
	st.VLANs = s.snapshotVNets()
	return st
}

// saveState writes the state file atomically (temp file, fsync, rename).
func (s *Sim) saveState() error {
	s.mu.RLock()
	st := s.snapshot()
	b, err := json.Marshal(st)
	s.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	path := s.cfg.StateFile
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save state %s: %w", path, err)
	}
	return nil
}

// loadState reads the state file if it exists and reschedules pending
// boots and purges.
func (s *Sim) loadState() error {
	path := s.cfg.StateFile
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load state %s: %w", path, err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("load state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("load state %s: version %d, want %d", path, st.Version, stateVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Project == "" && st.Project != "" {
		s.project = st.Project
	}
	s.seq = st.Seq
	s.boots = st.Boots
	if err := s.loadVNets(st.VLANs); err != nil {
		return fmt.Errorf("load state %s: %w", path, err)
	}
	for i, sd := range st.Devices {
		id, ok := parseUUID(sd.ID)
		p, f := s.cat.planBy[sd.Plan], s.cat.facBy[sd.Facility]
		if !ok || p == nil || f == nil || s.cat.osJSON[sd.OS] == nil {
			return fmt.Errorf("load state %s: device %d (%q): unknown id, plan, facility or operating system", path, i, sd.ID)
		}
		d := &device{
			id: id, seq: sd.Seq, hostname: sd.Hostname, description: sd.Description, tags: sd.Tags,
			plan: p, fac: f, os: sd.OS, alwaysPXE: sd.AlwaysPXE, ipxeURL: sd.IPXEScriptURL, userdata: sd.Userdata,
			billing: sd.Billing, locked: sd.Locked, customdata: sd.Customdata, created: sd.Created, updated: sd.Updated,
			phase: sd.Phase, phaseAt: sd.PhaseAt, phaseDur: sd.PhaseDur, failProv: sd.FailProv,
			deletedAt: sd.DeletedAt, bootAt: sd.BootAt, bootLocal: sd.BootLocal,
			net: sd.Net.fromState(p),
		}
		for _, e := range sd.Events {
			eid, _ := parseUUID(e.ID)
			d.events = append(d.events, event{id: eid, at: e.At, typ: e.Type, state: e.State, body: e.Body})
		}
		s.insert(d)
		switch {
		case !d.deletedAt.IsZero():
			s.sched.add(job{at: d.deletedAt.Add(s.cfg.DeprovisionTime), dev: d.id, kind: jobPurge})
		case !d.bootAt.IsZero():
			s.scheduleBoot(d, d.bootAt, d.bootLocal)
		}
	}
	return nil
}

// markDirty asks for a state save soon; the caller may hold s.mu.
func (s *Sim) markDirty() {
	if s.saver != nil {
		s.saver.poke()
	}
}

// saver debounces state writes: one write at most every SaveDelay, from
// one goroutine started on the first change.
type saver struct {
	s       *Sim
	mu      sync.Mutex
	started bool
	closed  bool
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newSaver(s *Sim) *saver {
	return &saver{s: s, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (sv *saver) poke() {
	sv.mu.Lock()
	if !sv.started && !sv.closed {
		sv.started = true
		go sv.loop()
	}
	sv.mu.Unlock()
	select {
	case sv.kick <- struct{}{}:
	default:
	}
}

func (sv *saver) loop() {
	defer close(sv.done)
	for {
		select {
		case <-sv.kick:
		case <-sv.stop:
			return
		}
		select {
		case <-time.After(sv.s.cfg.SaveDelay):
		case <-sv.stop:
			return
		}
		if err := sv.s.saveState(); err != nil {
			sv.s.logf("packetsim: %v", err)
		}
	}
}

// close stops the saver and writes the final state.
func (sv *saver) close() error {
	sv.mu.Lock()
	started := sv.started
	sv.closed = true
	sv.mu.Unlock()
	close(sv.stop)
	if started {
		<-sv.done
	}
	return sv.s.saveState()
}
