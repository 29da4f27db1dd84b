package cluster

import (
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/openswarm/swarmd/api"
)

func TestPickNetwork(t *testing.T) {
	local := []network.Summary{
		{ID: "e1aaaa", Name: "bridge"},
		{ID: "e2bbbb", Name: "shared"},
		{ID: "ccc999", Name: "lonely"},
		// The engine's copy of the swarm network backend.
		{ID: "e3cccc", Name: "backend", Labels: map[string]string{labelSwarmNetworkID: "s1xxxx"}},
	}
	swarmNet := func(id, name string) *api.Network {
		return &api.Network{Id: id, Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: name}}}
	}
	nets := []*api.Network{swarmNet("s1xxxx", "backend"), swarmNet("s2yyyy", "shared"), swarmNet("ccc111", "other")}
	cases := []struct {
		term       string
		swarmScope bool
		engine     string // the engine network's ID expected
		swarm      string // or the swarm network's
		err        string
		code       int
	}{
		{term: "e1aaaa", engine: "e1aaaa"},
		{term: "bridge", engine: "e1aaaa"},
		{term: "s1xxxx", swarm: "s1xxxx"},
		{term: "backend", swarm: "s1xxxx"},
		{term: "s1", swarm: "s1xxxx"},
		{term: "e2", engine: "e2bbbb"},
		{term: "e3cccc", err: "network e3cccc not found", code: 404},
		{term: "shared", err: "2 matches found based on name: network shared is ambiguous", code: 400},
		{term: "shared", swarmScope: true, swarm: "s2yyyy"},
		{term: "ccc", err: "2 matches found based on ID prefix: network ccc is ambiguous", code: 400},
		{term: "nope", err: "network nope not found", code: 404},
		{term: "", err: "network  not found", code: 404},
	}
	for _, tc := range cases {
		t.Run(tc.term, func(t *testing.T) {
			ref, err := pickNetwork(tc.term, local, nets, tc.swarmScope, inspectAmbiguity)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || statusOf(err) != tc.code {
					t.Fatalf("error %v (%d), want %q (%d)", err, statusOf(err), tc.err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.engine != "" && (ref.engine == nil || ref.engine.ID != tc.engine):
				t.Fatalf("got %+v, want engine network %s", ref, tc.engine)
			case tc.swarm != "" && (ref.swarm == nil || ref.swarm.GetId() != tc.swarm):
				t.Fatalf("got %+v, want swarm network %s", ref, tc.swarm)
			}
		})
	}
	if err := actionAmbiguity("x", 2, "name"); err.Error() != "network x is ambiguous (2 matches found based on name)" {
		t.Errorf("action ambiguity: %v", err)
	}
}

func TestPrunable(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	n := network.Inspect{Created: now.Add(-2 * time.Hour), Labels: map[string]string{"keep": "yes", "tier": "db"}}
	cases := []struct {
		args filters.Args
		want bool
		err  bool
	}{
		{args: filters.NewArgs(), want: true},
		{args: filters.NewArgs(filters.Arg("until", "1h")), want: true},
		{args: filters.NewArgs(filters.Arg("until", "3h")), want: false},
		{args: filters.NewArgs(filters.Arg("until", "2026-06-01T11:00:00Z")), want: true},
		{args: filters.NewArgs(filters.Arg("label", "tier=db")), want: true},
		{args: filters.NewArgs(filters.Arg("label", "tier=web")), want: false},
		{args: filters.NewArgs(filters.Arg("label!", "keep")), want: false},
		{args: filters.NewArgs(filters.Arg("label!", "other")), want: true},
		{args: filters.NewArgs(filters.Arg("until", "soon")), err: true},
		{args: filters.NewArgs(filters.Arg("until", "1h"), filters.Arg("until", "2h")), err: true},
	}
	for _, tc := range cases {
		until, err := pruneUntil(tc.args, now)
		if tc.err {
			if err == nil {
				t.Errorf("%v: no error", tc.args)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := prunable(tc.args, n, until); got != tc.want {
			t.Errorf("%v: prunable %v, want %v", tc.args, got, tc.want)
		}
	}
}
