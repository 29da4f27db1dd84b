package executor

import (
	"runtime"
	"strings"
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestExpandContainerSpec(t *testing.T) {
	withSpec := func(mut func(*api.ContainerSpec)) *api.Task {
		return testTask(func(tk *api.Task) {
			tk.ServiceAnnotations.Labels = map[string]string{"tier": "front"}
			mut(tk.Spec.Container)
		})
	}
	tests := []struct {
		name     string
		task     *api.Task
		hostname string
		env      []string
		source   string
		target   string
		err      string
	}{
		{name: "no templates", task: withSpec(func(c *api.ContainerSpec) { c.Hostname = "plain"; c.Env = []string{"A=b"} }),
			hostname: "plain", env: []string{"A=b"}},
		{name: "hostname from node and slot", task: withSpec(func(c *api.ContainerSpec) { c.Hostname = "{{.Node.Hostname}}-{{.Task.Slot}}" }),
			hostname: "host-a-2"},
		{name: "env from service, task and platform", task: withSpec(func(c *api.ContainerSpec) {
			c.Env = []string{"SVC={{.Service.Name}}", "ID={{.Service.ID}}", "TASK={{.Task.Name}}", "TIER={{index .Service.Labels \"tier\"}}", "OS={{.Node.Platform.OS}}", "NODE={{.Node.ID}}"}
		}),
			env: []string{"SVC=web", "ID=svc1", "TASK=web.2.task1", "TIER=front", "OS=" + runtime.GOOS, "NODE=node1"}},
		{name: "mount source and target", task: withSpec(func(c *api.ContainerSpec) {
			c.Mounts = []*api.Mount{{Type: api.Mount_VOLUME, Source: "data-{{.Task.Slot}}", Target: "/data/{{.Service.Name}}"}}
		}),
			source: "data-2", target: "/data/web"},
		{name: "unknown field", task: withSpec(func(c *api.ContainerSpec) { c.Hostname = "{{.Node.Nope}}" }),
			err: "template in hostname"},
		{name: "bad syntax", task: withSpec(func(c *api.ContainerSpec) { c.Env = []string{"A={{.Task.Slot"} }),
			err: "template in env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.task.GetSpec().GetContainer().GetHostname()
			got, err := expandContainerSpec(tt.task, "node1", "host-a")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.task.GetSpec().GetContainer().GetHostname() != before {
				t.Fatal("the task given was changed")
			}
			cs := got.GetSpec().GetContainer()
			if tt.hostname != "" && cs.GetHostname() != tt.hostname {
				t.Errorf("hostname %q, want %q", cs.GetHostname(), tt.hostname)
			}
			if tt.env != nil && strings.Join(cs.GetEnv(), ",") != strings.Join(tt.env, ",") {
				t.Errorf("env %q, want %q", cs.GetEnv(), tt.env)
			}
			if tt.source != "" {
				m := cs.GetMounts()[0]
				if m.GetSource() != tt.source || m.GetTarget() != tt.target {
					t.Errorf("mount %s:%s, want %s:%s", m.GetSource(), m.GetTarget(), tt.source, tt.target)
				}
			}
		})
	}
}
