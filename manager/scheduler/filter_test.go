package scheduler

import (
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestExplain(t *testing.T) {
	cases := []struct {
		failures map[filter]int
		want     string
	}{
		{nil, "no suitable node"},
		{map[filter]int{filterReady: 1}, "no suitable node (1 node not available for new tasks)"},
		{map[filter]int{filterReady: 3}, "no suitable node (3 nodes not available for new tasks)"},
		{map[filter]int{filterResources: 1}, "no suitable node (insufficient resources on 1 node)"},
		{map[filter]int{filterResources: 2}, "no suitable node (insufficient resources on 2 nodes)"},
		{map[filter]int{filterConstraints: 3}, "no suitable node (scheduling constraints not satisfied on 3 nodes)"},
		{map[filter]int{filterPlatform: 1}, "no suitable node (unsupported platform on 1 node)"},
		{map[filter]int{filterHostPorts: 2}, "no suitable node (host-mode port already in use on 2 nodes)"},
		{map[filter]int{filterMaxReplicas: 5}, "no suitable node (max replicas per node limit exceed)"},
		{
			map[filter]int{filterMaxReplicas: 1, filterReady: 2, filterConstraints: 1},
			"no suitable node (2 nodes not available for new tasks; scheduling constraints not satisfied on 1 node; max replicas per node limit exceed)",
		},
	}
	for _, c := range cases {
		p := newPipeline(mkTask("t", "s"))
		for f, n := range c.failures {
			p.failures[f] = n
		}
		if got := p.explain(); got != c.want {
			t.Errorf("explain(%v) = %q, want %q", c.failures, got, c.want)
		}
	}
}

func TestPipelineEnablesOnlyWhatTheSpecAsks(t *testing.T) {
	cases := []struct {
		name string
		task *api.Task
		want []filter
	}{
		{"bare", mkTask("t", "s"), []filter{filterReady}},
		{"limits only", mkTask("t", "s", func(t *api.Task) {
			t.Spec.Resources = &api.ResourceRequirements{Limits: &api.Resources{NanoCpus: cpu}}
		}), []filter{filterReady}},
		{"everything", mkTask("t", "s", reserve(0, 1), constraints("node.role==worker"), platforms(&api.Platform{Os: "linux"}), hostTCP(80), maxReplicas(2)),
			[]filter{filterReady, filterResources, filterConstraints, filterPlatform, filterHostPorts, filterMaxReplicas}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPipeline(c.task)
			if len(p.active) != len(c.want) {
				t.Fatalf("active %v, want %v", p.active, c.want)
			}
			for i := range p.active {
				if p.active[i] != c.want[i] {
					t.Fatalf("active %v, want %v", p.active, c.want)
				}
			}
		})
	}
}

func TestPlatformSupported(t *testing.T) {
	linuxAMD := &api.Platform{Os: "linux", Architecture: "x86_64"}
	cases := []struct {
		want []*api.Platform
		have *api.Platform
		ok   bool
	}{
		{[]*api.Platform{{Os: "linux", Architecture: "amd64"}}, linuxAMD, true},
		{[]*api.Platform{{Os: "LINUX"}}, linuxAMD, true},
		{[]*api.Platform{{Architecture: "X86-64"}}, linuxAMD, true},
		{[]*api.Platform{{}}, linuxAMD, true},
		{[]*api.Platform{{Os: "windows"}, {Architecture: "amd64"}}, linuxAMD, true},
		{[]*api.Platform{{Os: "linux", Architecture: "arm64"}}, linuxAMD, false},
		{[]*api.Platform{{Architecture: "arm64"}}, &api.Platform{Os: "linux", Architecture: "aarch64"}, true},
		{[]*api.Platform{{Architecture: "386"}}, &api.Platform{Os: "linux", Architecture: "i686"}, true},
		{[]*api.Platform{{Os: "linux"}}, nil, false},
	}
	for _, c := range cases {
		if got := platformSupported(c.want, c.have); got != c.ok {
			t.Errorf("platformSupported(%v, %v) = %v, want %v", c.want, c.have, got, c.ok)
		}
	}
}

func TestParseSpread(t *testing.T) {
	cases := []struct {
		descriptor string
		want       spreadLevel
	}{
		{"node.labels.zone", spreadLevel{key: "zone"}},
		{" Node.Labels.Zone ", spreadLevel{key: "Zone"}},
		{"engine.labels.dc", spreadLevel{engine: true, key: "dc"}},
		{"node.labels.", spreadLevel{}},
		{"node.hostname", spreadLevel{}},
		{"", spreadLevel{}},
	}
	for _, c := range cases {
		if got := parseSpread(c.descriptor); got != c.want {
			t.Errorf("parseSpread(%q) = %+v, want %+v", c.descriptor, got, c.want)
		}
	}
}
