package convert

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/openswarm/swarmd/api"
)

// ServiceToDocker is a service as `docker service inspect` shows it
// (without ServiceStatus, which the caller counts).
func ServiceToDocker(s *api.Service) swarm.Service {
	out := swarm.Service{
		ID:   s.GetId(),
		Meta: metaToDocker(s.GetMeta()),
		Spec: serviceSpecToDocker(s.GetSpec()),
		Endpoint: swarm.Endpoint{
			Spec:  endpointSpecToDocker(s.GetEndpoint().GetSpec()),
			Ports: portsToDocker(s.GetEndpoint().GetPorts()),
		},
	}
	for _, v := range s.GetEndpoint().GetVirtualIps() {
		out.Endpoint.VirtualIPs = append(out.Endpoint.VirtualIPs, swarm.EndpointVirtualIP{NetworkID: v.GetNetworkId(), Addr: v.GetAddr()})
	}
	if p := s.GetPreviousSpec(); p != nil {
		ps := serviceSpecToDocker(p)
		out.PreviousSpec = &ps
	}
	if u := s.GetUpdateStatus(); u != nil && u.GetState() != api.UpdateStatus_UNKNOWN {
		out.UpdateStatus = &swarm.UpdateStatus{
			State:       swarm.UpdateState(strings.ToLower(u.GetState().String())),
			StartedAt:   timePtr(u.GetStartedAt()),
			CompletedAt: timePtr(u.GetCompletedAt()),
			Message:     u.GetMessage(),
		}
	}
	if sp := s.GetSpec(); sp.GetReplicatedJob() != nil || sp.GetGlobalJob() != nil {
		out.JobStatus = &swarm.JobStatus{
			JobIteration:  swarm.Version{Index: s.GetJobStatus().GetJobIteration().GetIndex()},
			LastExecution: timeOf(s.GetJobStatus().GetLastExecution()),
		}
	}
	return out
}

func serviceSpecToDocker(s *api.ServiceSpec) swarm.ServiceSpec {
	out := swarm.ServiceSpec{
		Annotations:  annotationsToDocker(s.GetAnnotations()),
		TaskTemplate: taskSpecToDocker(s.GetTask()),
	}
	switch {
	case s.GetGlobal() != nil:
		out.Mode.Global = &swarm.GlobalService{}
	case s.GetReplicatedJob() != nil:
		mc, tc := s.GetReplicatedJob().GetMaxConcurrent(), s.GetReplicatedJob().GetTotalCompletions()
		out.Mode.ReplicatedJob = &swarm.ReplicatedJob{MaxConcurrent: &mc, TotalCompletions: &tc}
	case s.GetGlobalJob() != nil:
		out.Mode.GlobalJob = &swarm.GlobalJob{}
	default:
		n := s.GetReplicated().GetReplicas()
		out.Mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
	}
	if u := s.GetUpdate(); u != nil {
		out.UpdateConfig = updateConfigToDocker(u)
	}
	if u := s.GetRollback(); u != nil {
		out.RollbackConfig = updateConfigToDocker(u)
	}
	if e := s.GetEndpoint(); e != nil {
		es := endpointSpecToDocker(e)
		out.EndpointSpec = &es
	}
	return out
}

