package main

import (
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestTaskName(t *testing.T) {
	tests := []struct {
		task *api.Task
		want string
	}{
		{&api.Task{Annotations: &api.Annotations{Name: "web.3"}, Slot: 3}, "web.3"},
		{&api.Task{Annotations: &api.Annotations{Name: "agent.node1"}}, "agent.node1"},
		{&api.Task{ServiceAnnotations: &api.Annotations{Name: "web"}, Slot: 2}, "web.2"},
	}
	for _, tt := range tests {
		if got := taskName(tt.task); got != tt.want {
			t.Errorf("taskName(%v) = %q, want %q", tt.task, got, tt.want)
		}
	}
}
