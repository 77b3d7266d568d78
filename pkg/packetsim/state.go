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

	// RNG is the position of the simulator's random source: ids drawn
	// after a restart continue the sequence instead of repeating it.
	RNG []byte `json:"rng,omitempty"`

	ProjectName       string          `json:"project_name,omitempty"`
	ProjectTags       []string        `json:"project_tags,omitempty"`
	ProjectCustomdata json.RawMessage `json:"project_customdata,omitempty"`
	ProjectUpdated    time.Time       `json:"project_updated,omitzero"`
	SSHKeys           []stateKey      `json:"ssh_keys,omitempty"`
	// Hardware: reservation holders, spot bids and prices (state_hardware.go).
	Hardware *stateHardware `json:"hardware,omitempty"`
}

type stateKey struct {
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	Key     string    `json:"key"`
	Tags    []string  `json:"tags,omitempty"`
	Created time.Time `json:"created"`
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
	st := stateFile{Version: stateVersion, Project: s.project, Seq: s.seq, Boots: s.boots,
		ProjectName: s.proj.name, ProjectTags: s.proj.tags, ProjectCustomdata: s.proj.customdata, ProjectUpdated: s.proj.updated}
	s.rngMu.Lock()
	st.RNG, _ = s.pcg.MarshalBinary() // cannot fail
	s.rngMu.Unlock()
	for _, k := range s.keys {
		st.SSHKeys = append(st.SSHKeys, stateKey{ID: k.id.String(), Label: k.label, Key: k.key, Tags: k.tags, Created: k.created})
	}
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
	st.Hardware = s.snapshotHardware(now)
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

// checkWritable refuses a state file the simulator could not save: saves
// go through a temporary file in the same directory and a rename, so the
// directory must take new files, and the path must be a regular file if
// it exists. Finding out at start beats losing every change at the first
// save.
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("state file %s: not a regular file", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".check-*")
	if err != nil {
		return fmt.Errorf("state file %s: cannot write there: %w", path, err)
	}
	f.Close()
	return os.Remove(f.Name())
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
	if len(st.RNG) > 0 {
		s.rngMu.Lock()
		err := s.pcg.UnmarshalBinary(st.RNG)
		s.rngMu.Unlock()
		if err != nil {
			return fmt.Errorf("load state %s: rng: %w", path, err)
		}
	}
	if st.ProjectName != "" {
		s.proj = projectMeta{name: st.ProjectName, tags: st.ProjectTags, customdata: st.ProjectCustomdata, updated: st.ProjectUpdated}
	}
	for _, k := range st.SSHKeys {
		id, ok := parseUUID(k.ID)
		if !ok {
			return fmt.Errorf("load state %s: ssh key %q: bad id", path, k.ID)
		}
		s.keys = append(s.keys, &sshKey{id: id, label: k.Label, key: k.Key, tags: k.Tags, created: k.Created})
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
			d.events = append(d.events, event{id: eid, at: e.At, typ: migrateEventType(e.Type, e.State), state: e.State, body: e.Body})
		}
		s.insert(d)
		switch {
		case !d.deletedAt.IsZero():
			s.sched.add(job{at: d.deletedAt.Add(s.cfg.DeprovisionTime), dev: d.id, kind: jobPurge})
		case !d.bootAt.IsZero():
			s.scheduleBoot(d, d.bootAt, d.bootLocal)
		}
	}
	s.loadHardware(st.Hardware)
	return nil
}

// markDirty asks for a state save soon; the caller may hold s.mu.
func (s *Sim) markDirty() {
	s.consoles.poke() // console sessions and guests follow lifecycle changes
	if s.saver != nil {
		s.saver.poke()
	}
}

// saver writes the state file from one goroutine started on the first
// change. Plain changes (boots, purges) are debounced: one write at most
// every SaveDelay. A request that must not be answered before its change
// is on disk (creates, updates, deletes, actions) waits for a write that
// covers it; waiting requests are written at once and together, so a
// burst of creates costs a few writes, not one each.
type saver struct {
	s       *Sim
	mu      sync.Mutex
	cond    *sync.Cond
	started bool
	closed  bool
	final   bool   // the last write (by close) is done
	want    uint64 // changes marked so far
	saved   uint64 // changes covered by the last finished write
	waiters int
	err     error // of the last write
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newSaver(s *Sim) *saver {
	sv := &saver{s: s, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	sv.cond = sync.NewCond(&sv.mu)
	return sv
}

// poke marks a change; the caller may hold s.mu.
func (sv *saver) poke() {
	sv.mu.Lock()
	sv.want++
	if !sv.started && !sv.closed {
		sv.started = true
		go sv.loop()
	}
	sv.mu.Unlock()
	sv.nudge()
}

func (sv *saver) nudge() {
	select {
	case sv.kick <- struct{}{}:
	default:
	}
}

// wait blocks until every change marked so far is written and returns
// that write's error. The caller must not hold s.mu.
func (sv *saver) wait() error {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	target := sv.want
	if sv.saved >= target || !sv.started {
		return sv.err
	}
	sv.waiters++
	sv.nudge()
	for sv.saved < target && !sv.final {
		sv.cond.Wait()
	}
	sv.waiters--
	return sv.err
}

func (sv *saver) urgent() bool {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.waiters > 0
}

func (sv *saver) loop() {
	defer close(sv.done)
	for {
		select {
		case <-sv.kick:
		case <-sv.stop:
			return
		}
		if !sv.urgent() && !sv.debounce() {
			return
		}
		sv.write()
	}
}

// debounce waits SaveDelay, or less if a request starts waiting; false
// means the saver was stopped.
func (sv *saver) debounce() bool {
	timer := time.NewTimer(sv.s.cfg.SaveDelay)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-sv.kick:
			if sv.urgent() {
				return true
			}
		case <-sv.stop:
			return false
		}
	}
}

// write saves the state and tells the waiters it covers.
func (sv *saver) write() error {
	sv.mu.Lock()
	g := sv.want
	sv.mu.Unlock()
	// Every change up to g was made under s.mu before its poke, so the
	// snapshot saveState takes holds them all.
	err := sv.s.saveState()
	sv.mu.Lock()
	sv.saved = max(sv.saved, g)
	sv.err = err
	sv.cond.Broadcast()
	sv.mu.Unlock()
	if err != nil {
		sv.s.logf("packetsim: %v", err)
	}
	return err
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
	err := sv.write()
	sv.mu.Lock()
	sv.final = true
	sv.cond.Broadcast()
	sv.mu.Unlock()
	return err
}

// waitSaved blocks until the changes marked so far are in the state file
// (at once without one). The caller must not hold s.mu.
func (s *Sim) waitSaved() error {
	if s.saver == nil {
		return nil
	}
	return s.saver.wait()
}

// migrateEventType turns the user_state events of older state files into
// the service's user.<code> shape, so clients read one shape only.
func migrateEventType(typ, state string) string {
	if typ != "user_state" {
		return typ
	}
	switch state {
	case UserStateRunning:
		return userStateEventType(UserCodeBooting)
	case UserStateFailed:
		return userStateEventType(UserCodeBootFailed)
	}
	return userStateEventType(UserCodeBooted)
}
