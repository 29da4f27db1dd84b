package executor

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
)

// ErrContainerUnhealthy fails a task whose container's healthcheck says it
// is unhealthy.
var ErrContainerUnhealthy = errors.New("task: container unhealthy")

// errOOMKilled is the cause of the exit of a container the kernel killed
// for lack of memory.
var errOOMKilled = errors.New("OOMKilled")

// hasStarted tells whether a container in state st was ever started.
func hasStarted(st *container.State) bool {
	if st == nil {
		return false
	}
	if st.Running || st.Paused || st.Restarting {
		return true
	}
	if st.Status == container.StateCreated {
		return false
	}
	return !zeroTime(st.StartedAt)
}

// zeroTime tells whether an engine timestamp is unset.
func zeroTime(s string) bool {
	if s == "" {
		return true
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	return err != nil || ts.IsZero()
}

// runtimeState is what the inspection of a task's container says of the
// task.
func runtimeState(c container.InspectResponse) exec.RuntimeState {
	if c.ContainerJSONBase == nil {
		return exec.RuntimeState{Phase: exec.PhaseAbsent}
	}
	rs := exec.RuntimeState{Container: &api.ContainerStatus{ContainerId: c.ID}}
	st := c.State
	switch {
	case st == nil || !hasStarted(st):
		rs.Phase = exec.PhaseCreated
	case st.Running || st.Paused || st.Restarting:
		rs.Phase = exec.PhaseRunning
		rs.Container.Pid = int32(st.Pid)
		if c.NetworkSettings != nil {
			rs.Ports = publishedPorts(c.NetworkSettings.Ports)
		}
	default:
		rs.Phase = exec.PhaseExited
		rs.ExitCode = st.ExitCode
		rs.Container.ExitCode = int32(st.ExitCode)
	}
	return rs
}

// exitResult is the result of Wait for a container that exited with code;
// oomKilled tells whether the kernel killed it, waitErr is the engine's
// error about the wait, if any.
func exitResult(code int64, oomKilled bool, waitErr string) error {
	if code == 0 && waitErr == "" {
		return nil
	}
	var cause error
	switch {
	case oomKilled:
		cause = errOOMKilled
	case waitErr != "":
		cause = errors.New(waitErr)
	}
	if code == 0 {
		return fmt.Errorf("task: wait: %w", cause)
	}
	return &exec.ExitError{Code: int(code), Cause: cause}
}

// unhealthy tells whether a container in state st failed its healthcheck.
func unhealthy(st *container.State) bool {
	return st != nil && st.Health != nil && st.Health.Status == container.Unhealthy
}

// publishedPorts are the host ports the engine publishes for a container,
// as host-mode port configs, sorted by target port and protocol. A port
// bound on several host addresses (IPv4 and IPv6) is listed once.
func publishedPorts(pm nat.PortMap) []*api.PortConfig {
	var out []*api.PortConfig
	seen := map[string]bool{}
	for port, bindings := range pm {
		proto := api.PortConfig_TCP
		switch port.Proto() {
		case "udp":
			proto = api.PortConfig_UDP
		case "sctp":
			proto = api.PortConfig_SCTP
		}
		for _, b := range bindings {
			published, err := strconv.ParseUint(b.HostPort, 10, 16)
			if err != nil || published == 0 {
				continue
			}
			key := string(port) + ">" + b.HostPort
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, &api.PortConfig{Protocol: proto, TargetPort: uint32(port.Int()),
				PublishedPort: uint32(published), PublishMode: api.PortConfig_HOST})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetTargetPort() != out[j].GetTargetPort() {
			return out[i].GetTargetPort() < out[j].GetTargetPort()
		}
		if out[i].GetProtocol() != out[j].GetProtocol() {
			return out[i].GetProtocol() < out[j].GetProtocol()
		}
		return out[i].GetPublishedPort() < out[j].GetPublishedPort()
	})
	return out
}
