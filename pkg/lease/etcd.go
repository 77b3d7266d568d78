package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Etcd is a fleet's lease in etcd: a concurrency.Mutex under
// PREFIX/FLEET/mutex held by a session whose etcd lease is the TTL, and
// the holder's Info under PREFIX/FLEET/holder on the same etcd lease. etcd
// orders the contenders itself, so this guarantee rests on no timing: a
// killed holder's keys vanish when its etcd lease expires. The finished
// runs (Run) are kept under PREFIX/FLEET/runs, on no etcd lease: they
// outlive every holder, and unlock leaves them.
type Etcd struct {
	cli    *clientv3.Client
	prefix string // PREFIX/FLEET, without a trailing slash
	fleet  string
	ttl    time.Duration

	mu      sync.Mutex
	session *concurrency.Session
	mutex   *concurrency.Mutex
	mine    *Info
}

// NewEtcd returns fleet's lease under prefix in the etcd cli talks to.
func NewEtcd(cli *clientv3.Client, prefix, fleet string, ttl time.Duration) *Etcd {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Etcd{cli: cli, prefix: strings.TrimRight(prefix, "/") + "/" + fleet, fleet: fleet, ttl: ttl}
}

func (e *Etcd) mutexPrefix() string { return e.prefix + "/mutex" }
func (e *Etcd) holderKey() string   { return e.prefix + "/holder" }
func (e *Etcd) runsKey() string     { return e.prefix + "/runs" }

// TTL is how long the lease lives without renewal.
func (e *Etcd) TTL() time.Duration { return e.ttl }

// etcdTimeout bounds each of Acquire, Holder and Break: the client retries
// an unreachable etcd until its context ends, and a plan must not hang on
// it.
const etcdTimeout = 10 * time.Second

// Acquire takes the mutex without waiting (Hold does the waiting, so that
// the user sees who holds the fleet) and records me as its holder.
func (e *Etcd) Acquire(ctx context.Context, me Info) error {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	secs := int(e.ttl / time.Second)
	if secs < 1 {
		secs = 1
	}
	// The grant is bounded by ctx (an unreachable etcd must not hang the
	// apply); the session built on it outlives ctx: it ends with Release,
	// or when the process dies and etcd stops hearing its keep-alives.
	g, err := e.cli.Grant(ctx, int64(secs))
	if err != nil {
		return fmt.Errorf("lock fleet %q in etcd: %w", e.fleet, err)
	}
	s, err := concurrency.NewSession(e.cli, concurrency.WithLease(g.ID), concurrency.WithTTL(secs))
	if err != nil {
		e.cli.Revoke(context.WithoutCancel(ctx), g.ID)
		return fmt.Errorf("lock fleet %q in etcd: %w", e.fleet, err)
	}
	m := concurrency.NewMutex(s, e.mutexPrefix())
	if err := m.TryLock(ctx); err != nil {
		s.Close()
		if errors.Is(err, concurrency.ErrLocked) {
			h, herr := e.Holder(ctx)
			if herr != nil {
				return herr
			}
			return &HeldError{Fleet: e.fleet, Holder: h}
		}
		return fmt.Errorf("lock fleet %q in etcd: %w", e.fleet, err)
	}
	now := time.Now()
	me.Since = now.UTC().Truncate(time.Second)
	me.Expires = now.Add(e.ttl).UTC().Truncate(time.Second)
	b, _ := json.Marshal(me)
	resp, err := e.cli.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(e.holderKey(), string(b), clientv3.WithLease(s.Lease()))).Commit()
	if err == nil && !resp.Succeeded {
		err = ErrLost
	}
	if err != nil {
		s.Close()
		return fmt.Errorf("lock fleet %q in etcd: record holder: %w", e.fleet, err)
	}
	e.mu.Lock()
	e.session, e.mutex, e.mine = s, m, &me
	e.mu.Unlock()
	return nil
}

// Renew checks that the session is alive and the mutex still ours (etcd
// keeps the session's lease alive on its own) and refreshes the holder's
// Expires.
func (e *Etcd) Renew(ctx context.Context) error {
	e.mu.Lock()
	s, m, mine := e.session, e.mutex, e.mine
	e.mu.Unlock()
	if s == nil {
		return fmt.Errorf("renew lease of fleet %q: %w (not held)", e.fleet, ErrLost)
	}
	select {
	case <-s.Done():
		return fmt.Errorf("fleet %q: %w: the etcd session ended", e.fleet, ErrLost)
	default:
	}
	next := *mine
	next.Expires = time.Now().Add(e.ttl).UTC().Truncate(time.Second)
	b, _ := json.Marshal(next)
	resp, err := e.cli.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(e.holderKey(), string(b), clientv3.WithLease(s.Lease()))).Commit()
	if err != nil {
		return fmt.Errorf("renew lease of fleet %q in etcd: %w", e.fleet, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("fleet %q: %w: the etcd mutex is no longer ours (broken by 'lkfleet unlock'?)", e.fleet, ErrLost)
	}
	e.mu.Lock()
	e.mine = &next
	e.mu.Unlock()
	return nil
}

// Release unlocks the mutex and ends the session, which revokes its etcd
// lease and with it the holder key.
func (e *Etcd) Release(ctx context.Context) error {
	return e.release(ctx, nil)
}

// ReleaseFinished records run as finished (see Recorder), in a
// transaction that writes only while the mutex is still ours, then
// releases the lease.
func (e *Etcd) ReleaseFinished(ctx context.Context, run Run, keep []string) error {
	return e.release(ctx, func(ctx context.Context, m *concurrency.Mutex) error {
		prev, err := e.runs(ctx)
		if err != nil {
			return err
		}
		b, err := json.Marshal(nextRuns(prev, run, keep))
		if err != nil {
			return err
		}
		_, err = e.cli.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(e.runsKey(), string(b))).Commit()
		return err
	})
}

