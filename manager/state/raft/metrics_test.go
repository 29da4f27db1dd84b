package raft_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/manager/state/raft/raftest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metric returns the value of the unlabelled metric name in reg: a gauge's
// or counter's value, a histogram's sample count; -1 if reg has no such
// metric.
func metric(t testing.TB, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		switch mf.GetType() {
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func TestMetricsFollowLeadershipAndCommits(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	old := c.WaitLeader()
	raftest.Eventually(t, 10*time.Second, "is_leader and term on every member", func() bool {
		for _, m := range c.Running() {
			want := 0.0
			if m == old {
				want = 1
			}
			if metric(t, m.Registry, "swarmd_raft_is_leader") != want ||
				metric(t, m.Registry, "swarmd_raft_term") != float64(m.Node.Term()) ||
				metric(t, m.Registry, "swarmd_raft_leader_changes_total") < 1 {
				return false
			}
		}
		return true
	})
	if term := metric(t, old.Registry, "swarmd_raft_term"); term < 1 {
		t.Fatalf("leader's swarmd_raft_term = %v, want >= 1", term)
	}

	// Every transaction proposed through a member is timed there, leader
	// or follower.
	for i, m := range c.Running() {
		before := metric(t, m.Registry, "swarmd_raft_commit_latency_seconds")
		createServices(t, m, fmt.Sprintf("via-%d", i), 3)
		if got := metric(t, m.Registry, "swarmd_raft_commit_latency_seconds"); got != before+3 {
			t.Fatalf("%s: commit latency samples %v after 3 proposals, want %v", m.Name, got, before+3)
		}
		if failed := metric(t, m.Registry, "swarmd_raft_proposals_failed_total"); failed != 0 {
			t.Fatalf("%s: %v proposals failed, want 0", m.Name, failed)
		}
	}
	c.WaitConverged()
	for _, m := range c.Running() {
		raftest.Eventually(t, 10*time.Second, m.Name+" applied index metric", func() bool {
			return metric(t, m.Registry, "swarmd_raft_applied_index") == float64(m.Node.AppliedIndex())
		})
	}

	// The leader goes: the others see the change and one of them leads.
	changes := map[*raftest.Member]float64{}
	for _, m := range c.Running() {
		changes[m] = metric(t, m.Registry, "swarmd_raft_leader_changes_total")
	}
	oldTerm := old.Node.Term()
	c.Stop(old)
	if got := metric(t, old.Registry, "swarmd_raft_is_leader"); got != 0 {
		t.Fatalf("stopped member: swarmd_raft_is_leader = %v, want 0", got)
	}
	l := c.WaitLeader()
	raftest.Eventually(t, 10*time.Second, "the new leader's metrics", func() bool {
		return metric(t, l.Registry, "swarmd_raft_is_leader") == 1 &&
			metric(t, l.Registry, "swarmd_raft_term") > float64(oldTerm)
	})
	for _, m := range c.Running() {
		if got := metric(t, m.Registry, "swarmd_raft_leader_changes_total"); got <= changes[m] {
			t.Fatalf("%s: leader changes %v after a failover, want more than %v", m.Name, got, changes[m])
		}
	}
}

func TestMetricsCountFailedProposals(t *testing.T) {
	tests := []struct {
		name    string
		propose func(t *testing.T, c *raftest.Cluster) *raftest.Member
		wantErr error
	}{
		{
			name: "too large",
			propose: func(t *testing.T, c *raftest.Cluster) *raftest.Member {
				m := c.WaitLeader()
				big := &api.StoreAction{Target: &api.StoreAction_Service{Service: &api.Service{Id: string(bytes.Repeat([]byte("x"), raft.DefaultMaxProposalBytes))}}}
				err := m.Node.ProposeValue(ctxT(t, 10*time.Second), []*api.StoreAction{big})
				if !errors.Is(err, raft.ErrProposalTooLarge) {
					t.Fatalf("ProposeValue: %v, want %v", err, raft.ErrProposalTooLarge)
				}
				return m
			},
		},
		{
			name: "member cut off from the others",
			propose: func(t *testing.T, c *raftest.Cluster) *raftest.Member {
				f := c.Followers()[0]
				var others []*raftest.Member
				for _, m := range c.Running() {
					if m != f {
						others = append(others, m)
					}
				}
				c.Partition([]*raftest.Member{f}, others)
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				if err := f.Node.ProposeValue(ctx, nil); err == nil {
					t.Fatal("a proposal through a member cut off from the quorum was applied")
				}
				return f
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := raftest.New(t, 3, raftest.Options{})
			m := tc.propose(t, c)
			if got := metric(t, m.Registry, "swarmd_raft_proposals_failed_total"); got != 1 {
				t.Fatalf("swarmd_raft_proposals_failed_total = %v, want 1", got)
			}
			if got := metric(t, m.Registry, "swarmd_raft_commit_latency_seconds"); got != 0 {
				t.Fatalf("commit latency samples %v, want 0", got)
			}
		})
	}
}

func TestNewMetricsRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := raft.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := raft.NewMetrics(reg); err == nil {
		t.Fatal("registering the raft metrics twice on one registry succeeded")
	}
}
