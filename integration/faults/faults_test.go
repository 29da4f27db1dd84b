//go:build integration

// Package faults checks, with porcupine, that swarmd managers replicating
// the cluster store with Raft stay linearizable while a leader is killed or
// cut off from the other managers. It runs on the multi-host testbed: three
// hosts, each with its own engine and swarmd, all three managers. The
// registers are labels of services with no replicas; clients on every host
// read them (ServiceInspect) and write them (ServiceUpdate with the version
// they read just before) through swarmd's Engine API.
package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/openswarm/swarmd/integration/testbed"
)

const (
	// label is the service label that holds a register's value.
	label = "k"
	// reqTimeout bounds every client request.
	reqTimeout = 3 * time.Second
	// registers is the number of services (keys).
	registers = 3
	// clients is the number of concurrent clients, spread over the hosts.
	clients = 6
)

// swarmdBin builds the binaries once (or uses SWARMD_BIN_DIR).
var swarmdBin = sync.OnceValues(testbed.BuildBinaries)

// seed returns SWARMD_FAULT_SEED if set, else a fresh seed; it is logged.
func seed(t testing.TB) uint64 {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("SWARMD_FAULT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SWARMD_FAULT_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("seed %d (reproduce with SWARMD_FAULT_SEED=%d)", s, s)
	return s
}

// cluster is a testbed of three hosts whose swarmd are all managers.
type cluster struct {
	t     testing.TB
	ctx   context.Context
	tb    *testbed.Testbed
	hosts []*testbed.Host
	cli   map[*testbed.Host]*client.Client
	svcs  []string // service IDs, one per register
	// probes are service IDs, one per manager (c.hosts), that probe
	// writes through that manager only (probe).
	probes []string
}

// newCluster is three managers on the testbed, h1 the first leader, with
// the registers created (see newClusterOpts).
func newCluster(t testing.TB) *cluster {
	t.Helper()
	c, _ := newClusterOpts(t, clusterOpts{})
	return c
}

func (c *cluster) newClient(h *testbed.Host) *client.Client {
	cl, err := client.NewClientWithOpts(client.WithHost("unix://"+h.SwarmdSock), client.WithAPIVersionNegotiation())
	if err != nil {
		c.t.Fatalf("%s: client: %v", h.Name, err)
	}
	return cl
}

func (c *cluster) docker(h *testbed.Host, args ...string) string {
	c.t.Helper()
	return h.MustDocker(c.ctx, c.t, args...)
}

func (c *cluster) eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	testbed.Eventually(c.t, timeout, what, cond)
}

// leaders asks host h which node leads; "" if h does not answer or knows
// of no leader.
func (c *cluster) leaderSeenBy(h *testbed.Host) string {
	ctx, cancel := context.WithTimeout(c.ctx, reqTimeout)
	defer cancel()
	nodes, err := c.cli[h].NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return ""
	}
	leader := ""
	for _, n := range nodes {
		if n.ManagerStatus != nil && n.ManagerStatus.Leader {
			if leader != "" {
				return "" // two leaders in one list: not settled
			}
			leader = n.Description.Hostname
		}
	}
	return leader
}

// leader waits until some host names a leader and returns it.
func (c *cluster) leader() *testbed.Host {
	c.t.Helper()
	var lead *testbed.Host
	c.eventually(30*time.Second, "a leader is known", func() bool {
		for _, h := range c.hosts {
			name := c.leaderSeenBy(h)
			for _, x := range c.hosts {
				if x.Name == name {
					lead = x
					return true
				}
			}
		}
		return false
	})
	return lead
}

// oneLeader waits until every host answers and all name the same single
// leader, which it returns.
func (c *cluster) oneLeader() string {
	c.t.Helper()
	var lead string
	c.eventually(60*time.Second, "all hosts agree on exactly one leader", func() bool {
		seen := map[string]bool{}
		for _, h := range c.hosts {
			seen[c.leaderSeenBy(h)] = true
		}
		if len(seen) != 1 || seen[""] {
			return false
		}
		for l := range seen {
			lead = l
		}
		return true
	})
	return lead
}

