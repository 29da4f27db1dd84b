package node

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/agent/exec/testexec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// testCluster is a swarm of in-process nodes on 127.0.0.x whose tasks run
// on test executors: the managers' orchestration for real (raft, store,
// allocator, scheduler, orchestrators, dispatcher, agents, workers), only
// the containers simulated.
type testCluster struct {
	t     *testing.T
	dir   string
	nodes map[string]*clusterNode
	order []string
	ctl   map[string]api.ControlClient
}

type clusterNode struct {
	name, addr string
	cfg        Config
	node       *Node
	engine     *testexec.Engine
}

// newTestCluster starts the first manager on ip (127.0.0.x), with a short
// heartbeat period so that a silent node goes DOWN in about 1.5s.
func newTestCluster(t *testing.T, ip string) *testCluster {
	c := &testCluster{t: t, dir: t.TempDir(), nodes: map[string]*clusterNode{}, ctl: map[string]api.ControlClient{}}
	c.start("m1", ip, Config{Init: true})
	cl := c.cluster()
	cl.Spec.Dispatcher = &api.DispatcherConfig{HeartbeatPeriod: durationpb.New(500 * time.Millisecond)}
	if _, err := c.control().UpdateCluster(c.ctx(), &api.UpdateClusterRequest{ClusterId: cl.GetId(), ClusterVersion: cl.GetMeta().GetVersion(), Spec: cl.GetSpec()}); err != nil {
		t.Fatalf("set heartbeat period: %v", err)
	}
	return c
}

func (c *testCluster) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c.t.Cleanup(cancel)
	return ctx
}