func taskSpecToDocker(t *api.TaskSpec) swarm.TaskSpec {
	out := swarm.TaskSpec{ForceUpdate: t.GetForceUpdate(), Runtime: swarm.RuntimeContainer}
	if c := t.GetContainer(); c != nil {
		out.ContainerSpec = containerSpecToDocker(c)
	}
	if r := t.GetResources(); r != nil {
		out.Resources = &swarm.ResourceRequirements{}
		if l := r.GetLimits(); l != nil {
			out.Resources.Limits = &swarm.Limit{NanoCPUs: l.GetNanoCpus(), MemoryBytes: l.GetMemoryBytes()}
		}
		if v := r.GetReservations(); v != nil {
			out.Resources.Reservations = &swarm.Resources{NanoCPUs: v.GetNanoCpus(), MemoryBytes: v.GetMemoryBytes()}
		}
	}
	if r := t.GetRestart(); r != nil {
		maxAttempts := r.GetMaxAttempts()
		out.RestartPolicy = &swarm.RestartPolicy{
			Condition:   restartConditionToDocker(r.GetCondition()),
			Delay:       durationPtr(r.GetDelay()),
			MaxAttempts: &maxAttempts,
			Window:      durationPtr(r.GetWindow()),
		}
	}
	if p := t.GetPlacement(); p != nil {
		out.Placement = &swarm.Placement{
			Constraints: append([]string(nil), p.GetConstraints()...),
			MaxReplicas: p.GetMaxReplicas(),
		}
		for _, pref := range p.GetPreferences() {
			out.Placement.Preferences = append(out.Placement.Preferences,
				swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: pref.GetSpreadDescriptor()}})
		}
		for _, pl := range p.GetPlatforms() {
			out.Placement.Platforms = append(out.Placement.Platforms, swarm.Platform{Architecture: pl.GetArchitecture(), OS: pl.GetOs()})
		}
	}
	for _, n := range t.GetNetworks() {
		out.Networks = append(out.Networks, swarm.NetworkAttachmentConfig{Target: n.GetTarget(), Aliases: append([]string(nil), n.GetAliases()...)})
	}
	return out
}

func containerSpecToDocker(c *api.ContainerSpec) *swarm.ContainerSpec {
	out := &swarm.ContainerSpec{
		Image:           c.GetImage(),
		Labels:          maps.Clone(c.GetLabels()),
		Command:         append([]string(nil), c.GetCommand()...),
		Args:            append([]string(nil), c.GetArgs()...),
		Hostname:        c.GetHostname(),
		Env:             append([]string(nil), c.GetEnv()...),
		Dir:             c.GetDir(),
		User:            c.GetUser(),
		Groups:          append([]string(nil), c.GetGroups()...),
		StopSignal:      c.GetStopSignal(),
		TTY:             c.GetTty(),
		OpenStdin:       c.GetOpenStdin(),
		ReadOnly:        c.GetReadOnly(),
		StopGracePeriod: durationPtr(c.GetStopGracePeriod()),
		Hosts:           append([]string(nil), c.GetHosts()...),
	}
	if c.GetInit() {
		v := true
		out.Init = &v
	}
	for _, m := range c.GetMounts() {
		out.Mounts = append(out.Mounts, mount.Mount{
			Type: mountTypeToDocker(m.GetType()), Source: m.GetSource(), Target: m.GetTarget(), ReadOnly: m.GetReadOnly(),
		})
	}
	if h := c.GetHealthcheck(); h != nil {
		out.Healthcheck = &container.HealthConfig{
			Test:        append([]string(nil), h.GetTest()...),
			Interval:    durationOf(h.GetInterval()),
			Timeout:     durationOf(h.GetTimeout()),
			StartPeriod: durationOf(h.GetStartPeriod()),
			Retries:     int(h.GetRetries()),
		}
	}
	for _, s := range c.GetSecrets() {
		ref := &swarm.SecretReference{SecretID: s.GetSecretId(), SecretName: s.GetSecretName()}
		if f := s.GetFile(); f != nil {
			ref.File = &swarm.SecretReferenceFileTarget{Name: f.GetName(), UID: f.GetUid(), GID: f.GetGid(), Mode: fileMode(f.GetMode())}
		}
		out.Secrets = append(out.Secrets, ref)
	}
	for _, s := range c.GetConfigs() {
		ref := &swarm.ConfigReference{ConfigID: s.GetConfigId(), ConfigName: s.GetConfigName()}
		if f := s.GetFile(); f != nil {
			ref.File = &swarm.ConfigReferenceFileTarget{Name: f.GetName(), UID: f.GetUid(), GID: f.GetGid(), Mode: fileMode(f.GetMode())}
		}
		out.Configs = append(out.Configs, ref)
	}
	return out
}

