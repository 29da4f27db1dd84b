package dispatcher

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a dispatcher's Prometheus metrics. A node creates them once,
// on its own registry, and hands them to every dispatcher it runs in turn
// (Config.Metrics), so that managers started and stopped by promotions,
// demotions and leader changes update the same series. A nil *Metrics
// records nothing.
type Metrics struct {
	sessions   prometheus.Gauge
	heartbeats prometheus.Counter
}

// NewMetrics creates the dispatcher metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "swarmd_dispatcher_sessions", Help: "Agent sessions open on this manager's dispatcher.",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "swarmd_dispatcher_heartbeats_total", Help: "Agent heartbeats this manager's dispatcher accepted.",
		}),
	}
	for _, c := range []prometheus.Collector{m.sessions, m.heartbeats} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dispatcher: register metrics: %w", err)
		}
	}
	return m, nil
}

// sessionsAdded records n sessions opened (negative: ended). Every
// registry reports each session it adds or drops, so the gauge is the sum
// over the runs that still hold sessions, however their ends interleave.
func (m *Metrics) sessionsAdded(n int) {
	if m != nil && n != 0 {
		m.sessions.Add(float64(n))
	}
}

func (m *Metrics) heartbeat() {
	if m != nil {
		m.heartbeats.Inc()
	}
}
