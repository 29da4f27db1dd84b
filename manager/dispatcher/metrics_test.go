package dispatcher

import (
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value is the value of a gauge or counter.
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}

func TestMetricsCountSessionsAndHeartbeats(t *testing.T) {
	// Each step acts on a dispatcher whose nodes n1..n3 first opened a
	// session, then checks the metrics it leaves.
	tests := []struct {
		name           string
		step           func(h *harness, agents map[string]*agent)
		wantSessions   float64
		wantHeartbeats float64
	}{
		{
			name:         "sessions open",
			step:         func(*harness, map[string]*agent) {},
			wantSessions: 3,
		},
		{
			name: "heartbeats counted, refused ones not",
			step: func(h *harness, agents map[string]*agent) {
				for range 2 {
					if _, err := agents["n1"].heartbeat(); err != nil {
						h.t.Fatal(err)
					}
				}
				if _, err := h.client.Heartbeat(h.as("n2"), &api.HeartbeatRequest{SessionId: "bogus"}); err == nil {
					h.t.Fatal("heartbeat on a bogus session accepted")
				}
			},
			wantSessions:   3,
			wantHeartbeats: 2,
		},
		{
			name: "a replaced session counts once",
			step: func(h *harness, agents map[string]*agent) {
				h.connect("n1", nil)
				agents["n1"].waitEnded()
			},
			wantSessions: 3,
		},
		{
			name: "agent goes away",
			step: func(h *harness, agents map[string]*agent) {
				agents["n2"].cancel()
				agents["n2"].waitEnded()
			},
			wantSessions: 2,
		},
		{
			name: "node removed",
			step: func(h *harness, agents map[string]*agent) {
				h.update(func(tx store.Tx) error { return store.DeleteNode(tx, "n3") })
				agents["n3"].waitEnded()
			},
			wantSessions: 2,
		},
		{
			name: "silent nodes expire",
			step: func(h *harness, agents map[string]*agent) {
				h.advanceUntil("sessions expired", DefaultHeartbeatPeriod, func() bool {
					h.d.mu.Lock()
					r := h.d.run
					h.d.mu.Unlock()
					return len(r.reg.all()) == 0
				})
			},
			wantSessions: 0,
		},
		{
			name: "dispatcher stops",
			step: func(h *harness, agents map[string]*agent) {
				h.d.Stop()
				if err := <-h.runErr; err != nil {
					h.t.Fatalf("Run returned %v", err)
				}
			},
			wantSessions: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, seedNodes(
				seedNode("n1", api.NodeStatus_UNKNOWN), seedNode("n2", api.NodeStatus_UNKNOWN), seedNode("n3", api.NodeStatus_UNKNOWN),
			), func(c *Config) { c.Metrics = m })
			agents := map[string]*agent{}
			for _, n := range []string{"n1", "n2", "n3"} {
				agents[n] = h.connect(n, nil)
			}
			tc.step(h, agents)
			// A session's end is recorded as its stream returns, a moment
			// after the agent sees it.
			h.eventually("sessions gauge", func() bool { return value(t, m.sessions) == tc.wantSessions })
			if got := value(t, m.heartbeats); got != tc.wantHeartbeats {
				t.Fatalf("heartbeats counter %v, want %v", got, tc.wantHeartbeats)
			}
		})
	}
}

func TestMetricsAcrossRuns(t *testing.T) {
	// One Metrics serves every run of a dispatcher (leader terms) and
	// every dispatcher of a node (manager restarts).
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	seed := seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN))
	h := newHarness(t, seed, func(c *Config) { c.Metrics = m })
	h.connect("n1", nil)
	h.d.Stop()
	<-h.runErr
	h.start()
	h.connect("n1", nil)
	h.eventually("one session after a new term", func() bool { return value(t, m.sessions) == 1 })

	h2 := newHarness(t, seed, func(c *Config) { c.Metrics = m })
	h2.connect("n1", nil)
	h.eventually("sessions of two dispatchers", func() bool { return value(t, m.sessions) == 2 })
	h.d.Stop()
	h2.d.Stop()
	h.eventually("no session once both stopped", func() bool { return value(t, m.sessions) == 0 })
}
