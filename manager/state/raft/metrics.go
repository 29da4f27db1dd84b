package raft

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a raft member's Prometheus metrics. A node creates them once,
// on its own registry, and hands them to every raft member it runs in turn
// (Config.Metrics): a manager stopped by a demotion and started again by a
// promotion updates the same series. A nil *Metrics records nothing.
type Metrics struct {
	term            prometheus.Gauge
	isLeader        prometheus.Gauge
	leaderChanges   prometheus.Counter
	commitLatency   prometheus.Histogram
	proposalsFailed prometheus.Counter
	applied         prometheus.Gauge
}

// NewMetrics creates the raft metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		term: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "swarmd_raft_term", Help: "Current raft term, as this member knows it.",
		}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "swarmd_raft_is_leader", Help: "1 while this member leads the raft group, else 0.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "swarmd_raft_leader_changes_total", Help: "Times this member saw the leader change (including to no leader).",
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "swarmd_raft_commit_latency_seconds",
			Help: "Time from proposing a store transaction to applying it on this member.",
			// 100µs to 10s, each bucket about twice as wide as the last.
			Buckets: prometheus.ExponentialBucketsRange(100e-6, 10, 16),
		}),
		proposalsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "swarmd_raft_proposals_failed_total", Help: "Store transactions proposed on this member that were not applied (no leader, stopped, too large, cancelled).",
		}),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "swarmd_raft_applied_index", Help: "Last raft log index applied to this member's store.",
		}),
	}
	for _, c := range []prometheus.Collector{m.term, m.isLeader, m.leaderChanges, m.commitLatency, m.proposalsFailed, m.applied} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("raft: register metrics: %w", err)
		}
	}
	return m, nil
}

// leaderChanged records a change of leader; leads says whether this member
// is the new one.
func (m *Metrics) leaderChanged(leads bool) {
	if m == nil {
		return
	}
	m.leaderChanges.Inc()
	if leads {
		m.isLeader.Set(1)
	} else {
		m.isLeader.Set(0)
	}
}

func (m *Metrics) setTerm(term uint64) {
	if m != nil {
		m.term.Set(float64(term))
	}
}

func (m *Metrics) setApplied(index uint64) {
	if m != nil {
		m.applied.Set(float64(index))
	}
}

// proposed records the outcome of one proposal: applied, after latency, or
// failed.
func (m *Metrics) proposed(latency time.Duration, applied bool) {
	if m == nil {
		return
	}
	if applied {
		m.commitLatency.Observe(latency.Seconds())
	} else {
		m.proposalsFailed.Inc()
	}
}

// notProposed carries the error of a transaction raft did not take, so that
// ProposeValue tells it from the result of applying the transaction.
type notProposed struct{ err error }

func (e notProposed) Error() string { return e.err.Error() }
func (e notProposed) Unwrap() error { return e.err }
