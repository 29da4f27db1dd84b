package controlapi

import (
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/constraint"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Pure validation: every function here looks only at its arguments. The
// texts are swarmkit's where swarmkit has a rule (docker users see them
// verbatim); the rules swarmkit lacks name the field the same way.

const (
	// MaxSecretSize bounds Secret.Spec.Data (exclusive), as docker does.
	MaxSecretSize = 500 * 1024
	// MaxConfigSize bounds Config.Spec.Data (exclusive), as docker does.
	MaxConfigSize = 1000 * 1024

	// minNodeCertExpiry is the shortest node certificate lifetime.
	minNodeCertExpiry = time.Hour
	// minHealthDuration is the shortest non-zero healthcheck duration.
	minHealthDuration = time.Millisecond
	// maxNameLen bounds service and network names (a DNS label).
	maxNameLen = 63
	// maxSecretNameLen bounds secret and config names.
	maxSecretNameLen = 64
)

var (
	// A service or network name is a DNS name component.
	validDNSName = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)
	// Secrets and configs also allow dots.
	validSecretName = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`)

	imageReference = regexp.MustCompile(referencePattern())
)

// referencePattern is the grammar of a docker image reference
// (name[:tag][@digest]) as distribution/reference defines it.
func referencePattern() string {
	const (
		alnum      = `[a-z0-9]+`
		separator  = `(?:[._]|__|[-]+)`
		pathComp   = alnum + `(?:` + separator + alnum + `)*`
		domainComp = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
		domainName = domainComp + `(?:\.` + domainComp + `)*`
		ipv6       = `\[[a-fA-F0-9:]+\]`
		domain     = `(?:` + domainName + `|` + ipv6 + `)(?::[0-9]+)?`
		name       = `(?:` + domain + `/)?` + pathComp + `(?:/` + pathComp + `)*`
		tag        = `[\w][\w.-]{0,127}`
		algorithm  = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*`
		digest     = algorithm + `:[0-9a-fA-F]{32,}`
	)
	return `^(` + name + `)(?::` + tag + `)?(?:@(` + digest + `))?$`
}

// duration converts d (nil is zero); an out-of-range one is invalid.
func duration(d *durationpb.Duration, field string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, errorf(codes.InvalidArgument, "%s: invalid duration: %v", field, err)
	}
	return d.AsDuration(), nil
}

// nonNegative checks that d is a valid, non-negative duration.
func nonNegative(d *durationpb.Duration, field string) error {
	v, err := duration(d, field)
	if err != nil {
		return err
	}
	if v < 0 {
		return errorf(codes.InvalidArgument, "%s cannot be negative", field)
	}
	return nil
}

// validateName checks a service or network name.
func validateName(a *api.Annotations) error {
	name := a.GetName()
	switch {
	case name == "":
		return errorf(codes.InvalidArgument, "meta: name must be provided")
	case !validDNSName.MatchString(name):
		return errorf(codes.InvalidArgument, "name must be valid as a DNS name component")
	case len(name) > maxNameLen:
		return errorf(codes.InvalidArgument, "name must be 63 characters or fewer")
	}
	return nil
}

// validateSecretName checks a secret or config name.
func validateSecretName(a *api.Annotations) error {
	name := a.GetName()
	if name == "" {
		return errorf(codes.InvalidArgument, "name must be provided")
	}
	if len(name) > maxSecretNameLen || !validSecretName.MatchString(name) {
		return errorf(codes.InvalidArgument,
			"invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]")
	}
	return nil
}

// isJob reports whether spec is a replicated or global job.
func isJob(spec *api.ServiceSpec) bool {
	return spec.GetReplicatedJob() != nil || spec.GetGlobalJob() != nil
}