// raftSettled waits until the managers' metrics (/metrics on
// --listen-debug) agree that the cluster recovered: exactly one of them
// leads, all are in the same raft term and all have applied the same log
// index (no write is in flight when it is called). It logs what each
// reports.
func (c *cluster) raftSettled() {
	c.t.Helper()
	var report []string
	c.eventually(60*time.Second, "one leader, one term, one applied index in the managers' metrics", func() bool {
		report = report[:0]
		leaders := 0.0
		terms, applied := map[float64]bool{}, map[float64]bool{}
		for _, h := range c.hosts {
			ctx, cancel := context.WithTimeout(c.ctx, reqTimeout)
			m, err := h.Metrics(ctx)
			cancel()
			if err != nil {
				return false
			}
			leaders += m["swarmd_raft_is_leader"]
			terms[m["swarmd_raft_term"]] = true
			applied[m["swarmd_raft_applied_index"]] = true
			report = append(report, fmt.Sprintf("%s: leader=%g term=%g applied=%g leader_changes=%g proposals_failed=%g",
				h.Name, m["swarmd_raft_is_leader"], m["swarmd_raft_term"], m["swarmd_raft_applied_index"],
				m["swarmd_raft_leader_changes_total"], m["swarmd_raft_proposals_failed_total"]))
		}
		return leaders == 1 && len(terms) == 1 && len(applied) == 1
	})
	c.t.Logf("metrics: %s", strings.Join(report, "; "))
}

// Register operations, as recorded for porcupine.
type regInput struct {
	Key   int
	Write bool
	Value string // written value
}

type regOutput struct {
	Value   string // value read
	Unknown bool   // a write whose outcome is unknown
}

// registerModel is a register per key; an unknown write returns at the end
// of the history, so it may be linearized anywhere after its call (also
// after every read: not applied).
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).Key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.Write {
			return true, in.Value
		}
		return output.(regOutput).Value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch {
		case in.Write && out.Unknown:
			return fmt.Sprintf("write(reg%d, %q) -> ?", in.Key, in.Value)
		case in.Write:
			return fmt.Sprintf("write(reg%d, %q)", in.Key, in.Value)
		}
		return fmt.Sprintf("read(reg%d) -> %q", in.Key, out.Value)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

// history collects operations with client-side timestamps (ns since start).
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// counters for the report
	reads, acked, unknown, refused, failedReads int
	// probeAcks are the call and return times of acknowledged probe
	// writes.
	probeAcks [][2]int64
}

func (hs *history) now() int64 { return time.Since(hs.start).Nanoseconds() }

func (hs *history) add(op porcupine.Operation) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.ops = append(hs.ops, op)
}

func (hs *history) count(p *int) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	*p++
}

// read reads register key through cl and records it; ok is false on error.
func (hs *history) read(ctx context.Context, cl *client.Client, clientID int, c *cluster, key int) (swarm.Service, bool) {
	rctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	call := hs.now()
	svc, _, err := cl.ServiceInspectWithRaw(rctx, c.svcs[key], swarm.ServiceInspectOptions{})
	ret := hs.now()
	if err != nil {
		hs.count(&hs.failedReads)
		return svc, false
	}
	hs.count(&hs.reads)
	hs.add(porcupine.Operation{ClientId: clientID, Input: regInput{Key: key}, Call: call,
		Output: regOutput{Value: svc.Spec.Labels[label]}, Return: ret})
	return svc, true
}

// write writes value to register key with the version of svc (read just
// before) and records the outcome: acked, refused as out of sequence (not
// recorded: not applied), or unknown (recorded with Return -1, set to the
// end of the history by finish).
func (hs *history) write(ctx context.Context, cl *client.Client, clientID int, c *cluster, key int, svc swarm.Service, value string) bool {
	spec := svc.Spec
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[label] = value
	spec.Labels = labels
	rctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	call := hs.now()
	_, err := cl.ServiceUpdate(rctx, c.svcs[key], svc.Version, spec, swarm.ServiceUpdateOptions{})
	ret := hs.now()
	in := regInput{Key: key, Write: true, Value: value}
	switch {
	case err == nil:
		hs.count(&hs.acked)
		hs.add(porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: regOutput{}, Return: ret})
		return true
	case strings.Contains(err.Error(), "update out of sequence"):
		hs.count(&hs.refused)
	default:
		// Anything else, even what the SDK reports as a failed connection
		// (it also wraps a reset or EOF after the request was sent), may
		// have been applied.
		hs.count(&hs.unknown)
		hs.add(porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: regOutput{Unknown: true}, Return: -1})
	}
	return false
}

