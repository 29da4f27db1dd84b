// Package constraint parses placement constraints ("node.labels.zone==east",
// "node.role!=manager") and matches them against nodes. The scheduler, the
// global orchestrator and the constraint enforcer all decide with it, so a
// node is eligible for a task in one place only.
package constraint

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/openswarm/swarmd/api"
)

// Operator compares a node attribute with a constraint's value.
type Operator int

// Operators, in the order an expression is searched for them.
const (
	Eq Operator = iota
	NotEq
)

var operators = []struct {
	text string
	op   Operator
}{{"==", Eq}, {"!=", NotEq}}

var (
	validKey   = regexp.MustCompile(`^(?i)[a-z_][a-z0-9\-_.]+$`)
	validValue = regexp.MustCompile(`^(?i)[a-z0-9:\-_\s\.\*\(\)\?\+\[\]\\\^\$\|\/]+$`)
)

// Constraint is one parsed expression.
type Constraint struct {
	Key   string
	Op    Operator
	Value string
}

func (c Constraint) String() string {
	return c.Key + operators[c.Op].text + c.Value
}

// Parse parses expressions of the form key==value or key!=value (spaces
// around key and value are ignored). The errors are the texts docker users
// see for a bad constraint.
func Parse(exprs []string) ([]Constraint, error) {
	out := make([]Constraint, 0, len(exprs))
	for _, e := range exprs {
		c, err := parseOne(e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func parseOne(e string) (Constraint, error) {
	for _, o := range operators {
		key, value, ok := strings.Cut(e, o.text)
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !validKey.MatchString(key) {
			return Constraint{}, fmt.Errorf("key '%s' is invalid", key)
		}
		if !validValue.MatchString(value) {
			return Constraint{}, fmt.Errorf("value '%s' is invalid", value)
		}
		return Constraint{Key: key, Op: o.op, Value: value}, nil
	}
	return Constraint{}, fmt.Errorf("constraint expected one operator from ==, !=")
}

// Match reports whether node satisfies every constraint. Keys are
// node.id, node.hostname, node.role, node.platform.os,
// node.platform.arch, node.labels.<label> (the node's spec labels) and
// engine.labels.<label> (the engine's labels). Values compare without
// regard to case, except label values and IDs, which compare exactly.
// An unknown key, or a label the node does not have, satisfies only !=.
func Match(cs []Constraint, n *api.Node) bool {
	for _, c := range cs {
		if !matchOne(c, n) {
			return false
		}
	}
	return true
}

func matchOne(c Constraint, n *api.Node) bool {
	have, ok, fold := attribute(c.Key, n)
	equal := ok && (have == c.Value || fold && strings.EqualFold(have, c.Value))
	if c.Op == Eq {
		return equal
	}
	return !equal
}

// attribute returns the node's value for key, whether it has one, and
// whether it compares without regard to case.
func attribute(key string, n *api.Node) (value string, ok, fold bool) {
	desc := n.GetDescription()
	lower := strings.ToLower(key)
	switch lower {
	case "node.id":
		return n.GetId(), true, false
	case "node.hostname":
		return desc.GetHostname(), true, true
	case "node.role":
		return roleName(n.GetRole()), true, true
	case "node.platform.os":
		return desc.GetPlatform().GetOs(), true, true
	case "node.platform.arch":
		return desc.GetPlatform().GetArchitecture(), true, true
	}
	switch {
	case strings.HasPrefix(lower, "node.labels."):
		v, ok := n.GetSpec().GetAnnotations().GetLabels()[key[len("node.labels."):]]
		return v, ok, false
	case strings.HasPrefix(lower, "engine.labels."):
		v, ok := desc.GetEngine().GetLabels()[key[len("engine.labels."):]]
		return v, ok, false
	}
	return "", false, false
}

func roleName(r api.NodeRole) string {
	if r == api.NodeRole_NODE_ROLE_MANAGER {
		return "manager"
	}
	return "worker"
}