func updateConfigToDocker(u *api.UpdateConfig) *swarm.UpdateConfig {
	out := &swarm.UpdateConfig{
		Parallelism:     u.GetParallelism(),
		Delay:           durationOf(u.GetDelay()),
		Monitor:         durationOf(u.GetMonitor()),
		MaxFailureRatio: u.GetMaxFailureRatio(),
		FailureAction:   swarm.UpdateFailureActionPause,
		Order:           swarm.UpdateOrderStopFirst,
	}
	switch u.GetFailureAction() {
	case api.UpdateConfig_CONTINUE:
		out.FailureAction = swarm.UpdateFailureActionContinue
	case api.UpdateConfig_ROLLBACK:
		out.FailureAction = swarm.UpdateFailureActionRollback
	}
	if u.GetOrder() == api.UpdateConfig_START_FIRST {
		out.Order = swarm.UpdateOrderStartFirst
	}
	return out
}

func endpointSpecToDocker(e *api.EndpointSpec) swarm.EndpointSpec {
	out := swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP, Ports: portsToDocker(e.GetPorts())}
	if e.GetMode() == api.EndpointSpec_DNSRR {
		out.Mode = swarm.ResolutionModeDNSRR
	}
	return out
}

func portsToDocker(ports []*api.PortConfig) []swarm.PortConfig {
	var out []swarm.PortConfig
	for _, p := range ports {
		out = append(out, swarm.PortConfig{
			Name:          p.GetName(),
			Protocol:      swarm.PortConfigProtocol(strings.ToLower(p.GetProtocol().String())),
			TargetPort:    p.GetTargetPort(),
			PublishedPort: p.GetPublishedPort(),
			PublishMode:   swarm.PortConfigPublishMode(strings.ToLower(p.GetPublishMode().String())),
		})
	}
	return out
}

func restartConditionToDocker(c api.RestartPolicy_Condition) swarm.RestartPolicyCondition {
	switch c {
	case api.RestartPolicy_NONE:
		return swarm.RestartPolicyConditionNone
	case api.RestartPolicy_ON_FAILURE:
		return swarm.RestartPolicyConditionOnFailure
	}
	return swarm.RestartPolicyConditionAny
}

func mountTypeToDocker(t api.Mount_Type) mount.Type {
	switch t {
	case api.Mount_VOLUME:
		return mount.TypeVolume
	case api.Mount_TMPFS:
		return mount.TypeTmpfs
	case api.Mount_NPIPE:
		return mount.TypeNamedPipe
	}
	return mount.TypeBind
}

// ServiceSpecFromDocker is the service spec of a `docker service create`
// or `docker service update`. Fields swarmd cannot honour are refused
// with an error naming them rather than dropped; zero-valued ones (which
// the docker CLI always sends) are fine.
func ServiceSpecFromDocker(s swarm.ServiceSpec) (*api.ServiceSpec, error) {
	task, err := taskSpecFromDocker(s.TaskTemplate)
	if err != nil {
		return nil, err
	}
	out := &api.ServiceSpec{Annotations: annotationsFromDocker(s.Annotations), Task: task}
	// The networks of the task template win; clients older than API 1.44
	// may still send the service's deprecated Networks instead.
	//lint:ignore SA1019 read for those clients only
	if old := s.Networks; len(task.Networks) == 0 && len(old) > 0 {
		if task.Networks, err = networksFromDocker("Networks", old); err != nil {
			return nil, err
		}
	}
	if err := modeFromDocker(s.Mode, out); err != nil {
		return nil, err
	}
	if s.UpdateConfig != nil {
		if out.Update, err = updateConfigFromDocker("UpdateConfig", s.UpdateConfig); err != nil {
			return nil, err
		}
	}
	if s.RollbackConfig != nil {
		if out.Rollback, err = updateConfigFromDocker("RollbackConfig", s.RollbackConfig); err != nil {
			return nil, err
		}
	}
	if s.EndpointSpec != nil {
		if out.Endpoint, err = endpointSpecFromDocker(s.EndpointSpec); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func modeFromDocker(m swarm.ServiceMode, out *api.ServiceSpec) error {
	set := 0
	for _, isSet := range []bool{m.Replicated != nil, m.Global != nil, m.ReplicatedJob != nil, m.GlobalJob != nil} {
		if isSet {
			set++
		}
	}
	if set > 1 {
		return errors.New("Mode: only one of Replicated, Global, ReplicatedJob and GlobalJob may be set")
	}
	switch {
	case m.Global != nil:
		out.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	case m.ReplicatedJob != nil:
		j := &api.ReplicatedJob{MaxConcurrent: 1, TotalCompletions: 1}
		if v := m.ReplicatedJob.MaxConcurrent; v != nil {
			j.MaxConcurrent = *v
		}
		if v := m.ReplicatedJob.TotalCompletions; v != nil {
			j.TotalCompletions = *v
		}
		out.Mode = &api.ServiceSpec_ReplicatedJob{ReplicatedJob: j}
	case m.GlobalJob != nil:
		out.Mode = &api.ServiceSpec_GlobalJob{GlobalJob: &api.GlobalJob{}}
	default:
		replicas := uint64(1)
		if m.Replicated != nil && m.Replicated.Replicas != nil {
			replicas = *m.Replicated.Replicas
		}
		out.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}}
	}
	return nil
}

