package controlapi

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// CreateService validates spec, fills docker's defaults and stores a new
// service. References to networks (by ID, name or prefix; stored as IDs),
// secrets and configs must exist; published ports must not be taken by
// another service.
func (s *Server) CreateService(ctx context.Context, req *api.CreateServiceRequest) (*api.CreateServiceResponse, error) {
	if req.GetSpec() == nil {
		return nil, invalidArgument()
	}
	spec := proto.CloneOf(req.GetSpec())
	applyServiceDefaults(spec)
	if err := validateServiceSpec(spec); err != nil {
		return nil, err
	}
	svc := &api.Service{Id: ca.NewID(), Spec: spec, SpecVersion: &api.Version{}}
	if isJob(spec) {
		svc.JobStatus = &api.JobStatus{JobIteration: &api.Version{}, LastExecution: s.timestamp()}
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if err := checkServiceRefs(tx, spec, "", true); err != nil {
			return err
		}
		return tx.Create(svc)
	})
	if errors.Is(err, store.ErrNameConflict) {
		// The store's text first: clients match on it.
		return nil, wrapf(err, codes.AlreadyExists, "%s: service %s already exists", store.ErrNameConflict.Error(), spec.GetAnnotations().GetName())
	}
	if err != nil {
		return nil, storeErr(err)
	}
	s.log.Debug("controlapi: service created", "service.id", svc.GetId(), "service.name", spec.GetAnnotations().GetName())
	return &api.CreateServiceResponse{Service: reread(s, svc)}, nil
}

// GetService returns the service with that ID, name or unique ID prefix;
// with insert_defaults, its spec has docker's defaults filled in.
func (s *Server) GetService(_ context.Context, req *api.GetServiceRequest) (*api.GetServiceResponse, error) {
	var (
		svc *api.Service
		err error
	)
	s.store.View(func(tx store.ReadTx) { svc, err = lookupService(tx, req.GetServiceId()) })
	if err != nil {
		return nil, err
	}
	if req.GetInsertDefaults() {
		applyServiceDefaults(svc.Spec)
	}
	return &api.GetServiceResponse{Service: svc}, nil
}

// ListServices returns the services the filters select: names, name and
// ID prefixes, labels.
func (s *Server) ListServices(_ context.Context, req *api.ListServicesRequest) (*api.ListServicesResponse, error) {
	f := req.GetFilters()
	services, err := list(s, indexedBy(f), func(_ store.ReadTx, o *api.Service) bool {
		return f == nil || matchCommon(f, o.GetId(), o.GetSpec().GetAnnotations().GetName(), o.GetSpec().GetAnnotations().GetLabels())
	})
	if err != nil {
		return nil, err
	}
	return &api.ListServicesResponse{Services: services}, nil
}

// UpdateService replaces a service's spec at the version it was read at,
// keeping the current one as PreviousSpec; with rollback PREVIOUS it swaps
// the two instead (the request's spec may then be omitted). The mode and
// the name cannot change.
func (s *Server) UpdateService(ctx context.Context, req *api.UpdateServiceRequest) (*api.UpdateServiceResponse, error) {
	if req.GetServiceId() == "" || req.GetServiceVersion() == nil {
		return nil, invalidArgument()
	}
	rollback := false
	switch req.GetRollback() {
	case api.UpdateServiceRequest_NONE:
	case api.UpdateServiceRequest_PREVIOUS:
		rollback = true
	default:
		return nil, errorf(codes.InvalidArgument, "rollback %d is not one of none, previous", req.GetRollback())
	}
	var spec *api.ServiceSpec
	if req.GetSpec() != nil || !rollback {
		if req.GetSpec() == nil {
			return nil, invalidArgument()
		}
		spec = proto.CloneOf(req.GetSpec())
		applyServiceDefaults(spec)
		if err := validateServiceSpec(spec); err != nil {
			return nil, err
		}
	}
	var svc *api.Service
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if svc, err = lookupService(tx, req.GetServiceId()); err != nil {
			return err
		}
		if spec != nil {
			if modeKind(svc.GetSpec()) != modeKind(spec) {
				return errorf(codes.Unimplemented, "service mode change is not allowed")
			}
			if svc.GetSpec().GetAnnotations().GetName() != spec.GetAnnotations().GetName() {
				return errorf(codes.Unimplemented, "renaming services is not supported")
			}
		}
		setVersion(svc, req.GetServiceVersion())
		if js := svc.GetJobStatus(); js != nil {
			// Every update of a job runs it again.
			js.JobIteration = &api.Version{Index: js.GetJobIteration().GetIndex() + 1}
			js.LastExecution = s.timestamp()
		}
		oldEndpoint := svc.GetSpec().GetEndpoint()
		if rollback {
			if svc.PreviousSpec == nil {
				return errorf(codes.FailedPrecondition, "service %s does not have a previous spec", svc.GetId())
			}
			svc.Spec, svc.PreviousSpec = svc.PreviousSpec, svc.Spec
			svc.UpdateStatus = &api.UpdateStatus{
				State:     api.UpdateStatus_ROLLBACK_STARTED,
				StartedAt: s.timestamp(),
				Message:   "manually requested rollback",
			}
		} else {
			svc.PreviousSpec, svc.Spec = svc.Spec, spec
			svc.UpdateStatus = nil
		}
		// The spec version is the version of the service the new spec
		// was made from: not comparable with Meta.Version.
		svc.SpecVersion = &api.Version{Index: req.GetServiceVersion().GetIndex()}
		// Ports are checked when they change, as swarmkit does: a
		// conflict that slipped in between concurrent creations must not
		// block every later update of both services.
		portsChanged := !proto.Equal(oldEndpoint, svc.GetSpec().GetEndpoint())
		if err := checkServiceRefs(tx, svc.Spec, svc.GetId(), portsChanged); err != nil {
			return err
		}
		return tx.Update(svc)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	s.log.Debug("controlapi: service updated", "service.id", svc.GetId(), "rollback", rollback)
	return &api.UpdateServiceResponse{Service: reread(s, svc)}, nil
}

