package convert

import (
	"bytes"
	"errors"
	"slices"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
)

// SecretToDocker is a secret as `docker secret inspect` shows it: never
// with its data, whatever s carries.
func SecretToDocker(s *api.Secret) swarm.Secret {
	out := swarm.Secret{
		ID:   s.GetId(),
		Meta: metaToDocker(s.GetMeta()),
		Spec: swarm.SecretSpec{Annotations: annotationsToDocker(s.GetSpec().GetAnnotations())},
	}
	if d := s.GetSpec().GetDriver(); d != "" {
		out.Spec.Driver = &swarm.Driver{Name: d}
	}
	return out
}

// SecretSpecFromDocker is the spec of `docker secret create` (and of an
// update, which may change the labels only; the control API checks that).
// swarmd keeps a secret's data itself: secret drivers and templating are
// refused.
func SecretSpecFromDocker(s swarm.SecretSpec) (*api.SecretSpec, error) {
	if s.Driver != nil {
		return nil, errors.New("Driver: secret drivers are not supported by swarmd")
	}
	if s.Templating != nil {
		return nil, errors.New("Templating: secret templating is not supported by swarmd")
	}
	return &api.SecretSpec{Annotations: annotationsFromDocker(s.Annotations), Data: bytes.Clone(s.Data)}, nil
}

// ConfigToDocker is a config as `docker config inspect` shows it, with
// its data.
func ConfigToDocker(c *api.Config) swarm.Config {
	return swarm.Config{
		ID:   c.GetId(),
		Meta: metaToDocker(c.GetMeta()),
		Spec: swarm.ConfigSpec{
			Annotations: annotationsToDocker(c.GetSpec().GetAnnotations()),
			Data:        bytes.Clone(c.GetSpec().GetData()),
		},
	}
}

// ConfigSpecFromDocker is the spec of `docker config create` (and of an
// update, which may change the labels only; the control API checks that).
// Config templating is refused.
func ConfigSpecFromDocker(c swarm.ConfigSpec) (*api.ConfigSpec, error) {
	if c.Templating != nil {
		return nil, errors.New("Templating: config templating is not supported by swarmd")
	}
	return &api.ConfigSpec{Annotations: annotationsFromDocker(c.Annotations), Data: bytes.Clone(c.Data)}, nil
}

// SecretFilter is the predicate of `docker secret ls --filter`: id and
// name (prefixes), names (exact names), label (key or key=value).
func SecretFilter(args filters.Args) (func(*api.Secret) bool, error) {
	match, err := annotatedFilter(args)
	if err != nil {
		return nil, err
	}
	return func(s *api.Secret) bool { return match(s.GetId(), s.GetSpec().GetAnnotations()) }, nil
}

// ConfigFilter is the predicate of `docker config ls --filter`, with the
// filters of SecretFilter.
func ConfigFilter(args filters.Args) (func(*api.Config) bool, error) {
	match, err := annotatedFilter(args)
	if err != nil {
		return nil, err
	}
	return func(c *api.Config) bool { return match(c.GetId(), c.GetSpec().GetAnnotations()) }, nil
}

// annotatedFilter is the predicate on an object's ID and annotations that
// secrets and configs share.
func annotatedFilter(args filters.Args) (func(id string, a *api.Annotations) bool, error) {
	if err := args.Validate(map[string]bool{"id": true, "name": true, "names": true, "label": true}); err != nil {
		return nil, err
	}
	ids, prefixes, names, labels := args.Get("id"), args.Get("name"), args.Get("names"), args.Get("label")
	return func(id string, a *api.Annotations) bool {
		if len(names) > 0 && !slices.Contains(names, a.GetName()) {
			return false
		}
		return prefixed(id, ids) && prefixed(a.GetName(), prefixes) && matchLabels(a.GetLabels(), labels)
	}, nil
}