// runs reads the finished runs (none when the key is absent or
// unreadable: a record nobody can parse settles nothing).
func (e *Etcd) runs(ctx context.Context) ([]Run, error) {
	resp, err := e.cli.Get(ctx, e.runsKey())
	if err != nil {
		return nil, fmt.Errorf("read finished runs of fleet %q in etcd: %w", e.fleet, err)
	}
	return decodeRuns(resp.Kvs), nil
}

// decodeRuns decodes the runs key's value, if any.
func decodeRuns(kvs []*mvccpb.KeyValue) []Run {
	var out []Run
	if len(kvs) == 0 || json.Unmarshal(kvs[0].Value, &out) != nil {
		return nil
	}
	return out
}

// release gives the lease up, running record first (while the mutex is
// held) when it is not nil.
func (e *Etcd) release(ctx context.Context, record func(context.Context, *concurrency.Mutex) error) error {
	e.mu.Lock()
	s, m := e.session, e.mutex
	e.session, e.mutex, e.mine = nil, nil, nil
	e.mu.Unlock()
	if s == nil {
		return nil
	}
	var rerr error
	if record != nil {
		rerr = record(ctx, m)
	}
	err := m.Unlock(ctx)
	if errors.Is(err, concurrency.ErrLockReleased) {
		err = nil
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if rerr != nil {
		err = fmt.Errorf("record the finished run: %w", rerr)
	}
	if err != nil {
		return fmt.Errorf("release lease of fleet %q in etcd: %w", e.fleet, err)
	}
	return nil
}

// Holder returns the mutex owner's Info, nil if the fleet is free.
func (e *Etcd) Holder(ctx context.Context) (*Info, error) {
	h, _, err := e.State(ctx)
	return h, err
}

// State returns the mutex owner's Info (nil if the fleet is free) and the
// finished runs, read in one transaction.
func (e *Etcd) State(ctx context.Context) (*Info, []Run, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	// Both keys are read in one transaction, at one revision: read one
	// after the other, a holder whose etcd lease expires in between would
	// show as a mutex owner without a record, a holder of another name.
	resp, err := e.cli.Txn(ctx).Then(
		clientv3.OpGet(e.mutexPrefix()+"/", clientv3.WithFirstCreate()...),
		clientv3.OpGet(e.holderKey()),
		clientv3.OpGet(e.runsKey()),
	).Commit()
	if err != nil {
		return nil, nil, fmt.Errorf("read lease of fleet %q in etcd: %w", e.fleet, err)
	}
	owners, h := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
	runs := decodeRuns(resp.Responses[2].GetResponseRange().Kvs)
	if len(owners.Kvs) == 0 {
		return nil, runs, nil
	}
	owner := owners.Kvs[0]
	var info Info
	if len(h.Kvs) == 0 || h.Kvs[0].Lease != owner.Lease || json.Unmarshal(h.Kvs[0].Value, &info) != nil {
		// The owner has the mutex but has not recorded itself yet.
		return &Info{Holder: fmt.Sprintf("etcd lease %x", owner.Lease)}, runs, nil
	}
	return &info, runs, nil
}

// Break revokes the etcd lease of every key under the fleet's prefix (the
// owner's and the waiters'), which deletes them and ends those sessions.
// The finished runs stay: breaking a lease says nothing about what any
// run finished.
func (e *Etcd) Break(ctx context.Context) (*Info, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	h, err := e.Holder(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := e.cli.Get(ctx, e.prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("break lease of fleet %q in etcd: %w", e.fleet, err)
	}
	revoked := map[clientv3.LeaseID]bool{}
	for _, kv := range resp.Kvs {
		id := clientv3.LeaseID(kv.Lease)
		if id == clientv3.NoLease || revoked[id] {
			continue
		}
		revoked[id] = true
		if _, err := e.cli.Revoke(ctx, id); err != nil {
			return nil, fmt.Errorf("break lease of fleet %q in etcd: %w", e.fleet, err)
		}
	}
	for _, op := range []clientv3.Op{clientv3.OpDelete(e.mutexPrefix()+"/", clientv3.WithPrefix()), clientv3.OpDelete(e.holderKey())} {
		if _, err := e.cli.Do(ctx, op); err != nil {
			return nil, fmt.Errorf("break lease of fleet %q in etcd: %w", e.fleet, err)
		}
	}
	return h, nil
}

// EtcdURL is a parsed --lock etcd://HOST:PORT[,HOST:PORT...]/PREFIX.
type EtcdURL struct {
	Endpoints []string
	Prefix    string
}

// ParseEtcdURL parses etcd://HOST:PORT[,HOST:PORT...]/PREFIX. The prefix
// defaults to /lkfleet. Only plain (non-TLS) client URLs are supported.
func ParseEtcdURL(s string) (EtcdURL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "etcd" || u.Host == "" {
		return EtcdURL{}, fmt.Errorf("--lock %q: want etcd://HOST:PORT/PREFIX", s)
	}
	var eps []string
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" || !strings.Contains(h, ":") {
			return EtcdURL{}, fmt.Errorf("--lock %q: endpoint %q needs HOST:PORT", s, h)
		}
		eps = append(eps, "http://"+h)
	}
	prefix := strings.TrimRight(u.Path, "/")
	if prefix == "" {
		prefix = "/lkfleet"
	}
	return EtcdURL{Endpoints: eps, Prefix: prefix}, nil
}

// DialEtcd connects to the endpoints of u (the connection is checked by
// the first call, bounded by its context).
func DialEtcd(u EtcdURL) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   u.Endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %s: %w", strings.Join(u.Endpoints, ","), err)
	}
	return cli, nil
}
