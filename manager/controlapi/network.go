package controlapi

import (
	"context"
	"errors"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// CreateNetwork stores a new swarm network. Names are unique; there is at
// most one ingress network.
func (s *Server) CreateNetwork(ctx context.Context, req *api.CreateNetworkRequest) (*api.CreateNetworkResponse, error) {
	if err := validateNetworkSpec(req.GetSpec()); err != nil {
		return nil, err
	}
	n := &api.Network{Id: ca.NewID(), Spec: proto.CloneOf(req.GetSpec())}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if n.GetSpec().GetIngress() {
			if in, err := ingressNetwork(tx); err != nil {
				return err
			} else if in != nil {
				return errorf(codes.AlreadyExists, "ingress network (%s) is already present", in.GetId())
			}
		}
		return tx.Create(n)
	})
	if errors.Is(err, store.ErrNameConflict) {
		return nil, wrapf(err, codes.AlreadyExists, "%s: network %s already exists", store.ErrNameConflict.Error(), n.GetSpec().GetAnnotations().GetName())
	}
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.CreateNetworkResponse{Network: reread(s, n)}, nil
}

func ingressNetwork(tx store.ReadTx) (*api.Network, error) {
	networks, err := store.FindNetworks(tx, store.All)
	if err != nil {
		return nil, err
	}
	for _, n := range networks {
		if n.GetSpec().GetIngress() {
			return n, nil
		}
	}
	return nil, nil
}

// networkInput is what a network request designates: network_id (an ID,
// name or unique ID prefix), else name.
func networkInput(id, name string) string {
	if id != "" {
		return id
	}
	return name
}

// GetNetwork returns a network by ID, name or unique ID prefix.
func (s *Server) GetNetwork(_ context.Context, req *api.GetNetworkRequest) (*api.GetNetworkResponse, error) {
	var (
		n   *api.Network
		err error
	)
	s.store.View(func(tx store.ReadTx) { n, err = lookupNetwork(tx, networkInput(req.GetNetworkId(), req.GetName())) })
	if err != nil {
		return nil, err
	}
	return &api.GetNetworkResponse{Network: n}, nil
}

// ListNetworks returns the networks the filters select: names, name and
// ID prefixes, labels.
func (s *Server) ListNetworks(_ context.Context, req *api.ListNetworksRequest) (*api.ListNetworksResponse, error) {
	f := req.GetFilters()
	networks, err := list(s, indexedBy(f), func(_ store.ReadTx, o *api.Network) bool {
		return f == nil || matchCommon(f, o.GetId(), o.GetSpec().GetAnnotations().GetName(), o.GetSpec().GetAnnotations().GetLabels())
	})
	if err != nil {
		return nil, err
	}
	return &api.ListNetworksResponse{Networks: networks}, nil
}

// RemoveNetwork deletes a network no service or running task uses. The
// ingress network goes only when no service publishes an ingress port;
// swarm's predefined networks stay.
func (s *Server) RemoveNetwork(ctx context.Context, req *api.RemoveNetworkRequest) (*api.RemoveNetworkResponse, error) {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		n, err := lookupNetwork(tx, networkInput(req.GetNetworkId(), req.GetName()))
		if err != nil {
			return err
		}
		id := n.GetId()
		if n.GetSpec().GetAnnotations().GetLabels()[predefinedLabel] == "true" {
			return errorf(codes.FailedPrecondition, "network %s (%s) is a swarm predefined network and cannot be removed", id, n.GetSpec().GetAnnotations().GetName())
		}
		services, err := store.FindServices(tx, store.All)
		if err != nil {
			return err
		}
		if n.GetSpec().GetIngress() {
			for _, svc := range services {
				if needsIngress(svc) {
					return errorf(codes.FailedPrecondition, "ingress network cannot be removed because service %s depends on it", svc.GetId())
				}
			}
			return tx.Delete(store.KindNetwork, id)
		}
		for _, svc := range services {
			for _, att := range svc.GetSpec().GetTask().GetNetworks() {
				if att.GetTarget() == id {
					return errorf(codes.FailedPrecondition, "network %s is in use by service %s", id, svc.GetId())
				}
			}
		}
		tasks, err := store.FindTasks(tx, store.All)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if t.GetDesiredState() > api.TaskState_TASK_STATE_RUNNING || t.GetStatus().GetState() > api.TaskState_TASK_STATE_RUNNING {
				continue
			}
			for _, att := range t.GetNetworks() {
				if att.GetNetwork().GetId() == id {
					return errorf(codes.FailedPrecondition, "network %s is in use by task %s", id, t.GetId())
				}
			}
		}
		return tx.Delete(store.KindNetwork, id)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.RemoveNetworkResponse{}, nil
}

// needsIngress reports whether a service publishes a port in ingress mode.
func needsIngress(svc *api.Service) bool {
	for _, p := range svc.GetSpec().GetEndpoint().GetPorts() {
		if p.GetPublishMode() == api.PortConfig_INGRESS {
			return true
		}
	}
	for _, p := range svc.GetEndpoint().GetPorts() {
		if p.GetPublishMode() == api.PortConfig_INGRESS {
			return true
		}
	}
	return false
}