// validateServiceSpec checks everything about a service spec that does
// not depend on other objects.
func validateServiceSpec(spec *api.ServiceSpec) error {
	if spec == nil {
		return invalidArgument()
	}
	if err := validateName(spec.GetAnnotations()); err != nil {
		return err
	}
	if err := validateTaskSpec(spec.GetTask()); err != nil {
		return err
	}
	if err := validateMode(spec); err != nil {
		return err
	}
	if isJob(spec) {
		if spec.GetUpdate() != nil {
			return errorf(codes.InvalidArgument, "Jobs may not have an update config")
		}
	} else if err := validateUpdateConfig(spec.GetUpdate(), "update"); err != nil {
		return err
	}
	if err := validateUpdateConfig(spec.GetRollback(), "rollback"); err != nil {
		return err
	}
	return validateEndpointSpec(spec.GetEndpoint())
}

func validateMode(spec *api.ServiceSpec) error {
	switch m := spec.GetMode().(type) {
	case *api.ServiceSpec_Replicated:
		// uint64 fields: a negative number sent through a blind cast
		// arrives as an absurd one.
		if int64(m.Replicated.GetReplicas()) < 0 {
			return errorf(codes.InvalidArgument, "Number of replicas must be non-negative")
		}
	case *api.ServiceSpec_Global, *api.ServiceSpec_GlobalJob:
	case *api.ServiceSpec_ReplicatedJob:
		if int64(m.ReplicatedJob.GetMaxConcurrent()) < 0 {
			return errorf(codes.InvalidArgument, "Maximum concurrent jobs must not be negative")
		}
		if int64(m.ReplicatedJob.GetTotalCompletions()) < 0 {
			return errorf(codes.InvalidArgument, "Total completed jobs must not be negative")
		}
	default:
		return errorf(codes.InvalidArgument, "Unrecognized service mode")
	}
	return nil
}

func validateTaskSpec(t *api.TaskSpec) error {
	if t.GetContainer() == nil {
		return errorf(codes.InvalidArgument, "TaskSpec: missing runtime")
	}
	if err := validateResources(t.GetResources().GetLimits()); err != nil {
		return err
	}
	if err := validateResources(t.GetResources().GetReservations()); err != nil {
		return err
	}
	if err := validateRestartPolicy(t.GetRestart()); err != nil {
		return err
	}
	if err := validatePlacement(t.GetPlacement()); err != nil {
		return err
	}
	for _, n := range t.GetNetworks() {
		if n.GetTarget() == "" {
			return errorf(codes.InvalidArgument, "TaskSpec: network target must be provided")
		}
	}
	return validateContainerSpec(t.GetContainer())
}

func validateResources(r *api.Resources) error {
	if r == nil {
		return nil
	}
	if r.GetNanoCpus() != 0 && r.GetNanoCpus() < 1e6 {
		return errorf(codes.InvalidArgument, "invalid cpu value %g: Must be at least %g", float64(r.GetNanoCpus())/1e9, 1e6/1e9)
	}
	if r.GetMemoryBytes() != 0 && r.GetMemoryBytes() < 4*1024*1024 {
		return errorf(codes.InvalidArgument, "invalid memory value %d: Must be at least 4MiB", r.GetMemoryBytes())
	}
	return nil
}

func validateRestartPolicy(rp *api.RestartPolicy) error {
	if rp == nil {
		return nil
	}
	switch rp.GetCondition() {
	case api.RestartPolicy_NONE, api.RestartPolicy_ON_FAILURE, api.RestartPolicy_ANY:
	default:
		return errorf(codes.InvalidArgument, "TaskSpec: restart-condition %d is not one of none, on-failure, any", rp.GetCondition())
	}
	if err := nonNegative(rp.GetDelay(), "TaskSpec: restart-delay"); err != nil {
		return err
	}
	if int64(rp.GetMaxAttempts()) < 0 {
		return errorf(codes.InvalidArgument, "TaskSpec: restart-max-attempts cannot be negative")
	}
	return nonNegative(rp.GetWindow(), "TaskSpec: restart-window")
}

