package convert

import (
	"fmt"
	"maps"
	"strings"

	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/openswarm/swarmd/api"
)

// defaultDataPathPort is the VXLAN port docker reports for a swarm.
const defaultDataPathPort = 4789

// SwarmFromCluster is the swarm as `docker swarm inspect` shows it, join
// tokens included (only managers can read it).
func SwarmFromCluster(c *api.Cluster) swarm.Swarm {
	spec := c.GetSpec()
	out := swarm.Swarm{
		ClusterInfo: swarm.ClusterInfo{
			ID:              c.GetId(),
			Meta:            metaToDocker(c.GetMeta()),
			Spec:            clusterSpecToDocker(spec),
			TLSInfo:         tlsInfo(c.GetRootCa().GetCaCert()),
			DefaultAddrPool: append([]string(nil), c.GetDefaultAddressPool()...),
			SubnetSize:      c.GetDefaultAddressPoolMask(),
			DataPathPort:    defaultDataPathPort,
		},
		JoinTokens: swarm.JoinTokens{
			Worker:  c.GetRootCa().GetJoinTokens().GetWorker(),
			Manager: c.GetRootCa().GetJoinTokens().GetManager(),
		},
	}
	return out
}

func clusterSpecToDocker(s *api.ClusterSpec) swarm.Spec {
	limit := s.GetOrchestration().GetTaskHistoryRetentionLimit()
	keep := s.GetRaft().GetKeepOldSnapshots()
	out := swarm.Spec{
		Annotations:   annotationsToDocker(s.GetAnnotations()),
		Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &limit},
		Raft: swarm.RaftConfig{
			SnapshotInterval:           s.GetRaft().GetSnapshotInterval(),
			KeepOldSnapshots:           &keep,
			LogEntriesForSlowFollowers: s.GetRaft().GetLogEntriesForSlowFollowers(),
			ElectionTick:               int(s.GetRaft().GetElectionTick()),
			HeartbeatTick:              int(s.GetRaft().GetHeartbeatTick()),
		},
		Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: durationOf(s.GetDispatcher().GetHeartbeatPeriod())},
		CAConfig: swarm.CAConfig{
			NodeCertExpiry: durationOf(s.GetCaConfig().GetNodeCertExpiry()),
			SigningCACert:  string(s.GetCaConfig().GetSigningCaCert()),
			ForceRotate:    s.GetCaConfig().GetForceRotate(),
		},
		EncryptionConfig: swarm.EncryptionConfig{AutoLockManagers: s.GetEncryptionConfig().GetAutoLockManagers()},
	}
	for _, e := range s.GetCaConfig().GetExternalCas() {
		out.CAConfig.ExternalCAs = append(out.CAConfig.ExternalCAs, &swarm.ExternalCA{
			Protocol: swarm.ExternalCAProtocolCFSSL, URL: e.GetUrl(),
			Options: maps.Clone(e.GetOptions()), CACert: string(e.GetCaCert()),
		})
	}
	if d := s.GetTaskDefaults().GetLogDriver(); d != "" {
		out.TaskDefaults.LogDriver = &swarm.Driver{Name: d}
	}
	return out
}