// probeTimeout bounds a probe's read and write: the resolution of the
// writability measure.
const probeTimeout = 250 * time.Millisecond

// probe writes, until ctx ends, a label of each manager's probe service
// through that manager (a read for the version, then an update, each
// bounded by probeTimeout), and records in hs when the writes that were
// acknowledged began and returned. Probes are not part of the checked history.
func (c *cluster) probe(ctx context.Context, hs *history, wg *sync.WaitGroup) {
	for i, h := range c.hosts {
		cl := c.newClient(h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			for n := 0; ctx.Err() == nil; n++ {
				call := hs.now()
				if probeWrite(ctx, cl, c.probes[i], n) {
					hs.mu.Lock()
					hs.probeAcks = append(hs.probeAcks, [2]int64{call, hs.now()})
					hs.mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
}

// probeWrite sets label p of service id to n; it reports whether the write
// was acknowledged.
func probeWrite(ctx context.Context, cl *client.Client, id string, n int) bool {
	rctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	svc, _, err := cl.ServiceInspectWithRaw(rctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return false
	}
	spec := svc.Spec
	spec.Labels = map[string]string{"p": strconv.Itoa(n)}
	wctx, wcancel := context.WithTimeout(ctx, probeTimeout)
	defer wcancel()
	_, err = cl.ServiceUpdate(wctx, id, svc.Version, spec, swarm.ServiceUpdateOptions{})
	return err == nil
}

// firstAckAfter is how long after at (ns since the start) the first probe
// write begun after at was acknowledged (its return): how long the cluster
// had no leader to write through, to within probeTimeout. -1 if none was.
func (hs *history) firstAckAfter(at int64) time.Duration {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	first := int64(-1)
	for _, p := range hs.probeAcks {
		if p[0] >= at && (first < 0 || p[1] < first) {
			first = p[1]
		}
	}
	if first < 0 {
		return -1
	}
	return time.Duration(first - at)
}

// finish gives unknown writes the end of the history as return time and
// returns the operations.
func (hs *history) finish() []porcupine.Operation {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	end := hs.now() + 1
	ops := append([]porcupine.Operation(nil), hs.ops...)
	for i := range ops {
		if ops[i].Return < 0 {
			ops[i].Return = end
		}
	}
	return ops
}

// load runs clients spread over the hosts (each with its own connection)
// until ctx ends: each picks a register, reads it and, half of the time,
// writes a fresh value with the version it read.
func (c *cluster) load(ctx context.Context, hs *history, seed uint64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for id := range clients {
		h := c.hosts[id%len(c.hosts)]
		cl := c.newClient(h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			rng := rand.New(rand.NewPCG(seed, uint64(id)))
			for n := 0; ctx.Err() == nil; n++ {
				key := rng.IntN(registers)
				svc, ok := hs.read(ctx, cl, id, c, key)
				if ok && rng.IntN(2) == 0 {
					ok = hs.write(ctx, cl, id, c, key, svc, fmt.Sprintf("c%d-%d", id, n))
				}
				pause := time.Duration(5+rng.IntN(20)) * time.Millisecond
				if !ok {
					pause = 200 * time.Millisecond // do not spin on a dead host
				}
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	return &wg
}

// finalReads reads every register from every host (retrying until each
// answers), recorded as clients after the load clients.
func (c *cluster) finalReads(hs *history) {
	c.t.Helper()
	for i, h := range c.hosts {
		for key := range registers {
			c.eventually(60*time.Second, fmt.Sprintf("%s answers a read of reg%d", h.Name, key), func() bool {
				_, ok := hs.read(c.ctx, c.cli[h], clients+i, c, key)
				return ok
			})
		}
	}
}

// check runs porcupine on the history and fails (with a visualization) if it
// is not linearizable.
func check(t *testing.T, hs *history) {
	t.Helper()
	ops := hs.finish()
	t.Logf("history: %d operations (%d reads, %d acked writes, %d unknown writes); not recorded: %d refused (out of sequence), %d failed reads",
		len(ops), hs.reads, hs.acked, hs.unknown, hs.refused, hs.failedReads)
	if hs.acked == 0 {
		t.Fatal("no write was acknowledged")
	}
	t0 := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, 60*time.Second)
	t.Logf("porcupine: %s in %s", res, time.Since(t0).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Logf("porcupine timed out: no violation found within the timeout")
	default:
		path := filepath.Join(t.TempDir(), "linearizability.html")
		if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
			t.Logf("visualize: %v", err)
		}
		if dst := os.Getenv("SWARMD_FAULT_VIS_DIR"); dst != "" {
			b, _ := os.ReadFile(path)
			path = filepath.Join(dst, t.Name()+".html")
			_ = os.WriteFile(path, b, 0o644)
		}
		t.Fatalf("history is not linearizable; visualization: %s", path)
	}
}

// run runs the load for d, calls fault at the given offset, and then checks
// the history.
func (c *cluster) run(s uint64, d time.Duration, faultAt time.Duration, fault func(hs *history)) *history {
	hs := &history{start: time.Now()}
	ctx, cancel := context.WithTimeout(c.ctx, d)
	defer cancel()
	wg := c.load(ctx, hs, s)
	c.probe(ctx, hs, wg)
	select {
	case <-time.After(faultAt):
		fault(hs)
	case <-ctx.Done():
	}
	<-ctx.Done()
	wg.Wait()
	return hs
}

// TestLeaderKillDuringWrites kills the leader's swarmd (SIGKILL) while
// clients on all three managers read and write, restarts it a few seconds
// later, and checks that the history is linearizable.
func TestLeaderKillDuringWrites(t *testing.T) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 1))
	c := newCluster(t)
	down := time.Duration(3000+rng.IntN(2000)) * time.Millisecond
	faultAt := time.Duration(5000+rng.IntN(3000)) * time.Millisecond
	var killedAt int64
	hs := c.run(s, 22*time.Second, faultAt, func(hs *history) {
		lead := c.leader()
		t.Logf("kill -9 leader %s's swarmd for %s", lead.Name, down)
		if err := lead.Kill(); err != nil {
			t.Error(err)
			return
		}
		killedAt = hs.now()
		time.Sleep(down)
		if err := lead.StartSwarmd(c.ctx); err != nil {
			t.Error(err)
			return
		}
		t.Logf("restarted %s's swarmd", lead.Name)
	})
	t.Logf("leader at the end: %s", c.oneLeader())
	t.Logf("measure: no writable leader for %s after the leader's kill -9 (first probe write begun after it acknowledged)", hs.firstAckAfter(killedAt))
	c.raftSettled()
	c.finalReads(hs)
	check(t, hs)
}

// TestMinorityPartition cuts one manager off from the two others, the
// leader or a follower, while clients on all three hosts keep going, heals,
// and checks that the history is linearizable, that one leader is left,
// that the cut-off manager acknowledged no write while cut off (a leader
// must step down: CheckQuorum) and that it is back in the cluster after the
// heal.
func TestMinorityPartition(t *testing.T) {
	for _, victim := range []string{"leader", "follower"} {
		t.Run(victim, func(t *testing.T) { minorityPartition(t, victim == "leader") })
	}
}

func minorityPartition(t *testing.T, leader bool) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 1))
	c := newCluster(t)
	cut := time.Duration(6000+rng.IntN(3000)) * time.Millisecond
	faultAt := time.Duration(5000+rng.IntN(3000)) * time.Millisecond
	var cutFrom, cutTo int64
	var isolated int // index of the cut-off host
	var healed time.Duration
	hs := c.run(s, 25*time.Second, faultAt, func(hs *history) {
		lead := c.leader()
		victim := lead
		var others []*testbed.Host
		for i, h := range c.hosts {
			if !leader && victim == lead && h != lead {
				victim = h
			}
			if h == victim {
				isolated = i
			}
		}
		for _, h := range c.hosts {
			if h != victim {
				others = append(others, h)
			}
		}
		t.Logf("partition %s (leader %s) from %s and %s for %s", victim.Name, lead.Name, others[0].Name, others[1].Name, cut)
		if err := c.tb.Partition([]*testbed.Host{victim}, others); err != nil {
			t.Error(err)
			return
		}
		cutFrom = hs.now()
		time.Sleep(cut)
		cutTo = hs.now()
		if err := c.tb.Heal(); err != nil {
			t.Error(err)
			return
		}
		t0 := time.Now()
		c.eventually(60*time.Second, victim.Name+" a Reachable manager again", func() bool { return c.managerUp(victim) })
		healed = time.Since(t0)
		t.Logf("healed")
	})
	t.Logf("exactly one leader at the end: %s", c.oneLeader())
	if leader {
		t.Logf("measure: no writable leader for %s after the leader's partition (first probe write begun after it acknowledged)", hs.firstAckAfter(cutFrom))
	}
	t.Logf("measure: %s a Reachable manager %s after the heal", c.hosts[isolated].Name, healed.Round(time.Millisecond))
	c.raftSettled()
	c.finalReads(hs)
	check(t, hs)
	checkFinalValues(t, hs)
	// The cut-off manager cannot commit: no write sent through it after
	// the cut may be acknowledged before the heal.
	var tried, acked int
	for _, op := range hs.finish() {
		in := op.Input.(regInput)
		if op.ClientId >= clients || op.ClientId%len(c.hosts) != isolated || !in.Write || op.Call < cutFrom || op.Call > cutTo {
			continue
		}
		tried++
		if !op.Output.(regOutput).Unknown && op.Return <= cutTo {
			acked++
			t.Errorf("write %q through cut-off %s acknowledged during the partition (%d..%d ns)", in.Value, c.hosts[isolated].Name, op.Call, op.Return)
		}
	}
	t.Logf("writes through the cut-off host during the partition: %d recorded, %d acknowledged", tried, acked)
}

