package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
)

// Networks. The engine keeps its own (local-scope) networks; swarm-scoped
// networks (driver overlay) live in the cluster. /networks serves both, as
// an engine in swarm mode does:
//
//   - GET /networks lists the engine's networks, then the swarm's, each
//     filtered with docker's semantics; a swarm network only shows where
//     the node is a manager.
//   - A network is designated by ID, name or ID prefix. An exact ID wins
//     (the engine's first); then a name, which must be unique across the
//     engine and the swarm (an engine network and a swarm network of the
//     same name are ambiguous, as in docker; ?scope=swarm picks the swarm
//     one); then an ID prefix, likewise unique.
//   - POST /networks/create with the overlay driver (or scope swarm)
//     creates a swarm network; any other goes to the engine. No network
//     of either kind may take the name of a swarm network.
//   - POST /networks/prune prunes the engine's networks, then, on a
//     manager, the swarm networks no service uses, as docker does.
//   - POST /networks/{id}/connect and /disconnect of a swarm network: a
//     network that is not attachable is refused with docker's error; an
//     attachable one goes to the engine's copy of it (which the node's
//     data plane creates for the tasks attached to it; without a copy,
//     the engine answers that the network is not found).
//   - The engine's copies of swarm networks (labelled with the swarm
//     network's ID) never show beside the swarm networks on a manager;
//     on a worker they stand for them (scope swarm, the swarm ID).

// labelSwarmNetworkID marks the engine's copy of a swarm network (which the
// node's data plane creates for the tasks attached to it) with the swarm
// network's ID. A copy is shown as the swarm network it stands for.
const labelSwarmNetworkID = "com.docker.swarm.network.id"

// swarmCopyOf is the swarm network ID an engine network is a copy of, or "".
func swarmCopyOf(n *network.Summary) string { return n.Labels[labelSwarmNetworkID] }

// predefinedNetworkNames are the names docker reserves for the networks
// every engine has.
var predefinedNetworkNames = []string{network.NetworkBridge, network.NetworkHost, network.NetworkNone, network.NetworkDefault}

func errNoSuchNetwork(term string) error {
	return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("network %s not found", term)}
}

// engineClient is an HTTP client of the engine behind swarmd.
func (s *Server) engineClient() *http.Client { return &http.Client{Transport: s.engine} }

// engineURL is the URL of path on the engine, under the API version r
// names, with query q.
func (s *Server) engineURL(r *http.Request, path string, q url.Values) string {
	u := *s.base
	if v := apiVersion(r); v != "" {
		path = "/v" + v + path
	}
	u.Path, u.RawQuery = path, q.Encode()
	return u.String()
}

// engineJSON sends a request to the engine and decodes its JSON answer
// into out. An error answer of the engine is returned as it was (status
// and message).
func (s *Server) engineJSON(ctx context.Context, r *http.Request, method, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.engineURL(r, path, q), nil)
	if err != nil {
		return fmt.Errorf("engine request: %w", err)
	}
	resp, err := s.engineClient().Do(req)
	if err != nil {
		return &httpError{code: http.StatusBadGateway, msg: "Cannot connect to the Docker daemon behind swarmd: " + err.Error()}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("engine %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		if json.Unmarshal(body, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(body))
		}
		return &httpError{code: resp.StatusCode, msg: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("engine %s %s: %w", method, path, err)
	}
	return nil
}

// passThrough sends r to the engine at path (unversioned; r's API version
// is kept), with body as the request body when it is not nil.
func (s *Server) passThrough(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	r2 := r.Clone(r.Context())
	if v := apiVersion(r); v != "" {
		path = "/v" + v + path
	}
	r2.URL.Path, r2.URL.RawPath = path, ""
	if body != nil {
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
	}
	s.proxy.ServeHTTP(w, r2)
}

// swarmNetworks lists the swarm networks, or nil where the node is not a
// manager.
func (s *Server) swarmNetworks(ctx context.Context) (api.ControlClient, []*api.Network, error) {
	ctl, err := s.cluster.control()
	if err != nil {
		return nil, nil, nil
	}
	resp, err := ctl.ListNetworks(ctx, &api.ListNetworksRequest{})
	if err != nil {
		return nil, nil, err
	}
	return ctl, resp.GetNetworks(), nil
}

