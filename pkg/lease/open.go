package lease

import (
	"fmt"
	"strings"
)

// Open returns the lease of fleet that the --lock value names: "" or "api"
// is the project's customdata through store; etcd://HOST:PORT/PREFIX is
// etcd. The returned function closes what Open connected to.
func Open(where, fleet string, store Store, o CustomdataOptions) (Lock, func() error, error) {
	switch {
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
	return nil, nil, fmt.Errorf("--lock %q: want api or etcd://HOST:PORT/PREFIX", where)
}
