package controlapi

import (
	"slices"
	"strings"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
)

// lookup finds the object of type T that input designates, as the docker
// CLI resolves it: the object with that ID, else the object whose name is
// exactly input (hasName decides), else the one object whose ID starts
// with input. kind names the object in errors.
func lookup[T api.StoreObject](tx store.ReadTx, kind, input string, hasName func(T, string) bool) (T, error) {
	var zero T
	if input == "" {
		return zero, invalidArgument()
	}
	if o := store.Get[T](tx, input); o.GetId() != "" {
		return o, nil
	}
	byName, err := store.Find[T](tx, store.ByName(input))
	if err != nil {
		return zero, storeErr(err)
	}
	matches := slices.DeleteFunc(byName, func(o T) bool { return !hasName(o, input) })
	if len(matches) == 0 {
		if matches, err = store.Find[T](tx, store.ByIDPrefix(input)); err != nil {
			return zero, storeErr(err)
		}
	}
	switch len(matches) {
	case 0:
		return zero, errorf(codes.NotFound, "%s %s not found", kind, input)
	case 1:
		return matches[0], nil
	}
	return zero, errorf(codes.InvalidArgument, "%s %s is ambiguous (%d matches found)", kind, input, len(matches))
}

func nodeHasName(n *api.Node, name string) bool {
	return n.GetSpec().GetAnnotations().GetName() == name || n.GetDescription().GetHostname() == name
}

func serviceHasName(o *api.Service, name string) bool {
	return o.GetSpec().GetAnnotations().GetName() == name
}

func taskHasName(o *api.Task, name string) bool { return store.TaskName(o) == name }

func networkHasName(o *api.Network, name string) bool {
	return o.GetSpec().GetAnnotations().GetName() == name
}

func clusterHasName(o *api.Cluster, name string) bool {
	return o.GetSpec().GetAnnotations().GetName() == name
}

func secretHasName(o *api.Secret, name string) bool {
	return o.GetSpec().GetAnnotations().GetName() == name
}

func configHasName(o *api.Config, name string) bool {
	return o.GetSpec().GetAnnotations().GetName() == name
}

func lookupNode(tx store.ReadTx, input string) (*api.Node, error) {
	return lookup(tx, "node", input, nodeHasName)
}

func lookupService(tx store.ReadTx, input string) (*api.Service, error) {
	return lookup(tx, "service", input, serviceHasName)
}

func lookupTask(tx store.ReadTx, input string) (*api.Task, error) {
	return lookup(tx, "task", input, taskHasName)
}

func lookupNetwork(tx store.ReadTx, input string) (*api.Network, error) {
	return lookup(tx, "network", input, networkHasName)
}

func lookupCluster(tx store.ReadTx, input string) (*api.Cluster, error) {
	return lookup(tx, "cluster", input, clusterHasName)
}

func lookupSecret(tx store.ReadTx, input string) (*api.Secret, error) {
	return lookup(tx, "secret", input, secretHasName)
}

func lookupConfig(tx store.ReadTx, input string) (*api.Config, error) {
	return lookup(tx, "config", input, configHasName)
}

// Filters. Within a field of api.ListFilters any value matches (or);
// fields combine with and. The store query uses the first selective field
// (an index); every field is then checked on what it returned.

// indexedBy returns the store selector for the name, name prefix and ID
// prefix filters, the first one set, or nil.
func indexedBy(f *api.ListFilters) store.By {
	switch {
	case len(f.GetNames()) > 0:
		return orBy(f.GetNames(), store.ByName)
	case len(f.GetNamePrefixes()) > 0:
		return orBy(f.GetNamePrefixes(), store.ByNamePrefix)
	case len(f.GetIdPrefixes()) > 0:
		return orBy(f.GetIdPrefixes(), store.ByIDPrefix)
	}
	return nil
}

func orBy[V any](values []V, by func(V) store.By) store.By {
	bys := make([]store.By, len(values))
	for i, v := range values {
		bys[i] = by(v)
	}
	if len(bys) == 1 {
		return bys[0]
	}
	return store.Or(bys...)
}

// matchAny reports whether s equals one of candidates, or there are none.
func matchAny(s string, candidates []string) bool {
	return len(candidates) == 0 || slices.Contains(candidates, s)
}

// matchPrefix reports whether s starts with one of prefixes, or there are
// none.
func matchPrefix(s string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// matchLabels reports whether labels has every key of want, with the
// wanted value where one is given ("key" or "key=value" filters).
func matchLabels(labels, want map[string]string) bool {
	for k, v := range want {
		got, ok := labels[k]
		if !ok || (v != "" && v != got) {
			return false
		}
	}
	return true
}

// matchCommon checks the name, name prefix, ID prefix and label filters.
func matchCommon(f *api.ListFilters, id, name string, labels map[string]string) bool {
	return matchAny(name, f.GetNames()) &&
		matchPrefix(name, f.GetNamePrefixes()) &&
		matchPrefix(id, f.GetIdPrefixes()) &&
		matchLabels(labels, f.GetLabels())
}

// list finds the objects of type T that by selects (all if nil) and keeps
// those keep accepts.
func list[T api.StoreObject](s *Server, by store.By, keep func(store.ReadTx, T) bool) ([]T, error) {
	if by == nil {
		by = store.All
	}
	var (
		out []T
		err error
	)
	s.store.View(func(tx store.ReadTx) {
		var all []T
		if all, err = store.Find[T](tx, by); err != nil {
			return
		}
		for _, o := range all {
			if keep(tx, o) {
				out = append(out, o)
			}
		}
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return out, nil
}

// listShared is list without copies: it returns the stored objects, which
// must not be modified. For responses that are only encoded (a list of
// tasks can be 100,000 objects long).
func listShared[T api.StoreObject](s *Server, by store.By, keep func(store.ReadTx, T) bool) ([]T, error) {
	if by == nil {
		by = store.All
	}
	var out []T
	var err error
	s.store.View(func(tx store.ReadTx) {
		err = store.Each(tx, by, func(o T) bool {
			if keep(tx, o) {
				out = append(out, o)
			}
			return true
		})
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return out, nil
}