// networksInUse is the set of the networks some service attaches to.
func networksInUse(ctx context.Context, ctl api.ControlClient) (map[string]bool, error) {
	resp, err := ctl.ListServices(ctx, &api.ListServicesRequest{})
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, svc := range resp.GetServices() {
		for _, att := range svc.GetSpec().GetTask().GetNetworks() {
			used[att.GetTarget()] = true
		}
	}
	return used, nil
}

func (s *Server) getNetworks(w http.ResponseWriter, r *http.Request) error {
	args, err := filterArgs(r)
	if err != nil {
		return err
	}
	if err := convert.ValidateNetworkFilters(args); err != nil {
		return badRequest(err.Error())
	}
	out := []network.Summary{}
	if err := s.engineJSON(r.Context(), r, http.MethodGet, "/networks", r.URL.Query(), &out); err != nil {
		return err
	}
	ctl, nets, err := s.swarmNetworks(r.Context())
	if err != nil {
		return err
	}
	if ctl == nil {
		// Not a manager: the engine's copies of swarm networks stand for
		// them, as a worker in docker shows the swarm networks its tasks
		// use.
		for i := range out {
			if id := swarmCopyOf(&out[i]); id != "" {
				out[i].ID, out[i].Scope, out[i].Driver = id, convert.ScopeSwarm, convert.OverlayDriver
			}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	// On a manager the swarm networks themselves are listed: not the
	// engine's copies.
	out = slices.DeleteFunc(out, func(n network.Summary) bool { return swarmCopyOf(&n) != "" })
	var used map[string]bool
	if args.Contains("dangling") {
		if used, err = networksInUse(r.Context(), ctl); err != nil {
			return err
		}
	}
	match, err := convert.NetworkFilter(args, func(id string) bool { return used[id] })
	if err != nil {
		return badRequest(err.Error())
	}
	seen := map[string]bool{}
	for _, n := range out {
		seen[n.ID] = true
	}
	for _, n := range nets {
		d := convert.NetworkToDocker(n)
		if !seen[d.ID] && match(d) {
			out = append(out, d)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// networkRef is what a network ID, name or ID prefix designates: an
// engine network or a swarm network (exactly one of them).
type networkRef struct {
	engine *network.Summary
	swarm  *api.Network
	// copyID is the ID of the engine's copy of the swarm network, if the
	// engine has one.
	copyID string
}

// swarmCopy designates the engine's copy of a swarm network: its ID when
// known, else the network's name (which the copy takes).
func (n networkRef) swarmCopy() string {
	if n.copyID != "" {
		return n.copyID
	}
	return n.swarm.GetSpec().GetAnnotations().GetName()
}

func (n networkRef) id() string {
	if n.swarm != nil {
		return n.swarm.GetId()
	}
	return n.engine.ID
}

// ambiguity words a term that designates several networks; docker words
// it differently for inspect and for the other calls.
type ambiguity func(term string, n int, by string) error

func inspectAmbiguity(term string, n int, by string) error {
	return badRequest(fmt.Sprintf("%d matches found based on %s: network %s is ambiguous", n, by, term))
}

func actionAmbiguity(term string, n int, by string) error {
	return badRequest(fmt.Sprintf("network %s is ambiguous (%d matches found based on %s)", term, n, by))
}

// resolveNetwork finds the network term designates among the engine's and
// the swarm's (see the rules at the top of this file). scope "swarm" looks
// at the swarm's only, "local" (or any other) at the engine's only.
func (s *Server) resolveNetwork(r *http.Request, term, scope string, ambiguous ambiguity) (networkRef, error) {
	var local []network.Summary
	if scope == "" || scope != convert.ScopeSwarm {
		if err := s.engineJSON(r.Context(), r, http.MethodGet, "/networks", nil, &local); err != nil {
			return networkRef{}, err
		}
	}
	var nets []*api.Network
	if scope == "" || scope == convert.ScopeSwarm {
		var err error
		if _, nets, err = s.swarmNetworks(r.Context()); err != nil {
			return networkRef{}, err
		}
	}
	ref, err := pickNetwork(term, local, nets, scope == convert.ScopeSwarm, ambiguous)
	if err == nil && ref.swarm != nil {
		for i := range local {
			if swarmCopyOf(&local[i]) == ref.swarm.GetId() {
				ref.copyID = local[i].ID
			}
		}
	}
	return ref, err
}

// pickNetwork is the pure part of resolveNetwork.
func pickNetwork(term string, local []network.Summary, nets []*api.Network, swarmScope bool, ambiguous ambiguity) (networkRef, error) {
	if term == "" {
		return networkRef{}, errNoSuchNetwork(term)
	}
	known := map[string]bool{}
	for _, n := range nets {
		known[n.GetId()] = true
	}
	byName, byPrefix := map[string]networkRef{}, map[string]networkRef{}
	for i := range local {
		n := &local[i]
		if known[swarmCopyOf(n)] {
			continue
		}
		if n.ID == term {
			return networkRef{engine: n}, nil
		}
		if n.Name == term {
			byName[n.ID] = networkRef{engine: n}
		}
		if strings.HasPrefix(n.ID, term) {
			byPrefix[n.ID] = networkRef{engine: n}
		}
	}
	for _, n := range nets {
		if n.GetId() == term {
			return networkRef{swarm: n}, nil
		}
		if _, ok := byName[n.GetId()]; !ok && n.GetSpec().GetAnnotations().GetName() == term {
			if swarmScope {
				return networkRef{swarm: n}, nil
			}
			byName[n.GetId()] = networkRef{swarm: n}
		}
		if _, ok := byPrefix[n.GetId()]; !ok && strings.HasPrefix(n.GetId(), term) {
			byPrefix[n.GetId()] = networkRef{swarm: n}
		}
	}
	for _, c := range []struct {
		found map[string]networkRef
		by    string
	}{{byName, "name"}, {byPrefix, "ID prefix"}} {
		switch len(c.found) {
		case 0:
			continue
		case 1:
			for _, ref := range c.found {
				return ref, nil
			}
		}
		return networkRef{}, ambiguous(term, len(c.found), c.by)
	}
	return networkRef{}, errNoSuchNetwork(term)
}

func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request) error {
	term := r.PathValue("id")
	ref, err := s.resolveNetwork(r, term, r.URL.Query().Get("scope"), inspectAmbiguity)
	if err != nil {
		return err
	}
	if ref.engine != nil {
		s.passThrough(w, r, "/networks/"+ref.engine.ID, nil)
		return nil
	}
	writeJSON(w, http.StatusOK, convert.NetworkToDocker(ref.swarm))
	return nil
}

func (s *Server) postNetworkCreate(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return badRequest("reading the request body: " + err.Error())
	}
	var req network.CreateRequest
	if err := json.Unmarshal(body, &req); err != nil {
		if len(bytes.TrimSpace(body)) == 0 {
			return badRequest("request body is empty")
		}
		return badRequest("invalid JSON: " + err.Error())
	}
	if !convert.IsSwarmNetworkCreate(req) {
		// The engine's, unless a swarm network has the name.
		if ctl, err := s.cluster.control(); err == nil {
			if err := swarmNameFree(r.Context(), ctl, req.Name); err != nil {
				return err
			}
		}
		s.passThrough(w, r, "/networks/create", body)
		return nil
	}
	if slices.Contains(predefinedNetworkNames, req.Name) {
		return &httpError{code: http.StatusForbidden, msg: req.Name + " is a pre-defined network and cannot be created"}
	}
	spec, err := convert.NetworkSpecFromDocker(req)
	if err != nil {
		return badRequest(err.Error())
	}
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	if err := swarmNameFree(r.Context(), ctl, req.Name); err != nil {
		return err
	}
	resp, err := ctl.CreateNetwork(r.Context(), &api.CreateNetworkRequest{Spec: spec})
	if status.Code(err) == codes.AlreadyExists {
		return errNetworkNameTaken(req.Name)
	}
	if err != nil {
		return lookupError(err)
	}
	writeJSON(w, http.StatusCreated, network.CreateResponse{ID: resp.GetNetwork().GetId()})
	return nil
}

func errNetworkNameTaken(name string) error {
	return &httpError{code: http.StatusConflict, msg: fmt.Sprintf("network with name %s already exists", name)}
}

// swarmNameFree refuses a name a swarm network has.
func swarmNameFree(ctx context.Context, ctl api.ControlClient, name string) error {
	resp, err := ctl.ListNetworks(ctx, &api.ListNetworksRequest{Filters: &api.ListFilters{Names: []string{name}}})
	if err != nil {
		return err
	}
	if len(resp.GetNetworks()) > 0 {
		return errNetworkNameTaken(name)
	}
	return nil
}

func (s *Server) deleteNetwork(w http.ResponseWriter, r *http.Request) error {
	ref, err := s.resolveNetwork(r, r.PathValue("id"), "", actionAmbiguity)
	if err != nil {
		return err
	}
	if ref.engine != nil {
		s.passThrough(w, r, "/networks/"+ref.engine.ID, nil)
		return nil
	}
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	if _, err := ctl.RemoveNetwork(r.Context(), &api.RemoveNetworkRequest{NetworkId: ref.id()}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// postNetworkAttach serves /networks/{id}/connect and /disconnect.
func (s *Server) postNetworkAttach(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return badRequest("reading the request body: " + err.Error())
		}
		term := r.PathValue("id")
		ref, err := s.resolveNetwork(r, term, "", actionAmbiguity)
		if err != nil {
			return err
		}
		if ref.engine != nil {
			s.passThrough(w, r, "/networks/"+ref.engine.ID+"/"+action, body)
			return nil
		}
		if action == "connect" && !ref.swarm.GetSpec().GetAttachable() {
			return &httpError{code: http.StatusForbidden, msg: fmt.Sprintf(
				"Could not attach to network %s: rpc error: code = PermissionDenied desc = network %s not manually attachable.", term, term)}
		}
		s.passThrough(w, r, "/networks/"+ref.swarmCopy()+"/"+action, body)
		return nil
	}
}

// postNetworksPrune prunes the engine's unused networks, then, on a
// manager, the swarm networks no service uses (filters label, label! and
// until apply to both).
func (s *Server) postNetworksPrune(w http.ResponseWriter, r *http.Request) error {
	args, err := filterArgs(r)
	if err != nil {
		return err
	}
	if err := args.Validate(map[string]bool{"label": true, "label!": true, "until": true}); err != nil {
		return badRequest(err.Error())
	}
	until, err := pruneUntil(args, time.Now())
	if err != nil {
		return badRequest(err.Error())
	}
	var rep network.PruneReport
	if err := s.engineJSON(r.Context(), r, http.MethodPost, "/networks/prune", r.URL.Query(), &rep); err != nil {
		return err
	}
	ctl, nets, err := s.swarmNetworks(r.Context())
	if err != nil {
		return err
	}
	for _, n := range nets {
		d := convert.NetworkToDocker(n)
		if d.Ingress || !prunable(args, d, until) {
			continue
		}
		if _, err := ctl.RemoveNetwork(r.Context(), &api.RemoveNetworkRequest{NetworkId: d.ID}); err != nil {
			// In use (or predefined): kept, as a prune does.
			s.log.Debug("network prune: kept", "network.id", d.ID, "error", err)
			continue
		}
		rep.NetworksDeleted = append(rep.NetworksDeleted, d.Name)
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// pruneUntil reads the until filter (a timestamp or a duration before
// now); the zero time for none.
func pruneUntil(args filters.Args, now time.Time) (time.Time, error) {
	vs := args.Get("until")
	switch len(vs) {
	case 0:
		return time.Time{}, nil
	case 1:
	default:
		return time.Time{}, errors.New("more than one until filter specified")
	}
	if d, err := time.ParseDuration(vs[0]); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, vs[0]); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid until filter: %q is neither a timestamp nor a duration", vs[0])
}

// prunable reports whether a swarm network passes a prune's filters.
func prunable(args filters.Args, n network.Inspect, until time.Time) bool {
	if !until.IsZero() && !n.Created.Before(until) {
		return false
	}
	if args.Contains("label") && !args.MatchKVList("label", n.Labels) {
		return false
	}
	if args.Contains("label!") && args.MatchKVList("label!", n.Labels) {
		return false
	}
	return true
}
