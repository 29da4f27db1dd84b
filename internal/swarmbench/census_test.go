package swarmbench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestWithDebug(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantArgs []string
		wantAddr string
	}{
		{"added", []string{"--x"}, []string{"--x", "--listen-debug=127.0.0.71:4243"}, "127.0.0.71:4243"},
		{"given with =", []string{"--listen-debug=127.0.0.1:6060"}, []string{"--listen-debug=127.0.0.1:6060"}, "127.0.0.1:6060"},
		{"given apart", []string{"--listen-debug", "127.0.0.1:6060"}, []string{"--listen-debug", "127.0.0.1:6060"}, "127.0.0.1:6060"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args, addr := withDebug(tc.args, "127.0.0.71:4243")
			if !slices.Equal(args, tc.wantArgs) || addr != tc.wantAddr {
				t.Fatalf("withDebug = %q, %q; want %q, %q", args, addr, tc.wantArgs, tc.wantAddr)
			}
		})
	}
}

// TestCountTasks reads the swarmd_tasks metric as the manager serves it.
func TestCountTasks(t *testing.T) {
	const metrics = `# TYPE swarmd_tasks gauge
swarmd_tasks{state="pending"} 3
swarmd_tasks{state="assigned"} 5
swarmd_tasks{state="running"} 7
swarmd_tasks{state="unknown_state"} 100
# TYPE swarmd_nodes gauge
swarmd_nodes{state="ready"} 2
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(metrics))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name string
		in   func(api.TaskState) bool
		want int
	}{
		{"assigned or further", atLeast(api.TaskState_TASK_STATE_ASSIGNED), 12},
		{"running", func(s api.TaskState) bool { return s == api.TaskState_TASK_STATE_RUNNING }, 7},
		{"any known", func(api.TaskState) bool { return true }, 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := countTasks(context.Background(), addr, tc.in)
			if err != nil || n != tc.want {
				t.Fatalf("countTasks = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
	if _, err := countTasks(context.Background(), addr+"/nope", atLeast(0)); err == nil {
		t.Fatal("a failed scrape must be an error")
	}
}