// TestRegisterModel checks the model on small histories (no testbed): a read
// of a value older than an acknowledged write that finished before the read
// began is a violation; an unknown write may or may not have been applied.
func TestRegisterModel(t *testing.T) {
	w := func(c int, key int, v string, call, ret int64, unknown bool) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: regInput{Key: key, Write: true, Value: v}, Call: call, Output: regOutput{Unknown: unknown}, Return: ret}
	}
	r := func(c int, key int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: regInput{Key: key}, Call: call, Output: regOutput{Value: v}, Return: ret}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"stale read", []porcupine.Operation{w(0, 0, "a", 0, 10, false), w(0, 0, "b", 20, 30, false), r(1, 0, "a", 40, 50)}, porcupine.Illegal},
		{"lost acked write", []porcupine.Operation{w(0, 0, "a", 0, 10, false), r(1, 0, "", 20, 30)}, porcupine.Illegal},
		{"other key", []porcupine.Operation{w(0, 0, "a", 0, 10, false), r(1, 1, "", 20, 30)}, porcupine.Ok},
		{"unknown write applied", []porcupine.Operation{w(0, 0, "a", 0, 100, true), r(1, 0, "a", 20, 30), r(1, 0, "a", 40, 50)}, porcupine.Ok},
		{"unknown write not applied", []porcupine.Operation{w(0, 0, "a", 0, 100, true), r(1, 0, "", 20, 30)}, porcupine.Ok},
		{"unknown write seen then lost", []porcupine.Operation{w(0, 0, "a", 0, 100, true), r(1, 0, "a", 20, 30), r(1, 0, "", 40, 50)}, porcupine.Illegal},
	} {
		if got := porcupine.CheckOperationsTimeout(registerModel, tc.ops, 10*time.Second); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	// The visualization check writes on a violation.
	res, info := porcupine.CheckOperationsVerbose(registerModel, []porcupine.Operation{
		w(0, 0, "a", 0, 10, false), w(0, 0, "b", 20, 30, false), r(1, 0, "a", 40, 50),
	}, 10*time.Second)
	path := filepath.Join(t.TempDir(), "vis.html")
	if err := porcupine.VisualizePath(registerModel, info, path); res != porcupine.Illegal || err != nil {
		t.Errorf("visualize: %s, %v", res, err)
	}
}