// start starts (or restarts, keeping its engine) the node name on ip.
func (c *testCluster) start(name, ip string, cfg Config) *clusterNode {
	c.t.Helper()
	cn := c.nodes[name]
	if cn == nil {
		cn = &clusterNode{name: name, addr: ip + ":4242", engine: testexec.NewEngine()}
		cfg.StateDir = filepath.Join(c.dir, name)
		cfg.Hostname = name
		cfg.ListenRemoteAPI = cn.addr
		if cfg.Init || cfg.ListenControlAPI != "" {
			cfg.ListenControlAPI = filepath.Join(c.dir, name+".sock")
		}
		cn.cfg = cfg
		c.nodes[name] = cn
		c.order = append(c.order, name)
	} else {
		cn.cfg.Init, cn.cfg.JoinAddr, cn.cfg.JoinToken = false, "", ""
	}
	cn.cfg.Executor = cn.engine.Executor(testexec.DefaultDescription(name))
	cn.node = startNode(c.t, cn.cfg)
	if cn.cfg.ListenControlAPI != "" && c.ctl[name] == nil {
		conn, err := grpc.NewClient("unix://"+cn.cfg.ListenControlAPI, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(func() { _ = conn.Close() })
		c.ctl[name] = api.NewControlClient(conn)
	}
	return cn
}

// join starts a new worker (or manager) name on ip.
func (c *testCluster) join(name, ip string, manager bool) *clusterNode {
	c.t.Helper()
	m1 := c.nodes["m1"]
	cfg := Config{JoinAddr: m1.addr, JoinToken: joinToken(c.t, m1.node, manager)}
	if manager {
		cfg.ListenControlAPI = "yes"
	}
	return c.start(name, ip, cfg)
}

// stop stops a node's swarmd (its simulated containers stay as they are).
func (c *testCluster) stop(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.nodes[name].node.Stop(ctx); err != nil {
		c.t.Fatalf("stop %s: %v", name, err)
	}
}

// control is the control API of the first manager that answers.
func (c *testCluster) control() api.ControlClient {
	for _, name := range c.order {
		if ctl := c.ctl[name]; ctl != nil {
			select {
			case <-c.nodes[name].node.Done():
				continue
			default:
				return ctl
			}
		}
	}
	c.t.Fatal("no manager running")
	return nil
}

func (c *testCluster) cluster() *api.Cluster {
	c.t.Helper()
	resp, err := c.control().ListClusters(c.ctx(), &api.ListClustersRequest{})
	if err != nil || len(resp.GetClusters()) != 1 {
		c.t.Fatalf("list clusters: %v", err)
	}
	return resp.GetClusters()[0]
}

func (c *testCluster) nodeID(name string) string { return c.nodes[name].node.NodeID() }

func (c *testCluster) nodeName(id string) string {
	for name, cn := range c.nodes {
		if cn.node.NodeID() == id {
			return name
		}
	}
	return id
}

func (c *testCluster) createService(spec *api.ServiceSpec) *api.Service {
	c.t.Helper()
	resp, err := c.control().CreateService(c.ctx(), &api.CreateServiceRequest{Spec: spec})
	if err != nil {
		c.t.Fatalf("create service %s: %v", spec.GetAnnotations().GetName(), err)
	}
	return resp.GetService()
}

func (c *testCluster) service(id string) *api.Service {
	c.t.Helper()
	resp, err := c.control().GetService(c.ctx(), &api.GetServiceRequest{ServiceId: id})
	if err != nil {
		c.t.Fatalf("get service: %v", err)
	}
	return resp.GetService()
}

// updateService changes the service's spec as change says, at its current
// version.
func (c *testCluster) updateService(id string, change func(*api.ServiceSpec)) *api.Service {
	c.t.Helper()
	s := c.service(id)
	change(s.Spec)
	resp, err := c.control().UpdateService(c.ctx(), &api.UpdateServiceRequest{ServiceId: id, ServiceVersion: s.GetMeta().GetVersion(), Spec: s.GetSpec()})
	if err != nil {
		c.t.Fatalf("update service: %v", err)
	}
	return resp.GetService()
}

func (c *testCluster) updateNode(name string, change func(*api.NodeSpec)) {
	c.t.Helper()
	resp, err := c.control().GetNode(c.ctx(), &api.GetNodeRequest{NodeId: c.nodeID(name)})
	if err != nil {
		c.t.Fatalf("get node: %v", err)
	}
	n := resp.GetNode()
	change(n.Spec)
	if _, err := c.control().UpdateNode(c.ctx(), &api.UpdateNodeRequest{NodeId: n.GetId(), NodeVersion: n.GetMeta().GetVersion(), Spec: n.GetSpec()}); err != nil {
		c.t.Fatalf("update node %s: %v", name, err)
	}
}

func (c *testCluster) tasks(serviceID string) []*api.Task {
	c.t.Helper()
	resp, err := c.control().ListTasks(c.ctx(), &api.ListTasksRequest{Filters: &api.ListFilters{ServiceIds: []string{serviceID}}})
	if err != nil {
		c.t.Fatalf("list tasks: %v", err)
	}
	return resp.GetTasks()
}

// running counts, per node name, the service's tasks the store says are
// RUNNING and meant to run.
func (c *testCluster) running(serviceID string) map[string]int {
	out := map[string]int{}
	for _, t := range c.tasks(serviceID) {
		if t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING && t.GetDesiredState() <= api.TaskState_TASK_STATE_RUNNING {
			out[c.nodeName(t.GetNodeId())]++
		}
	}
	return out
}

// containers counts, per node name, the simulated containers running for
// the service's tasks: what actually runs, whatever the store says.
func (c *testCluster) containers(serviceID string) map[string]int {
	ids := map[string]bool{}
	for _, t := range c.tasks(serviceID) {
		ids[t.GetId()] = true
	}
	out := map[string]int{}
	for name, cn := range c.nodes {
		for _, id := range cn.engine.Running() {
			if ids[id] {
				out[name]++
			}
		}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// spread renders counts per node sorted, e.g. "1/2/2".
func spread(m map[string]int, nodes ...string) string {
	var counts []int
	for _, n := range nodes {
		counts = append(counts, m[n])
	}
	sort.Ints(counts)
	parts := make([]string, len(counts))
	for i, n := range counts {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, "/")
}

// waitFor polls cond until it holds or timeout passes; on timeout it
// prints the service's tasks.
func (c *testCluster) waitFor(timeout time.Duration, what string, serviceID string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if serviceID != "" {
				for _, t := range c.tasks(serviceID) {
					c.t.Logf("task %s slot %d node %s desired %s observed %s %q err %q", t.GetId(), t.GetSlot(), c.nodeName(t.GetNodeId()),
						t.GetDesiredState(), t.GetStatus().GetState(), t.GetStatus().GetMessage(), t.GetStatus().GetErr())
				}
			}
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replicated is a replicated service spec.
func replicated(name string, replicas uint64) *api.ServiceSpec {
	return &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "app:1"}},
		Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
	}
}
