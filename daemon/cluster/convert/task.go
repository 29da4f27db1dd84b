package convert

import (
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
)

// TaskToDocker is a task as `docker inspect <task>` and `docker service
// ps` see it.
func TaskToDocker(t *api.Task) swarm.Task {
	out := swarm.Task{
		ID:           t.GetId(),
		Meta:         metaToDocker(t.GetMeta()),
		Annotations:  annotationsToDocker(t.GetAnnotations()),
		Spec:         taskSpecToDocker(t.GetSpec()),
		ServiceID:    t.GetServiceId(),
		Slot:         int(t.GetSlot()),
		NodeID:       t.GetNodeId(),
		DesiredState: TaskState(t.GetDesiredState()),
		Status: swarm.TaskStatus{
			Timestamp: timeOf(t.GetStatus().GetTimestamp()),
			State:     TaskState(t.GetStatus().GetState()),
			Message:   t.GetStatus().GetMessage(),
			Err:       t.GetStatus().GetErr(),
			PortStatus: swarm.PortStatus{
				Ports: portsToDocker(t.GetStatus().GetPortStatus().GetPorts()),
			},
		},
	}
	if c := t.GetStatus().GetContainer(); c != nil {
		out.Status.ContainerStatus = &swarm.ContainerStatus{
			ContainerID: c.GetContainerId(), PID: int(c.GetPid()), ExitCode: int(c.GetExitCode()),
		}
	}
	for _, na := range t.GetNetworks() {
		n := na.GetNetwork()
		out.NetworksAttachments = append(out.NetworksAttachments, swarm.NetworkAttachment{
			Network: swarm.Network{
				ID:   n.GetId(),
				Meta: metaToDocker(n.GetMeta()),
				Spec: swarm.NetworkSpec{
					Annotations:         annotationsToDocker(n.GetSpec().GetAnnotations()),
					DriverConfiguration: &swarm.Driver{Name: n.GetSpec().GetDriver()},
					Internal:            n.GetSpec().GetInternal(),
					Attachable:          n.GetSpec().GetAttachable(),
					Ingress:             n.GetSpec().GetIngress(),
				},
			},
			Addresses: append([]string(nil), na.GetAddresses()...),
		})
	}
	if ji := t.GetJobIteration(); ji != nil {
		out.JobIteration = &swarm.Version{Index: ji.GetIndex()}
	}
	return out
}

// TaskState is docker's word for a task state: "running", "shutdown", ...
func TaskState(s api.TaskState) swarm.TaskState {
	return swarm.TaskState(strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_")))
}

// taskStateFromDocker is the inverse of TaskState.
func taskStateFromDocker(s string) (api.TaskState, bool) {
	v, ok := api.TaskState_value["TASK_STATE_"+strings.ToUpper(s)]
	return api.TaskState(v), ok
}

// taskName is the name docker gives a task: <service>.<slot> for
// replicated tasks, <service>.<node> for global ones.
func taskName(t *api.Task) string {
	if n := t.GetAnnotations().GetName(); n != "" {
		return n
	}
	svc := t.GetServiceAnnotations().GetName()
	if t.GetSlot() != 0 {
		return svc + "." + strconv.FormatUint(t.GetSlot(), 10)
	}
	return svc + "." + t.GetNodeId()
}
