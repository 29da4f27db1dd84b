package executor

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/docker/docker/api/types/container"
)

// taskAddrs maps the node's tasks to their containers and caches the
// containers' addresses (an address does not change while a container
// exists; a task never gets a second container).
type taskAddrs struct {
	mu    sync.Mutex
	names map[string]string     // task ID -> container name
	addrs map[string]netip.Addr // task ID -> address, once known
}

func (a *taskAddrs) remember(taskID, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.names == nil {
		a.names = map[string]string{}
	}
	a.names[taskID] = name
}

func (a *taskAddrs) forget(taskID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.names, taskID)
	delete(a.addrs, taskID)
}

func (a *taskAddrs) lookup(taskID string) (name string, addr netip.Addr, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name, ok = a.names[taskID]
	return name, a.addrs[taskID], ok
}

func (a *taskAddrs) cache(taskID string, addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.names[taskID]; !ok {
		return // forgotten meanwhile
	}
	if a.addrs == nil {
		a.addrs = map[string]netip.Addr{}
	}
	a.addrs[taskID] = addr
}

// TaskAddr is the address, reachable from this host, of the container of
// a task this node runs: what the routing mesh delivers the task's traffic
// to. A task the node does not run, or whose container does not run, is
// an error.
func (e *Executor) TaskAddr(ctx context.Context, taskID string) (netip.Addr, error) {
	name, addr, ok := e.addrs.lookup(taskID)
	if !ok {
		return netip.Addr{}, fmt.Errorf("executor: task %s does not run on this node", taskID)
	}
	if addr.IsValid() {
		return addr, nil
	}
	ctr, err := e.engine.ContainerInspect(ctx, name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("executor: task %s: %w", taskID, err)
	}
	if ctr.State == nil || !ctr.State.Running {
		return netip.Addr{}, fmt.Errorf("executor: task %s: container %s is not running", taskID, name)
	}
	addr, err = containerAddr(ctr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("executor: task %s: %w", taskID, err)
	}
	e.addrs.cache(taskID, addr)
	return addr, nil
}

// containerAddr is a container's IPv4 address: on the default bridge,
// else on its first network by name.
func containerAddr(ctr container.InspectResponse) (netip.Addr, error) {
	ns := ctr.NetworkSettings
	if ns == nil {
		return netip.Addr{}, fmt.Errorf("container %s has no network settings", ctr.Name)
	}
	if n, ok := ns.Networks["bridge"]; ok && n != nil && n.IPAddress != "" {
		return netip.ParseAddr(n.IPAddress)
	}
	names := make([]string, 0, len(ns.Networks))
	for k := range ns.Networks {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if n := ns.Networks[k]; n != nil && n.IPAddress != "" {
			return netip.ParseAddr(n.IPAddress)
		}
	}
	return netip.Addr{}, fmt.Errorf("container %s has no IP address", ctr.Name)
}