func validatePlacement(p *api.Placement) error {
	if p == nil {
		return nil
	}
	if err := validateConstraints(p.GetConstraints()); err != nil {
		return err
	}
	for _, pref := range p.GetPreferences() {
		if pref.GetSpreadDescriptor() == "" {
			return errorf(codes.InvalidArgument, "Placement: spread descriptor must be provided")
		}
	}
	if int64(p.GetMaxReplicas()) < 0 {
		return errorf(codes.InvalidArgument, "Placement: max-replicas cannot be negative")
	}
	return nil
}

// validateConstraints checks placement constraints: "key==value" or
// "key!=value" (manager/constraint's grammar, the one placement uses).
func validateConstraints(exprs []string) error {
	if _, err := constraint.Parse(exprs); err != nil {
		return errorf(codes.InvalidArgument, "%s", err.Error())
	}
	return nil
}

func validateContainerSpec(c *api.ContainerSpec) error {
	if err := validateImage(c.GetImage()); err != nil {
		return err
	}
	seen := make(map[string]bool, len(c.GetMounts()))
	for _, m := range c.GetMounts() {
		switch m.GetType() {
		case api.Mount_BIND, api.Mount_VOLUME, api.Mount_TMPFS, api.Mount_NPIPE:
		default:
			return errorf(codes.InvalidArgument, "ContainerSpec: mount type %d is not one of bind, volume, tmpfs, npipe", m.GetType())
		}
		if m.GetTarget() == "" {
			return errorf(codes.InvalidArgument, "ContainerSpec: mount target must be provided")
		}
		if seen[m.GetTarget()] {
			return errorf(codes.InvalidArgument, "ContainerSpec: duplicate mount point: %s", m.GetTarget())
		}
		seen[m.GetTarget()] = true
	}
	if err := nonNegative(c.GetStopGracePeriod(), "ContainerSpec: stop-grace-period"); err != nil {
		return err
	}
	if err := validateHealthCheck(c.GetHealthcheck()); err != nil {
		return err
	}
	if err := validateSecretRefs(c.GetSecrets()); err != nil {
		return err
	}
	return validateConfigRefs(c.GetConfigs())
}

// validateImage checks that image is a docker image reference.
func validateImage(image string) error {
	if image == "" {
		return errorf(codes.InvalidArgument, "ContainerSpec: image reference must be provided")
	}
	if !validReference(image) {
		return errorf(codes.InvalidArgument, "ContainerSpec: %q is not a valid repository/tag", image)
	}
	return nil
}

func validReference(ref string) bool {
	m := imageReference.FindStringSubmatch(ref)
	if m == nil {
		return false
	}
	name, digest := m[1], m[2]
	if len(name) > 255 {
		return false
	}
	// The repository path (after the domain, if any) is lowercase, and
	// the reference is not a 64-digit hex string (that is an image ID).
	path := name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		if first := name[:i]; strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			path = name[i+1:]
		}
	}
	if strings.ToLower(path) != path || isHex64(ref) {
		return false
	}
	if alg, hex, ok := strings.Cut(digest, ":"); ok {
		switch alg {
		case "sha256":
			return len(hex) == 64
		case "sha384":
			return len(hex) == 96
		case "sha512":
			return len(hex) == 128
		}
	}
	return true
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func validateHealthCheck(hc *api.HealthConfig) error {
	if hc == nil {
		return nil
	}
	for _, d := range []struct {
		v    *durationpb.Duration
		name string
	}{{hc.GetInterval(), "Interval"}, {hc.GetTimeout(), "Timeout"}, {hc.GetStartPeriod(), "StartPeriod"}} {
		v, err := duration(d.v, "ContainerSpec: "+d.name+" in HealthConfig")
		if err != nil {
			return err
		}
		if v != 0 && v < minHealthDuration {
			return errorf(codes.InvalidArgument, "ContainerSpec: %s in HealthConfig cannot be less than %s", d.name, minHealthDuration)
		}
	}
	if hc.GetRetries() < 0 {
		return errorf(codes.InvalidArgument, "ContainerSpec: Retries in HealthConfig cannot be negative")
	}
	return nil
}