func taskSpecFromDocker(t swarm.TaskSpec) (*api.TaskSpec, error) {
	switch {
	case t.PluginSpec != nil:
		return nil, errors.New("TaskTemplate.PluginSpec: plugin services are not supported by swarmd")
	case t.NetworkAttachmentSpec != nil:
		return nil, errors.New("TaskTemplate.NetworkAttachmentSpec: not supported by swarmd")
	case t.Runtime != "" && t.Runtime != swarm.RuntimeContainer:
		return nil, fmt.Errorf("TaskTemplate.Runtime: %q is not supported by swarmd (only %q)", t.Runtime, swarm.RuntimeContainer)
	case t.LogDriver != nil && t.LogDriver.Name != "":
		return nil, errors.New("TaskTemplate.LogDriver: per-service log drivers are not supported by swarmd; tasks log with the engine's default driver")
	}
	networks, err := networksFromDocker("TaskTemplate.Networks", t.Networks)
	if err != nil {
		return nil, err
	}
	out := &api.TaskSpec{ForceUpdate: t.ForceUpdate, Networks: networks}
	if t.ContainerSpec == nil {
		return nil, errors.New("TaskTemplate.ContainerSpec: missing")
	}
	c, err := containerSpecFromDocker(t.ContainerSpec)
	if err != nil {
		return nil, err
	}
	out.Container = c
	if r := t.Resources; r != nil {
		out.Resources = &api.ResourceRequirements{}
		if l := r.Limits; l != nil {
			if l.Pids != 0 {
				return nil, errors.New("TaskTemplate.Resources.Limits.Pids: not supported by swarmd")
			}
			out.Resources.Limits = &api.Resources{NanoCpus: l.NanoCPUs, MemoryBytes: l.MemoryBytes}
		}
		if v := r.Reservations; v != nil {
			if len(v.GenericResources) > 0 {
				return nil, errors.New("TaskTemplate.Resources.Reservations.GenericResources: not supported by swarmd")
			}
			out.Resources.Reservations = &api.Resources{NanoCpus: v.NanoCPUs, MemoryBytes: v.MemoryBytes}
		}
	}
	if r := t.RestartPolicy; r != nil {
		rp := &api.RestartPolicy{Delay: durationFrom(r.Delay), Window: durationFrom(r.Window)}
		switch r.Condition {
		case swarm.RestartPolicyConditionAny, "":
			rp.Condition = api.RestartPolicy_ANY
		case swarm.RestartPolicyConditionOnFailure:
			rp.Condition = api.RestartPolicy_ON_FAILURE
		case swarm.RestartPolicyConditionNone:
			rp.Condition = api.RestartPolicy_NONE
		default:
			return nil, fmt.Errorf("invalid RestartCondition: %q", r.Condition)
		}
		if r.MaxAttempts != nil {
			rp.MaxAttempts = *r.MaxAttempts
		}
		out.Restart = rp
	}
	if p := t.Placement; p != nil {
		pl := &api.Placement{Constraints: append([]string(nil), p.Constraints...), MaxReplicas: p.MaxReplicas}
		for i, pref := range p.Preferences {
			if pref.Spread == nil {
				return nil, fmt.Errorf("TaskTemplate.Placement.Preferences[%d]: only spread preferences are supported", i)
			}
			pl.Preferences = append(pl.Preferences, &api.PlacementPreference{SpreadDescriptor: pref.Spread.SpreadDescriptor})
		}
		for _, pf := range p.Platforms {
			pl.Platforms = append(pl.Platforms, &api.Platform{Architecture: pf.Architecture, Os: pf.OS})
		}
		out.Placement = pl
	}
	return out, nil
}

