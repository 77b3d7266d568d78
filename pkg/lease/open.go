package lease

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Open returns the lease of fleet that the --lock value names: "" or "api"
// is the project's customdata through store; etcd://HOST:PORT/PREFIX is
// etcd; "none" is no lease at all (None). The returned function closes what
// Open connected to.
func Open(where, fleet string, store Store, o CustomdataOptions) (Lock, func() error, error) {
	switch {
	case where == "none":
		return None{}, func() error { return nil }, nil
	case where == "" || where == "api":
		return NewCustomdata(store, fleet, o), func() error { return nil }, nil
	case strings.HasPrefix(where, "etcd://"):
		u, err := ParseEtcdURL(where)
		if err != nil {
			return nil, nil, err
		}
		cli, err := DialEtcd(u)
		if err != nil {
			return nil, nil, err
		}
		return NewEtcd(cli, u.Prefix, fleet, o.TTL), cli.Close, nil
	}
	return nil, nil, fmt.Errorf("--lock %q: want api, etcd://HOST:PORT/PREFIX or none", where)
}

// None is the lease of --lock none: always free, never held. It exists for
// endpoints that refuse writes to the project (a token limited to
// devices); nothing then keeps two runs of one fleet apart.
type None struct{}

// Acquire always succeeds.
func (None) Acquire(context.Context, Info) error { return nil }

// Renew always succeeds.
func (None) Renew(context.Context) error { return nil }

// Release does nothing.
func (None) Release(context.Context) error { return nil }

// Holder reports nobody.
func (None) Holder(context.Context) (*Info, error) { return nil, nil }

// Break breaks nothing.
func (None) Break(context.Context) (*Info, error) { return nil, nil }

// TTL is the renewal period's base; None renews nothing of substance.
func (None) TTL() time.Duration { return DefaultTTL }