func validateSecretRefs(refs []*api.SecretReference) error {
	targets := make(map[string]string)
	for _, r := range refs {
		if r.GetSecretId() == "" || r.GetSecretName() == "" {
			return errorf(codes.InvalidArgument, "malformed secret reference")
		}
		if r.GetFile() == nil {
			return errorf(codes.InvalidArgument, "malformed secret reference, no target provided")
		}
		name := r.GetFile().GetName()
		if name == "" {
			return errorf(codes.InvalidArgument, "malformed file secret reference, invalid target file name provided")
		}
		if prev, ok := targets[name]; ok {
			return errorf(codes.InvalidArgument, "secret references '%s' and '%s' have a conflicting target: '%s'", prev, r.GetSecretName(), name)
		}
		targets[name] = r.GetSecretName()
	}
	return nil
}

func validateConfigRefs(refs []*api.ConfigReference) error {
	targets := make(map[string]string)
	for _, r := range refs {
		if r.GetConfigId() == "" || r.GetConfigName() == "" {
			return errorf(codes.InvalidArgument, "malformed config reference")
		}
		if r.GetFile() == nil {
			return errorf(codes.InvalidArgument, "malformed config reference, no target provided")
		}
		name := r.GetFile().GetName()
		if name == "" {
			return errorf(codes.InvalidArgument, "malformed file config reference, invalid target file name provided")
		}
		if prev, ok := targets[name]; ok {
			return errorf(codes.InvalidArgument, "config references '%s' and '%s' have a conflicting target: '%s'", prev, r.GetConfigName(), name)
		}
		targets[name] = r.GetConfigName()
	}
	return nil
}

// validateUpdateConfig checks an update or rollback config; which is
// "update" or "rollback", as in docker's flag names.
func validateUpdateConfig(uc *api.UpdateConfig, which string) error {
	if uc == nil {
		return nil
	}
	if int64(uc.GetParallelism()) < 0 {
		return errorf(codes.InvalidArgument, "TaskSpec: %s-parallelism cannot be negative", which)
	}
	if err := nonNegative(uc.GetDelay(), "TaskSpec: "+which+"-delay"); err != nil {
		return err
	}
	switch uc.GetFailureAction() {
	case api.UpdateConfig_PAUSE, api.UpdateConfig_CONTINUE, api.UpdateConfig_ROLLBACK:
	default:
		return errorf(codes.InvalidArgument, "TaskSpec: %s-failure-action %d is not one of pause, continue, rollback", which, uc.GetFailureAction())
	}
	if err := nonNegative(uc.GetMonitor(), "TaskSpec: "+which+"-monitor"); err != nil {
		return err
	}
	if r := float64(uc.GetMaxFailureRatio()); math.IsNaN(r) || r < 0 || r > 1 {
		return errorf(codes.InvalidArgument, "TaskSpec: %s-maxfailureratio cannot be less than 0 or bigger than 1", which)
	}
	switch uc.GetOrder() {
	case api.UpdateConfig_STOP_FIRST, api.UpdateConfig_START_FIRST:
	default:
		return errorf(codes.InvalidArgument, "TaskSpec: %s-order %d is not one of stop-first, start-first", which, uc.GetOrder())
	}
	return nil
}