// networksFromDocker maps a service's network attachments. Targets stay as
// the client named them (ID, name or ID prefix): the caller resolves them
// to swarm network IDs.
func networksFromDocker(field string, atts []swarm.NetworkAttachmentConfig) ([]*api.NetworkAttachmentConfig, error) {
	var out []*api.NetworkAttachmentConfig
	for i, n := range atts {
		if n.Target == "" {
			return nil, fmt.Errorf("%s[%d].Target: missing", field, i)
		}
		if len(n.DriverOpts) > 0 {
			return nil, fmt.Errorf("%s[%d].DriverOpts: not supported by swarmd", field, i)
		}
		out = append(out, &api.NetworkAttachmentConfig{Target: n.Target, Aliases: append([]string(nil), n.Aliases...)})
	}
	return out, nil
}

func containerSpecFromDocker(c *swarm.ContainerSpec) (*api.ContainerSpec, error) {
	if err := unsupportedContainerFields(c); err != nil {
		return nil, err
	}
	out := &api.ContainerSpec{
		Image:           c.Image,
		Labels:          maps.Clone(c.Labels),
		Command:         append([]string(nil), c.Command...),
		Args:            append([]string(nil), c.Args...),
		Hostname:        c.Hostname,
		Env:             append([]string(nil), c.Env...),
		Dir:             c.Dir,
		User:            c.User,
		Groups:          append([]string(nil), c.Groups...),
		Tty:             c.TTY,
		OpenStdin:       c.OpenStdin,
		ReadOnly:        c.ReadOnly,
		StopGracePeriod: durationFrom(c.StopGracePeriod),
		StopSignal:      c.StopSignal,
		Init:            c.Init != nil && *c.Init,
		Hosts:           append([]string(nil), c.Hosts...),
	}
	for i, m := range c.Mounts {
		am, err := mountFromDocker(i, m)
		if err != nil {
			return nil, err
		}
		out.Mounts = append(out.Mounts, am)
	}
	if h := c.Healthcheck; h != nil {
		if h.StartInterval != 0 {
			return nil, errors.New("TaskTemplate.ContainerSpec.Healthcheck.StartInterval: not supported by swarmd")
		}
		if h.Retries < 0 {
			return nil, fmt.Errorf("TaskTemplate.ContainerSpec.Healthcheck.Retries: %d must not be negative", h.Retries)
		}
		out.Healthcheck = &api.HealthConfig{
			Test:        append([]string(nil), h.Test...),
			Interval:    nonZeroDuration(h.Interval),
			Timeout:     nonZeroDuration(h.Timeout),
			StartPeriod: nonZeroDuration(h.StartPeriod),
			Retries:     int32(min(h.Retries, 1<<31-1)),
		}
	}
	for i, s := range c.Secrets {
		if s == nil {
			return nil, fmt.Errorf("TaskTemplate.ContainerSpec.Secrets[%d]: null", i)
		}
		ref := &api.SecretReference{SecretId: s.SecretID, SecretName: s.SecretName}
		if f := s.File; f != nil {
			ref.File = &api.FileTarget{Name: f.Name, Uid: f.UID, Gid: f.GID, Mode: uint32(f.Mode)}
		}
		out.Secrets = append(out.Secrets, ref)
	}
	for i, s := range c.Configs {
		if s == nil {
			return nil, fmt.Errorf("TaskTemplate.ContainerSpec.Configs[%d]: null", i)
		}
		if s.Runtime != nil {
			return nil, fmt.Errorf("TaskTemplate.ContainerSpec.Configs[%d].Runtime: not supported by swarmd", i)
		}
		ref := &api.ConfigReference{ConfigId: s.ConfigID, ConfigName: s.ConfigName}
		if f := s.File; f != nil {
			ref.File = &api.FileTarget{Name: f.Name, Uid: f.UID, Gid: f.GID, Mode: uint32(f.Mode)}
		}
		out.Configs = append(out.Configs, ref)
	}
	return out, nil
}

