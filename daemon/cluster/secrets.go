package cluster

import (
	"context"
	"net/http"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
)

// Secrets and configs are served alike: list, create, inspect, update
// (labels only) and remove, by ID, name or unique ID prefix. They differ in
// their types and control API calls, which a dataKind holds, and in that a
// secret's data is never shown.

// controlFunc returns the control API client of this node's manager, or
// docker's error for a node that is not one.
type controlFunc func() (api.ControlClient, error)

// dataKind is one kind of swarm data object: D is its Engine API type, S
// the Engine API spec and P the control API spec.
type dataKind[D, S, P any] struct {
	noun string // "secret" or "config"
	// fromDocker converts a spec from a client; an error is a bad request.
	fromDocker func(S) (P, error)
	// created is the body of the answer to a create.
	created func(id string) any
	list    func(ctx context.Context, ctl api.ControlClient, args filters.Args) ([]D, error)
	get     func(ctx context.Context, ctl api.ControlClient, ref string) (id string, obj D, err error)
	create  func(ctx context.Context, ctl api.ControlClient, spec P) (id string, err error)
	update  func(ctx context.Context, ctl api.ControlClient, id string, version uint64, spec P) error
	remove  func(ctx context.Context, ctl api.ControlClient, id string) error
}

// dataRoutes registers the endpoints of kind k under /<noun>s.
func dataRoutes[D, S, P any](s *Server, control controlFunc, k dataKind[D, S, P]) {
	prefix := "/" + k.noun + "s"
	s.handle("GET "+prefix, listData(control, k))
	s.handle("POST "+prefix+"/create", createData(control, k))
	s.handle("GET "+prefix+"/{id}", inspectData(control, k))
	s.handle("POST "+prefix+"/{id}/update", updateData(control, k))
	s.handle("DELETE "+prefix+"/{id}", removeData(control, k))
}

func listData[D, S, P any](control controlFunc, k dataKind[D, S, P]) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctl, err := control()
		if err != nil {
			return err
		}
		args, err := filterArgs(r)
		if err != nil {
			return err
		}
		out, err := k.list(r.Context(), ctl, args)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

// createData answers 201 {"ID": ...}. The body is checked before the
// node's state, as docker does.
func createData[D, S, P any](control controlFunc, k dataKind[D, S, P]) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var spec S
		if err := decodeBody(r, &spec); err != nil {
			return err
		}
		ps, err := k.fromDocker(spec)
		if err != nil {
			return badRequest(err.Error())
		}
		ctl, err := control()
		if err != nil {
			return err
		}
		id, err := k.create(r.Context(), ctl, ps)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, k.created(id))
		return nil
	}
}

func inspectData[D, S, P any](control controlFunc, k dataKind[D, S, P]) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctl, err := control()
		if err != nil {
			return err
		}
		_, obj, err := k.get(r.Context(), ctl, r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, obj)
		return nil
	}
}

// updateData changes an object's labels at the version the client read
// (the control API refuses any other change) and answers 200 with no
// body. Body and version are checked before the node's state.
func updateData[D, S, P any](control controlFunc, k dataKind[D, S, P]) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var spec S
		if err := decodeBody(r, &spec); err != nil {
			return err
		}
		version, err := versionParam(r, k.noun)
		if err != nil {
			return err
		}
		ps, err := k.fromDocker(spec)
		if err != nil {
			return badRequest(err.Error())
		}
		ctl, err := control()
		if err != nil {
			return err
		}
		id, _, err := k.get(r.Context(), ctl, r.PathValue("id"))
		if err != nil {
			return err
		}
		if err := k.update(r.Context(), ctl, id, version, ps); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
}

// removeData answers 204. An object a service uses is not removed: the
// control API's error (InvalidArgument, "secret 'x' is in use by the
// following service: web") is docker's, status line and all.
func removeData[D, S, P any](control controlFunc, k dataKind[D, S, P]) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctl, err := control()
		if err != nil {
			return err
		}
		id, _, err := k.get(r.Context(), ctl, r.PathValue("id"))
		if err != nil {
			return err
		}
		if err := k.remove(r.Context(), ctl, id); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// secretKind is the secrets of /secrets; their data is never shown.