func validateEndpointSpec(ep *api.EndpointSpec) error {
	if ep == nil {
		return nil
	}
	switch ep.GetMode() {
	case api.EndpointSpec_VIP, api.EndpointSpec_DNSRR:
	default:
		return errorf(codes.InvalidArgument, "EndpointSpec: mode %d is not one of vip, dnsrr", ep.GetMode())
	}
	type key struct {
		port  uint32
		proto api.PortConfig_Protocol
	}
	seen := make(map[key]bool)
	for _, p := range ep.GetPorts() {
		switch p.GetProtocol() {
		case api.PortConfig_TCP, api.PortConfig_UDP, api.PortConfig_SCTP:
		default:
			return errorf(codes.InvalidArgument, "EndpointSpec: protocol %d is not one of tcp, udp, sctp", p.GetProtocol())
		}
		switch p.GetPublishMode() {
		case api.PortConfig_INGRESS, api.PortConfig_HOST:
		default:
			return errorf(codes.InvalidArgument, "EndpointSpec: publish mode %d is not one of ingress, host", p.GetPublishMode())
		}
		if p.GetTargetPort() == 0 || p.GetTargetPort() > math.MaxUint16 {
			return errorf(codes.InvalidArgument, "EndpointSpec: invalid target port %d", p.GetTargetPort())
		}
		if p.GetPublishedPort() > math.MaxUint16 {
			return errorf(codes.InvalidArgument, "EndpointSpec: invalid published port %d", p.GetPublishedPort())
		}
		// The routing mesh balances over a virtual IP: DNS round robin
		// services can only publish in host mode.
		if ep.GetMode() == api.EndpointSpec_DNSRR && p.GetPublishMode() == api.PortConfig_INGRESS {
			return errorf(codes.InvalidArgument, "EndpointSpec: port published with ingress mode can't be used with dnsrr mode")
		}
		if p.GetPublishedPort() == 0 {
			continue // a dynamic port conflicts with nothing
		}
		k := key{p.GetPublishedPort(), p.GetProtocol()}
		if seen[k] {
			return errorf(codes.InvalidArgument, "EndpointSpec: duplicate published ports provided")
		}
		seen[k] = true
	}
	return nil
}

// validateNodeSpec checks the spec of a node update.
func validateNodeSpec(spec *api.NodeSpec) error {
	if spec == nil {
		return invalidArgument()
	}
	switch spec.GetDesiredRole() {
	case api.NodeRole_NODE_ROLE_WORKER, api.NodeRole_NODE_ROLE_MANAGER:
	default:
		return errorf(codes.InvalidArgument, "NodeSpec: role %d is not one of worker, manager", spec.GetDesiredRole())
	}
	switch spec.GetAvailability() {
	case api.NodeAvailability_NODE_AVAILABILITY_ACTIVE, api.NodeAvailability_NODE_AVAILABILITY_PAUSE, api.NodeAvailability_NODE_AVAILABILITY_DRAIN:
	default:
		return errorf(codes.InvalidArgument, "NodeSpec: availability %d is not one of active, pause, drain", spec.GetAvailability())
	}
	switch spec.GetMembership() {
	case api.NodeMembership_NODE_MEMBERSHIP_PENDING, api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED:
	default:
		return errorf(codes.InvalidArgument, "NodeSpec: membership %d is not one of pending, accepted", spec.GetMembership())
	}
	return nil
}

// validateClusterSpec checks the spec of a cluster update; name is the
// cluster's current name, which cannot change.
func validateClusterSpec(spec *api.ClusterSpec, name string) error {
	if spec == nil {
		return invalidArgument()
	}
	if spec.GetAnnotations().GetName() != name {
		return errorf(codes.InvalidArgument, "modification of cluster name is not allowed")
	}
	expiry, err := duration(spec.GetCaConfig().GetNodeCertExpiry(), "CAConfig: node certificate expiry")
	if err != nil {
		return err
	}
	// Zero is "the default" (see applyClusterDefaults).
	if expiry != 0 && expiry < minNodeCertExpiry {
		return errorf(codes.InvalidArgument, "minimum certificate expiry time is: %s", minNodeCertExpiry)
	}
	for _, e := range spec.GetCaConfig().GetExternalCas() {
		if e.GetProtocol() != api.ExternalCA_CFSSL {
			return errorf(codes.InvalidArgument, "CAConfig: external CA protocol %d is not supported (only cfssl)", e.GetProtocol())
		}
		if u, err := url.Parse(e.GetUrl()); err != nil || u.Scheme == "" || u.Host == "" {
			return errorf(codes.InvalidArgument, "CAConfig: invalid external CA URL %q", e.GetUrl())
		}
	}
	hb, err := duration(spec.GetDispatcher().GetHeartbeatPeriod(), "Dispatcher: heartbeat period")
	if err != nil {
		return err
	}
	if hb < 0 {
		return errorf(codes.InvalidArgument, "heartbeat time period cannot be a negative duration")
	}
	if spec.GetOrchestration().GetTaskHistoryRetentionLimit() < 0 {
		return errorf(codes.InvalidArgument, "Orchestration: task history retention limit cannot be negative")
	}
	if r := spec.GetRaft(); r.GetHeartbeatTick() != 0 && r.GetElectionTick() != 0 && r.GetElectionTick() <= r.GetHeartbeatTick() {
		return errorf(codes.InvalidArgument, "Raft: election tick (%d) must be greater than heartbeat tick (%d)", r.GetElectionTick(), r.GetHeartbeatTick())
	}
	return nil
}