// RemoveService deletes a service; the orchestrators shut its tasks down.
func (s *Server) RemoveService(ctx context.Context, req *api.RemoveServiceRequest) (*api.RemoveServiceResponse, error) {
	var id string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		svc, err := lookupService(tx, req.GetServiceId())
		if err != nil {
			return err
		}
		id = svc.GetId()
		return tx.Delete(store.KindService, id)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	s.log.Debug("controlapi: service removed", "service.id", id)
	return &api.RemoveServiceResponse{}, nil
}

// modeKind tells the service modes apart.
func modeKind(spec *api.ServiceSpec) int {
	switch spec.GetMode().(type) {
	case *api.ServiceSpec_Replicated:
		return 1
	case *api.ServiceSpec_Global:
		return 2
	case *api.ServiceSpec_ReplicatedJob:
		return 3
	case *api.ServiceSpec_GlobalJob:
		return 4
	}
	return 0
}

// checkServiceRefs checks what spec needs from other objects: networks
// (whose targets it rewrites to network IDs), secrets, configs, and, with
// ports, published ports free of the services other than selfID.
func checkServiceRefs(tx store.ReadTx, spec *api.ServiceSpec, selfID string, ports bool) error {
	if err := resolveNetworks(tx, spec); err != nil {
		return err
	}
	if err := checkSecrets(tx, spec); err != nil {
		return err
	}
	if err := checkConfigs(tx, spec); err != nil {
		return err
	}
	if !ports {
		return nil
	}
	return checkPortConflicts(tx, spec, selfID)
}

func resolveNetworks(tx store.ReadTx, spec *api.ServiceSpec) error {
	for _, att := range spec.GetTask().GetNetworks() {
		n, err := lookupNetwork(tx, att.GetTarget())
		if err != nil {
			return err
		}
		if n.GetSpec().GetIngress() {
			return errorf(codes.InvalidArgument, "Service cannot be explicitly attached to the ingress network %q", n.GetSpec().GetAnnotations().GetName())
		}
		att.Target = n.GetId()
	}
	return nil
}

// notFoundList is swarmkit's "secret not found: a" / "secrets not found:
// a, b".
func notFoundList(kind string, names []string) error {
	if len(names) > 1 {
		kind += "s"
	}
	return errorf(codes.InvalidArgument, "%s not found: %s", kind, strings.Join(names, ", "))
}

func checkSecrets(tx store.ReadTx, spec *api.ServiceSpec) error {
	var missing []string
	for _, r := range spec.GetTask().GetContainer().GetSecrets() {
		sec := store.GetSecret(tx, r.GetSecretId())
		if sec == nil || sec.GetSpec().GetAnnotations().GetName() != r.GetSecretName() {
			missing = append(missing, r.GetSecretName())
		}
	}
	if len(missing) > 0 {
		return notFoundList("secret", missing)
	}
	return nil
}

func checkConfigs(tx store.ReadTx, spec *api.ServiceSpec) error {
	var missing []string
	for _, r := range spec.GetTask().GetContainer().GetConfigs() {
		c := store.GetConfig(tx, r.GetConfigId())
		if c == nil || c.GetSpec().GetAnnotations().GetName() != r.GetConfigName() {
			missing = append(missing, r.GetConfigName())
		}
	}
	if len(missing) > 0 {
		return notFoundList("config", missing)
	}
	return nil
}

// checkPortConflicts refuses published ports another service (not selfID)
// has in its spec or was allocated: an ingress port is the cluster's, on
// every node; host-mode ports of several services may share a number
// (the scheduler keeps their tasks apart) but not with an ingress port.
func checkPortConflicts(tx store.ReadTx, spec *api.ServiceSpec, selfID string) error {
	type key struct {
		port  uint32
		proto api.PortConfig_Protocol
	}
	ingress, host := map[key]bool{}, map[key]bool{}
	for _, p := range spec.GetEndpoint().GetPorts() {
		if p.GetPublishedPort() == 0 {
			continue
		}
		k := key{p.GetPublishedPort(), p.GetProtocol()}
		if p.GetPublishMode() == api.PortConfig_HOST {
			host[k] = true
		} else {
			ingress[k] = true
		}
	}
	if len(ingress) == 0 && len(host) == 0 {
		return nil
	}
	services, err := store.FindServices(tx, store.All)
	if err != nil {
		return err
	}
	for _, o := range services {
		if o.GetId() == selfID {
			continue
		}
		ports := slices.Concat(o.GetSpec().GetEndpoint().GetPorts(), o.GetEndpoint().GetPorts())
		for _, p := range ports {
			if p.GetPublishedPort() == 0 {
				continue
			}
			k := key{p.GetPublishedPort(), p.GetProtocol()}
			switch p.GetPublishMode() {
			case api.PortConfig_HOST:
				if ingress[k] {
					return errorf(codes.InvalidArgument, "port '%d' is already in use by service '%s' (%s) as a host-published port",
						p.GetPublishedPort(), o.GetSpec().GetAnnotations().GetName(), o.GetId())
				}
			default:
				if ingress[k] || host[k] {
					return errorf(codes.InvalidArgument, "port '%d' is already in use by service '%s' (%s) as an ingress port",
						p.GetPublishedPort(), o.GetSpec().GetAnnotations().GetName(), o.GetId())
				}
			}
		}
	}
	return nil
}