func secretKind() dataKind[swarm.Secret, swarm.SecretSpec, *api.SecretSpec] {
	return dataKind[swarm.Secret, swarm.SecretSpec, *api.SecretSpec]{
		noun:       "secret",
		fromDocker: convert.SecretSpecFromDocker,
		created:    func(id string) any { return swarm.SecretCreateResponse{ID: id} },
		list: func(ctx context.Context, ctl api.ControlClient, args filters.Args) ([]swarm.Secret, error) {
			match, err := convert.SecretFilter(args)
			if err != nil {
				return nil, badRequest(err.Error())
			}
			resp, err := ctl.ListSecrets(ctx, &api.ListSecretsRequest{})
			if err != nil {
				return nil, err
			}
			return pick(resp.GetSecrets(), match, convert.SecretToDocker), nil
		},
		get: func(ctx context.Context, ctl api.ControlClient, ref string) (string, swarm.Secret, error) {
			resp, err := ctl.GetSecret(ctx, &api.GetSecretRequest{SecretId: ref})
			if err != nil {
				return "", swarm.Secret{}, lookupError(err)
			}
			return resp.GetSecret().GetId(), convert.SecretToDocker(resp.GetSecret()), nil
		},
		create: func(ctx context.Context, ctl api.ControlClient, spec *api.SecretSpec) (string, error) {
			resp, err := ctl.CreateSecret(ctx, &api.CreateSecretRequest{Spec: spec})
			return resp.GetSecret().GetId(), err
		},
		update: func(ctx context.Context, ctl api.ControlClient, id string, version uint64, spec *api.SecretSpec) error {
			_, err := ctl.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: id, SecretVersion: &api.Version{Index: version}, Spec: spec})
			return err
		},
		remove: func(ctx context.Context, ctl api.ControlClient, id string) error {
			_, err := ctl.RemoveSecret(ctx, &api.RemoveSecretRequest{SecretId: id})
			return err
		},
	}
}

// configKind is the configs of /configs, shown with their data.
func configKind() dataKind[swarm.Config, swarm.ConfigSpec, *api.ConfigSpec] {
	return dataKind[swarm.Config, swarm.ConfigSpec, *api.ConfigSpec]{
		noun:       "config",
		fromDocker: convert.ConfigSpecFromDocker,
		created:    func(id string) any { return swarm.ConfigCreateResponse{ID: id} },
		list: func(ctx context.Context, ctl api.ControlClient, args filters.Args) ([]swarm.Config, error) {
			match, err := convert.ConfigFilter(args)
			if err != nil {
				return nil, badRequest(err.Error())
			}
			resp, err := ctl.ListConfigs(ctx, &api.ListConfigsRequest{})
			if err != nil {
				return nil, err
			}
			return pick(resp.GetConfigs(), match, convert.ConfigToDocker), nil
		},
		get: func(ctx context.Context, ctl api.ControlClient, ref string) (string, swarm.Config, error) {
			resp, err := ctl.GetConfig(ctx, &api.GetConfigRequest{ConfigId: ref})
			if err != nil {
				return "", swarm.Config{}, lookupError(err)
			}
			return resp.GetConfig().GetId(), convert.ConfigToDocker(resp.GetConfig()), nil
		},
		create: func(ctx context.Context, ctl api.ControlClient, spec *api.ConfigSpec) (string, error) {
			resp, err := ctl.CreateConfig(ctx, &api.CreateConfigRequest{Spec: spec})
			return resp.GetConfig().GetId(), err
		},
		update: func(ctx context.Context, ctl api.ControlClient, id string, version uint64, spec *api.ConfigSpec) error {
			_, err := ctl.UpdateConfig(ctx, &api.UpdateConfigRequest{ConfigId: id, ConfigVersion: &api.Version{Index: version}, Spec: spec})
			return err
		},
		remove: func(ctx context.Context, ctl api.ControlClient, id string) error {
			_, err := ctl.RemoveConfig(ctx, &api.RemoveConfigRequest{ConfigId: id})
			return err
		},
	}
}

// pick converts the objects match selects; none is an empty list, not
// null.
func pick[O, D any](objs []O, match func(O) bool, conv func(O) D) []D {
	out := []D{}
	for _, o := range objs {
		if match(o) {
			out = append(out, conv(o))
		}
	}
	return out
}
