package executor

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"text/template"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// Templates: a service's hostname, environment and mount sources and
// targets may use Go templates over the task's service, node and task
// (`--hostname "{{.Node.Hostname}}-{{.Task.Slot}}"`), expanded on the node
// when the container is made, as docker does.

// templateContext is what a template sees.
type templateContext struct {
	Service struct {
		ID     string
		Name   string
		Labels map[string]string
	}
	Node struct {
		ID       string
		Hostname string
		Platform struct {
			OS           string
			Architecture string
		}
	}
	Task struct {
		ID   string
		Name string
		Slot string
	}
}

// newTemplateContext describes task t on the node nodeID named hostname.
func newTemplateContext(t *api.Task, nodeID, hostname string) templateContext {
	var c templateContext
	c.Service.ID = t.GetServiceId()
	c.Service.Name = serviceName(t)
	c.Service.Labels = t.GetServiceAnnotations().GetLabels()
	c.Node.ID = nodeID
	c.Node.Hostname = hostname
	c.Node.Platform.OS = runtime.GOOS
	c.Node.Platform.Architecture = runtime.GOARCH
	c.Task.ID = t.GetId()
	c.Task.Name = containerName(t, nodeID)
	if t.GetSlot() != 0 {
		c.Task.Slot = strconv.FormatUint(t.GetSlot(), 10)
	} else {
		c.Task.Slot = nodeID // a global service's task: one per node
	}
	return c
}

// expand renders s as a template over c; a string without "{{" is
// returned as it is.
func (c templateContext) expand(what, s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	tmpl, err := template.New(what).Option("missingkey=error").Parse(s)
	if err != nil {
		return "", fmt.Errorf("executor: template in %s: %w", what, err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, c); err != nil {
		return "", fmt.Errorf("executor: template in %s: %w", what, err)
	}
	return b.String(), nil
}

// expandContainerSpec returns t with the templates of its container spec's
// hostname, environment and mounts expanded (t itself when it has none).
func expandContainerSpec(t *api.Task, nodeID, hostname string) (*api.Task, error) {
	spec := t.GetSpec().GetContainer()
	if spec == nil || !hasTemplates(spec) {
		return t, nil
	}
	c := newTemplateContext(t, nodeID, hostname)
	out := proto.Clone(t).(*api.Task)
	cs := out.GetSpec().GetContainer()
	var err error
	if cs.Hostname, err = c.expand("hostname", cs.GetHostname()); err != nil {
		return nil, err
	}
	for i, e := range cs.GetEnv() {
		if cs.Env[i], err = c.expand("env", e); err != nil {
			return nil, err
		}
	}
	for _, m := range cs.GetMounts() {
		if m.Source, err = c.expand("mount source", m.GetSource()); err != nil {
			return nil, err
		}
		if m.Target, err = c.expand("mount target", m.GetTarget()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hasTemplates reports whether a field expandContainerSpec expands holds a
// template.
func hasTemplates(spec *api.ContainerSpec) bool {
	fields := append([]string{spec.GetHostname()}, spec.GetEnv()...)
	for _, m := range spec.GetMounts() {
		fields = append(fields, m.GetSource(), m.GetTarget())
	}
	for _, f := range fields {
		if strings.Contains(f, "{{") {
			return true
		}
	}
	return false
}
