package main

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/node"
)

// scrape reads the samples of a Prometheus text exposition, by series
// (name and labels as written).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("malformed sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// freeAddr is a 127.0.0.1 address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// TestDebugServerServesNodeMetrics starts a one-manager swarm in-process
// with the metrics the debug server serves, and scrapes them.
func TestDebugServerServesNodeMetrics(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg, metrics, err := debugMetrics()
	if err != nil {
		t.Fatal(err)
	}
	addr, remote := freeAddr(t), freeAddr(t)
	stop, err := serveDebug(addr, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	url := "http://" + addr + "/metrics"

	before := scrape(t, url)
	if v, ok := before["swarmd_node_is_manager"]; !ok || v != 0 {
		t.Fatalf("before the node starts: swarmd_node_is_manager = %v (reported: %v), want 0", v, ok)
	}
	if _, ok := before[`swarmd_store_objects{kind="node"}`]; ok {
		t.Fatal("store objects reported without a manager")
	}

	dir := t.TempDir()
	n, err := node.New(node.Config{
		StateDir: filepath.Join(dir, "state"), Init: true, Hostname: "m1",
		ListenRemoteAPI: remote, ListenControlAPI: filepath.Join(dir, "m1.sock"),
		TickInterval: 20 * time.Millisecond, Logger: logger, Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	select {
	case <-n.Ready():
	case <-n.Done():
		t.Fatalf("node stopped: %v", n.Err(context.Background()))
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready after 30s")
	}

	// The node's own agent registers through the dispatcher: its node
	// object, its session and heartbeats follow.
	want := []struct {
		series string
		ok     func(float64) bool
	}{
		{"swarmd_node_is_manager", func(v float64) bool { return v == 1 }},
		{"swarmd_raft_is_leader", func(v float64) bool { return v == 1 }},
		{"swarmd_raft_term", func(v float64) bool { return v >= 1 }},
		{"swarmd_raft_leader_changes_total", func(v float64) bool { return v >= 1 }},
		{"swarmd_raft_applied_index", func(v float64) bool { return v >= 1 }},
		{"swarmd_raft_commit_latency_seconds_count", func(v float64) bool { return v >= 1 }},
		{`swarmd_store_objects{kind="node"}`, func(v float64) bool { return v >= 1 }},
		{`swarmd_store_objects{kind="cluster"}`, func(v float64) bool { return v == 1 }},
		{`swarmd_nodes{state="ready"}`, func(v float64) bool { return v >= 1 }},
		{`swarmd_tasks{state="running"}`, func(v float64) bool { return v == 0 }},
		{"swarmd_dispatcher_sessions", func(v float64) bool { return v == 1 }},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := scrape(t, url)
		var missing []string
		for _, w := range want {
			if v, ok := got[w.series]; !ok || !w.ok(v) {
				missing = append(missing, w.series+"="+strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics not as expected after 30s: %v", missing)
		}
		select {
		case <-n.Done():
			t.Fatalf("node stopped: %v", n.Err(context.Background()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }
