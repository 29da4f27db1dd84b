package executor

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"
	"github.com/openswarm/swarmd/api"
)

// Labels swarmd puts on the containers of tasks, as docker does for its
// swarm tasks.
const (
	// LabelTask marks a container as a swarm task's (its value is empty).
	LabelTask        = "com.docker.swarm.task"
	LabelTaskID      = "com.docker.swarm.task.id"
	LabelTaskName    = "com.docker.swarm.task.name"
	LabelServiceID   = "com.docker.swarm.service.id"
	LabelServiceName = "com.docker.swarm.service.name"
	LabelNodeID      = "com.docker.swarm.node.id"
)

// defaultStopGracePeriod is how long Shutdown waits for a container to stop
// before the engine kills it, when the spec does not say.
const defaultStopGracePeriod = 10 * time.Second

// ErrNoContainerSpec is the error of a task that has no container spec:
// this executor runs containers only.
var ErrNoContainerSpec = errors.New("executor: task has no container spec")

// serviceName is the name of t's service: its annotations' name, or its ID
// when the name is unknown.
func serviceName(t *api.Task) string {
	if n := t.GetServiceAnnotations().GetName(); n != "" {
		return n
	}
	return t.GetServiceId()
}

// taskName is the name of t without its ID: "<service>.<slot>" for a
// replicated task, "<service>.<node ID>" for a global one (slot 0).
func taskName(t *api.Task, nodeID string) string {
	if t.GetSlot() == 0 {
		if id := t.GetNodeId(); id != "" {
			nodeID = id
		}
		return serviceName(t) + "." + nodeID
	}
	return serviceName(t) + "." + strconv.FormatUint(t.GetSlot(), 10)
}

// containerName is the name of t's container: "<task name>.<task ID>".
func containerName(t *api.Task, nodeID string) string {
	return taskName(t, nodeID) + "." + t.GetId()
}

// containerLabels are the labels of t's container: the spec's, then those
// that identify the task (which win over the spec's).
func containerLabels(t *api.Task, nodeID string) map[string]string {
	labels := make(map[string]string, len(t.GetSpec().GetContainer().GetLabels())+6)
	maps.Copy(labels, t.GetSpec().GetContainer().GetLabels())
	labels[LabelTask] = ""
	labels[LabelTaskID] = t.GetId()
	labels[LabelTaskName] = taskName(t, nodeID)
	labels[LabelServiceID] = t.GetServiceId()
	labels[LabelServiceName] = serviceName(t)
	labels[LabelNodeID] = nodeID
	return labels
}

// stopGracePeriod is how long the task's container has to stop before it is
// killed.
func stopGracePeriod(t *api.Task) time.Duration {
	if d := t.GetSpec().GetContainer().GetStopGracePeriod(); d != nil {
		if g := d.AsDuration(); g >= 0 {
			return g
		}
	}
	return defaultStopGracePeriod
}

// stopTimeoutSeconds is the grace period in whole seconds, rounded up, as
// the engine takes it.
func stopTimeoutSeconds(d time.Duration) int {
	s := int(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

// hasHealthcheck tells whether t's container has a healthcheck of its own
// (not one that disables the image's).
func hasHealthcheck(t *api.Task) bool {
	test := t.GetSpec().GetContainer().GetHealthcheck().GetTest()
	return len(test) > 0 && test[0] != "NONE"
}

// containerConfig is the engine configuration of t's container on node
// nodeID, and the container's name. It fails if t has no container spec or
// a spec the engine cannot take.
func containerConfig(t *api.Task, nodeID string) (*container.Config, *container.HostConfig, string, error) {
	spec := t.GetSpec().GetContainer()
	if spec == nil {
		return nil, nil, "", ErrNoContainerSpec
	}
	if spec.GetImage() == "" {
		return nil, nil, "", errors.New("executor: container spec has no image")
	}
	grace := stopGracePeriod(t)
	timeout := stopTimeoutSeconds(grace)
	cfg := &container.Config{
		Image:       spec.GetImage(),
		Cmd:         spec.GetArgs(),
		Env:         spec.GetEnv(),
		WorkingDir:  spec.GetDir(),
		User:        spec.GetUser(),
		Hostname:    spec.GetHostname(),
		Tty:         spec.GetTty(),
		OpenStdin:   spec.GetOpenStdin(),
		StopSignal:  spec.GetStopSignal(),
		StopTimeout: &timeout,
		Labels:      containerLabels(t, nodeID),
	}
	if len(spec.GetCommand()) > 0 {
		cfg.Entrypoint = spec.GetCommand()
	}
	if hc := spec.GetHealthcheck(); hc != nil {
		cfg.Healthcheck = &container.HealthConfig{
			Test:        hc.GetTest(),
			Interval:    hc.GetInterval().AsDuration(),
			Timeout:     hc.GetTimeout().AsDuration(),
			Retries:     int(hc.GetRetries()),
			StartPeriod: hc.GetStartPeriod().AsDuration(),
		}
	}

	host := &container.HostConfig{
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
		ReadonlyRootfs: spec.GetReadOnly(),
		ExtraHosts:     extraHosts(spec.GetHosts()),
		GroupAdd:       spec.GetGroups(),
	}
	if spec.GetInit() {
		init := true
		host.Init = &init
	}
	mounts, err := containerMounts(spec.GetMounts())
	if err != nil {
		return nil, nil, "", err
	}
	host.Mounts = mounts
	if r := t.GetSpec().GetResources(); r != nil {
		host.Resources.NanoCPUs = r.GetLimits().GetNanoCpus()
		host.Resources.Memory = r.GetLimits().GetMemoryBytes()
		host.Resources.MemoryReservation = r.GetReservations().GetMemoryBytes()
	}
	exposed, bindings, err := hostPorts(t.GetEndpoint())
	if err != nil {
		return nil, nil, "", err
	}
	if len(exposed) > 0 {
		cfg.ExposedPorts = exposed
		host.PortBindings = bindings
	}
	return cfg, host, containerName(t, nodeID), nil
}

// extraHosts turns the spec's host entries into the engine's "name:IP"
// form. An entry is either "IP name [name...]" (as in /etc/hosts) or
// already "name:IP".
func extraHosts(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		f := strings.Fields(h)
		switch {
		case len(f) == 0:
		case len(f) == 1:
			out = append(out, f[0])
		default:
			for _, name := range f[1:] {
				out = append(out, name+":"+f[0])
			}
		}
	}
	return out
}

// containerMounts turns the spec's mounts into the engine's.
func containerMounts(ms []*api.Mount) ([]mount.Mount, error) {
	var out []mount.Mount
	for _, m := range ms {
		if m.GetTarget() == "" {
			return nil, errors.New("executor: mount has no target")
		}
		em := mount.Mount{Source: m.GetSource(), Target: m.GetTarget(), ReadOnly: m.GetReadOnly()}
		switch m.GetType() {
		case api.Mount_BIND:
			if m.GetSource() == "" {
				return nil, fmt.Errorf("executor: bind mount %s has no source", m.GetTarget())
			}
			em.Type = mount.TypeBind
		case api.Mount_VOLUME:
			em.Type = mount.TypeVolume
		case api.Mount_TMPFS:
			if m.GetSource() != "" {
				return nil, fmt.Errorf("executor: tmpfs mount %s has a source", m.GetTarget())
			}
			em.Type = mount.TypeTmpfs
		case api.Mount_NPIPE:
			em.Type = mount.TypeNamedPipe
		default:
			return nil, fmt.Errorf("executor: mount %s: unknown type %v", m.GetTarget(), m.GetType())
		}
		out = append(out, em)
	}
	return out, nil
}

// hostPorts are the ports of the task's endpoint published in host mode:
// they are bound on the node directly. Ingress ports are the routing mesh's
// business, not the container's.
func hostPorts(ep *api.Endpoint) (nat.PortSet, nat.PortMap, error) {
	ports := ep.GetPorts()
	if len(ports) == 0 {
		ports = ep.GetSpec().GetPorts()
	}
	exposed, bindings := nat.PortSet{}, nat.PortMap{}
	for _, p := range ports {
		if p.GetPublishMode() != api.PortConfig_HOST {
			continue
		}
		if p.GetTargetPort() == 0 || p.GetTargetPort() > 65535 || p.GetPublishedPort() > 65535 {
			return nil, nil, fmt.Errorf("executor: invalid port %d:%d", p.GetPublishedPort(), p.GetTargetPort())
		}
		var proto string
		switch p.GetProtocol() {
		case api.PortConfig_TCP:
			proto = "tcp"
		case api.PortConfig_UDP:
			proto = "udp"
		case api.PortConfig_SCTP:
			proto = "sctp"
		default:
			return nil, nil, fmt.Errorf("executor: port %d: unknown protocol %v", p.GetTargetPort(), p.GetProtocol())
		}
		port := nat.Port(fmt.Sprintf("%d/%s", p.GetTargetPort(), proto))
		exposed[port] = struct{}{}
		b := nat.PortBinding{}
		if p.GetPublishedPort() != 0 {
			b.HostPort = strconv.FormatUint(uint64(p.GetPublishedPort()), 10)
		}
		bindings[port] = append(bindings[port], b)
	}
	return exposed, bindings, nil
}