// unsupportedContainerFields names the first container spec field set to
// something swarmd cannot honour.
func unsupportedContainerFields(c *swarm.ContainerSpec) error {
	const p = "TaskTemplate.ContainerSpec."
	field := ""
	switch {
	case c.Privileges != nil && !defaultPrivileges(c.Privileges):
		field = "Privileges"
	case c.DNSConfig != nil && (len(c.DNSConfig.Nameservers) > 0 || len(c.DNSConfig.Search) > 0 || len(c.DNSConfig.Options) > 0):
		field = "DNSConfig"
	case c.Isolation != "" && c.Isolation != container.IsolationDefault:
		field = "Isolation"
	case len(c.Sysctls) > 0:
		field = "Sysctls"
	case len(c.CapabilityAdd) > 0:
		field = "CapabilityAdd"
	case len(c.CapabilityDrop) > 0:
		field = "CapabilityDrop"
	case len(c.Ulimits) > 0:
		field = "Ulimits"
	case c.OomScoreAdj != 0:
		field = "OomScoreAdj"
	}
	if field != "" {
		return fmt.Errorf("%s%s: not supported by swarmd", p, field)
	}
	return nil
}

func defaultPrivileges(p *swarm.Privileges) bool {
	return p.CredentialSpec == nil && p.SELinuxContext == nil && !p.NoNewPrivileges &&
		(p.Seccomp == nil || p.Seccomp.Mode == "" || p.Seccomp.Mode == swarm.SeccompModeDefault) &&
		(p.AppArmor == nil || p.AppArmor.Mode == "" || p.AppArmor.Mode == swarm.AppArmorModeDefault)
}

func mountFromDocker(i int, m mount.Mount) (*api.Mount, error) {
	p := fmt.Sprintf("TaskTemplate.ContainerSpec.Mounts[%d]", i)
	out := &api.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
	switch m.Type {
	case mount.TypeBind:
		out.Type = api.Mount_BIND
	case mount.TypeVolume:
		out.Type = api.Mount_VOLUME
	case mount.TypeTmpfs:
		out.Type = api.Mount_TMPFS
	case mount.TypeNamedPipe:
		out.Type = api.Mount_NPIPE
	default:
		return nil, fmt.Errorf("%s.Type: invalid mount type %q", p, m.Type)
	}
	if m.Target == "" {
		return nil, fmt.Errorf("%s.Target: missing", p)
	}
	if b := m.BindOptions; b != nil && *b != (mount.BindOptions{}) {
		return nil, fmt.Errorf("%s.BindOptions: not supported by swarmd", p)
	}
	if v := m.VolumeOptions; v != nil && (v.NoCopy || len(v.Labels) > 0 || v.Subpath != "" || v.DriverConfig != nil) {
		return nil, fmt.Errorf("%s.VolumeOptions: not supported by swarmd", p)
	}
	if t := m.TmpfsOptions; t != nil && (t.SizeBytes != 0 || t.Mode != 0 || len(t.Options) > 0) {
		return nil, fmt.Errorf("%s.TmpfsOptions: not supported by swarmd", p)
	}
	if m.ImageOptions != nil || m.ClusterOptions != nil {
		return nil, fmt.Errorf("%s: image and cluster mount options are not supported by swarmd", p)
	}
	return out, nil
}