// validateNetworkSpec checks a network spec.
func validateNetworkSpec(spec *api.NetworkSpec) error {
	if spec == nil {
		return invalidArgument()
	}
	if spec.GetAttachable() && spec.GetIngress() {
		return errorf(codes.InvalidArgument, "ingress network cannot be attachable")
	}
	if err := validateName(spec.GetAnnotations()); err != nil {
		return err
	}
	if _, ok := spec.GetAnnotations().GetLabels()[predefinedLabel]; ok {
		return errorf(codes.PermissionDenied, "label %s is for internally created predefined networks and cannot be applied by users", predefinedLabel)
	}
	for _, c := range spec.GetIpam() {
		if err := validateIPAM(c); err != nil {
			return err
		}
	}
	return nil
}

// predefinedLabel marks the networks swarm creates itself.
const predefinedLabel = "com.docker.swarm.predefined"

func validateIPAM(c *api.IPAMConfig) error {
	if c == nil {
		return errorf(codes.InvalidArgument, "ipam configuration: cannot be empty")
	}
	subnet, err := netip.ParsePrefix(c.GetSubnet())
	if err != nil {
		return errorf(codes.InvalidArgument, "ipam configuration: invalid subnet %s", c.GetSubnet())
	}
	subnet = subnet.Masked()
	if c.GetRange() != "" {
		r, err := netip.ParsePrefix(c.GetRange())
		if err != nil {
			return errorf(codes.InvalidArgument, "ipam configuration: invalid range %s", c.GetRange())
		}
		if !subnet.Contains(r.Addr()) {
			return errorf(codes.InvalidArgument, "ipam configuration: subnet %s does not contain range %s", c.GetSubnet(), c.GetRange())
		}
	}
	if c.GetGateway() != "" {
		gw, err := netip.ParseAddr(c.GetGateway())
		if err != nil {
			return errorf(codes.InvalidArgument, "ipam configuration: invalid gateway %s", c.GetGateway())
		}
		if !subnet.Contains(gw) {
			return errorf(codes.InvalidArgument, "ipam configuration: subnet %s does not contain gateway %s", c.GetSubnet(), c.GetGateway())
		}
	}
	return nil
}

// validateSecretSpec checks a secret spec.
func validateSecretSpec(spec *api.SecretSpec) error {
	if spec == nil {
		return invalidArgument()
	}
	if err := validateSecretName(spec.GetAnnotations()); err != nil {
		return err
	}
	if spec.GetDriver() != "" {
		return nil // the driver holds the data
	}
	if n := len(spec.GetData()); n < 1 || n >= MaxSecretSize {
		return errorf(codes.InvalidArgument, "secret data must be larger than 0 and less than %d bytes", MaxSecretSize)
	}
	return nil
}

// validateConfigSpec checks a config spec.
func validateConfigSpec(spec *api.ConfigSpec) error {
	if spec == nil {
		return invalidArgument()
	}
	if err := validateSecretName(spec.GetAnnotations()); err != nil {
		return err
	}
	if n := len(spec.GetData()); n < 1 || n >= MaxConfigSize {
		return errorf(codes.InvalidArgument, "config data must be larger than 0 and less than %d bytes", MaxConfigSize)
	}
	return nil
}
