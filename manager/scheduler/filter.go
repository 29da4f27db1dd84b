package scheduler

import (
	"strconv"
	"strings"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/constraint"
)

// filter is one reason a node may refuse a task. Filters run in the order
// of their values; a node is counted against the first one it fails.
type filter int

const (
	filterReady filter = iota
	filterResources
	filterConstraints
	filterPlatform
	filterHostPorts
	filterMaxReplicas
	numFilters
)

// dynamic reports whether placing a task of the group on a node can make
// the node fail f for the next task of the group.
func (f filter) dynamic() bool {
	return f == filterResources || f == filterHostPorts || f == filterMaxReplicas
}

// explain says why n nodes failed f, in docker's words.
func (f filter) explain(n int) string {
	switch f {
	case filterReady:
		return nodes(n) + " not available for new tasks"
	case filterResources:
		return "insufficient resources on " + nodes(n)
	case filterConstraints:
		return "scheduling constraints not satisfied on " + nodes(n)
	case filterPlatform:
		return "unsupported platform on " + nodes(n)
	case filterHostPorts:
		return "host-mode port already in use on " + nodes(n)
	case filterMaxReplicas:
		return "max replicas per node limit exceed"
	}
	return "filter " + strconv.Itoa(int(f)) + " failed on " + nodes(n)
}

// nodes is "1 node" or "n nodes".
func nodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return strconv.Itoa(n) + " nodes"
}

// noSuitableNode is the error of a task no node takes.
const noSuitableNode = "no suitable node"

// pipeline checks nodes for the tasks of one group, which share their
// spec, and counts the nodes each filter rejected.
type pipeline struct {
	service          string
	nanoCPUs, memory int64
	constraints      []constraint.Constraint
	badConstraints   bool // the constraints do not parse: no node satisfies them
	platforms        []*api.Platform
	ports            []hostPort
	maxReplicas      uint64
	active           []filter // the filters t's spec enables, in order
	failures         [numFilters]int
}

// newPipeline returns the pipeline for tasks with t's spec and endpoint.
func newPipeline(t *api.Task) *pipeline {
	p := &pipeline{service: t.GetServiceId(), active: []filter{filterReady}}
	p.nanoCPUs, p.memory = reservations(t)
	if p.nanoCPUs > 0 || p.memory > 0 {
		p.active = append(p.active, filterResources)
	}
	placement := t.GetSpec().GetPlacement()
	if exprs := placement.GetConstraints(); len(exprs) > 0 {
		cs, err := constraint.Parse(exprs)
		p.constraints, p.badConstraints = cs, err != nil
		p.active = append(p.active, filterConstraints)
	}
	if ps := placement.GetPlatforms(); len(ps) > 0 {
		p.platforms = ps
		p.active = append(p.active, filterPlatform)
	}
	if p.ports = taskHostPorts(t); len(p.ports) > 0 {
		p.active = append(p.active, filterHostPorts)
	}
	if p.maxReplicas = placement.GetMaxReplicas(); p.maxReplicas > 0 {
		p.active = append(p.active, filterMaxReplicas)
	}
	return p
}

// fits reports whether n passes every filter; if not, the first filter
// it fails counts it.
func (p *pipeline) fits(n *nodeInfo) bool {
	for _, f := range p.active {
		if !p.pass(f, n) {
			p.failures[f]++
			return false
		}
	}
	return true
}

// fitsAnother re-checks n after a task of the group was placed on it: it
// reports whether n takes one more, and if not, counts n against the
// first filter it now fails. Only the filters a placement can change are
// checked.
func (p *pipeline) fitsAnother(n *nodeInfo) bool {
	for _, f := range p.active {
		if f.dynamic() && !p.pass(f, n) {
			p.failures[f]++
			return false
		}
	}
	return true
}

func (p *pipeline) pass(f filter, n *nodeInfo) bool {
	switch f {
	case filterReady:
		return n.ready()
	case filterResources:
		cpu, mem := n.available()
		return p.nanoCPUs <= cpu && p.memory <= mem
	case filterConstraints:
		return !p.badConstraints && constraint.Match(p.constraints, n.node)
	case filterPlatform:
		return platformSupported(p.platforms, n.node.GetDescription().GetPlatform())
	case filterHostPorts:
		for _, hp := range p.ports {
			if n.ports[hp] > 0 {
				return false
			}
		}
		return true
	case filterMaxReplicas:
		return uint64(n.services[p.service]) < p.maxReplicas
	}
	return false
}

// reset forgets the failures counted so far.
func (p *pipeline) reset() { p.failures = [numFilters]int{} }

// explain is the error of a task that found no node: "no suitable node"
// and, if any node was rejected, why, filter by filter.
func (p *pipeline) explain() string {
	var parts []string
	for f := range numFilters {
		if n := p.failures[f]; n > 0 {
			parts = append(parts, f.explain(n))
		}
	}
	if len(parts) == 0 {
		return noSuitableNode
	}
	return noSuitableNode + " (" + strings.Join(parts, "; ") + ")"
}

// platformSupported reports whether the node's platform is one of want.
// An empty field of a wanted platform matches anything; operating systems
// compare without regard to case and architectures by their usual aliases
// (amd64 is x86_64, arm64 is aarch64). A node that reports no platform
// supports none.
func platformSupported(want []*api.Platform, have *api.Platform) bool {
	if have == nil {
		return false
	}
	for _, w := range want {
		if (w.GetArchitecture() == "" || normalizeArch(w.GetArchitecture()) == normalizeArch(have.GetArchitecture())) &&
			(w.GetOs() == "" || strings.EqualFold(w.GetOs(), have.GetOs())) {
			return true
		}
	}
	return false
}

// normalizeArch maps the names engines and images use for one
// architecture to one name.
func normalizeArch(arch string) string {
	switch a := strings.ToLower(arch); a {
	case "x86_64", "x86-64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i686", "386":
		return "386"
	default:
		return a
	}
}