func nonZeroDuration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func fileMode(m uint32) os.FileMode { return os.FileMode(m) }

func updateConfigFromDocker(field string, u *swarm.UpdateConfig) (*api.UpdateConfig, error) {
	if u.Delay < 0 {
		return nil, fmt.Errorf("%s.Delay: %s must not be negative", field, u.Delay)
	}
	if u.Monitor < 0 {
		return nil, fmt.Errorf("%s.Monitor: %s must not be negative", field, u.Monitor)
	}
	if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
		return nil, fmt.Errorf("%s.MaxFailureRatio: %g must be between 0 and 1", field, u.MaxFailureRatio)
	}
	out := &api.UpdateConfig{
		Parallelism:     u.Parallelism,
		Delay:           durationpb.New(u.Delay),
		Monitor:         nonZeroDuration(u.Monitor),
		MaxFailureRatio: u.MaxFailureRatio,
	}
	switch u.FailureAction {
	case swarm.UpdateFailureActionPause, "":
		out.FailureAction = api.UpdateConfig_PAUSE
	case swarm.UpdateFailureActionContinue:
		out.FailureAction = api.UpdateConfig_CONTINUE
	case swarm.UpdateFailureActionRollback:
		if field == "RollbackConfig" {
			return nil, fmt.Errorf("%s.FailureAction: %q is not allowed for a rollback", field, u.FailureAction)
		}
		out.FailureAction = api.UpdateConfig_ROLLBACK
	default:
		return nil, fmt.Errorf("%s.FailureAction: unrecognized update failure action %q", field, u.FailureAction)
	}
	switch u.Order {
	case swarm.UpdateOrderStopFirst, "":
		out.Order = api.UpdateConfig_STOP_FIRST
	case swarm.UpdateOrderStartFirst:
		out.Order = api.UpdateConfig_START_FIRST
	default:
		return nil, fmt.Errorf("%s.Order: unrecognized update order %q", field, u.Order)
	}
	return out, nil
}

func endpointSpecFromDocker(e *swarm.EndpointSpec) (*api.EndpointSpec, error) {
	out := &api.EndpointSpec{}
	switch e.Mode {
	case swarm.ResolutionModeVIP, "":
		out.Mode = api.EndpointSpec_VIP
	case swarm.ResolutionModeDNSRR:
		out.Mode = api.EndpointSpec_DNSRR
	default:
		return nil, fmt.Errorf("EndpointSpec.Mode: invalid resolution mode %q", e.Mode)
	}
	for i, p := range e.Ports {
		pc := &api.PortConfig{Name: p.Name, TargetPort: p.TargetPort, PublishedPort: p.PublishedPort}
		switch p.Protocol {
		case swarm.PortConfigProtocolTCP, "":
			pc.Protocol = api.PortConfig_TCP
		case swarm.PortConfigProtocolUDP:
			pc.Protocol = api.PortConfig_UDP
		case swarm.PortConfigProtocolSCTP:
			pc.Protocol = api.PortConfig_SCTP
		default:
			return nil, fmt.Errorf("EndpointSpec.Ports[%d].Protocol: invalid protocol %q", i, p.Protocol)
		}
		switch p.PublishMode {
		case swarm.PortConfigPublishModeIngress, "":
			pc.PublishMode = api.PortConfig_INGRESS
		case swarm.PortConfigPublishModeHost:
			pc.PublishMode = api.PortConfig_HOST
		default:
			return nil, fmt.Errorf("EndpointSpec.Ports[%d].PublishMode: invalid publish mode %q", i, p.PublishMode)
		}
		out.Ports = append(out.Ports, pc)
	}
	return out, nil
}