// MergeSwarmSpec applies a docker swarm spec (from `docker swarm init` or
// `docker swarm update`) onto the cluster's current spec and returns the
// result; cur is not modified. As docker does, a zero or nil field keeps
// the current value (external CAs included: an init without any keeps
// those of swarmd's --external-ca), except autolock, which the client
// always sends.
func MergeSwarmSpec(cur *api.ClusterSpec, s swarm.Spec) (*api.ClusterSpec, error) {
	out := proto.CloneOf(cur)
	if out == nil {
		out = &api.ClusterSpec{}
	}
	ensureClusterSpec(out)
	if s.Name != "" {
		out.Annotations.Name = s.Name
	}
	if len(s.Labels) != 0 {
		out.Annotations.Labels = maps.Clone(s.Labels)
	}
	if l := s.Orchestration.TaskHistoryRetentionLimit; l != nil {
		if *l < 0 {
			return nil, fmt.Errorf("Orchestration.TaskHistoryRetentionLimit: %d must not be negative", *l)
		}
		out.Orchestration.TaskHistoryRetentionLimit = *l
	}
	if v := s.Raft.SnapshotInterval; v != 0 {
		out.Raft.SnapshotInterval = v
	}
	if v := s.Raft.KeepOldSnapshots; v != nil {
		out.Raft.KeepOldSnapshots = *v
	}
	if v := s.Raft.LogEntriesForSlowFollowers; v != 0 {
		out.Raft.LogEntriesForSlowFollowers = v
	}
	if v := s.Raft.HeartbeatTick; v != 0 {
		if v < 0 {
			return nil, fmt.Errorf("Raft.HeartbeatTick: %d must be positive", v)
		}
		out.Raft.HeartbeatTick = uint32(v)
	}
	if v := s.Raft.ElectionTick; v != 0 {
		if v < 0 {
			return nil, fmt.Errorf("Raft.ElectionTick: %d must be positive", v)
		}
		out.Raft.ElectionTick = uint32(v)
	}
	if v := s.Dispatcher.HeartbeatPeriod; v != 0 {
		if v < 0 {
			return nil, fmt.Errorf("Dispatcher.HeartbeatPeriod: %s must be positive", v)
		}
		out.Dispatcher.HeartbeatPeriod = durationpb.New(v)
	}
	if v := s.CAConfig.NodeCertExpiry; v != 0 {
		if v < 0 {
			return nil, fmt.Errorf("CAConfig.NodeCertExpiry: %s must be positive", v)
		}
		out.CaConfig.NodeCertExpiry = durationpb.New(v)
	}
	if s.CAConfig.SigningCACert != "" {
		out.CaConfig.SigningCaCert = []byte(s.CAConfig.SigningCACert)
	}
	if s.CAConfig.SigningCAKey != "" {
		out.CaConfig.SigningCaKey = []byte(s.CAConfig.SigningCAKey)
	}
	if s.CAConfig.ForceRotate != 0 {
		out.CaConfig.ForceRotate = s.CAConfig.ForceRotate
	}
	if len(s.CAConfig.ExternalCAs) > 0 {
		cas, err := externalCAsFromDocker(s.CAConfig.ExternalCAs)
		if err != nil {
			return nil, err
		}
		out.CaConfig.ExternalCas = cas
	}
	out.EncryptionConfig.AutoLockManagers = s.EncryptionConfig.AutoLockManagers
	if d := s.TaskDefaults.LogDriver; d != nil {
		out.TaskDefaults.LogDriver = d.Name
	}
	return out, nil
}

func ensureClusterSpec(s *api.ClusterSpec) {
	if s.Annotations == nil {
		s.Annotations = &api.Annotations{}
	}
	if s.Orchestration == nil {
		s.Orchestration = &api.OrchestrationConfig{}
	}
	if s.Raft == nil {
		s.Raft = &api.RaftConfig{}
	}
	if s.Dispatcher == nil {
		s.Dispatcher = &api.DispatcherConfig{}
	}
	if s.CaConfig == nil {
		s.CaConfig = &api.CAConfig{}
	}
	if s.EncryptionConfig == nil {
		s.EncryptionConfig = &api.EncryptionConfig{}
	}
	if s.TaskDefaults == nil {
		s.TaskDefaults = &api.TaskDefaults{}
	}
}

func externalCAsFromDocker(in []*swarm.ExternalCA) ([]*api.ExternalCA, error) {
	var out []*api.ExternalCA
	for i, e := range in {
		if e == nil {
			continue
		}
		if p := strings.ToLower(string(e.Protocol)); p != string(swarm.ExternalCAProtocolCFSSL) {
			return nil, fmt.Errorf("CAConfig.ExternalCAs[%d].Protocol: invalid protocol %q: only %q is supported", i, e.Protocol, swarm.ExternalCAProtocolCFSSL)
		}
		if e.URL == "" {
			return nil, fmt.Errorf("CAConfig.ExternalCAs[%d].URL: missing", i)
		}
		out = append(out, &api.ExternalCA{
			Protocol: api.ExternalCA_CFSSL, Url: e.URL, Options: maps.Clone(e.Options), CaCert: []byte(e.CACert),
		})
	}
	return out, nil
}
