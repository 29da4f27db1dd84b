package controlapi

import (
	"bytes"
	"context"
	"errors"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// CreateConfig stores a new config: a name of up to 64 [a-zA-Z0-9-_.]
// characters, unique, and 1 to MaxConfigSize-1 bytes of data.
func (s *Server) CreateConfig(ctx context.Context, req *api.CreateConfigRequest) (*api.CreateConfigResponse, error) {
	if err := validateConfigSpec(req.GetSpec()); err != nil {
		return nil, err
	}
	c := &api.Config{Id: ca.NewID(), Spec: proto.CloneOf(req.GetSpec())}
	err := s.store.Update(ctx, func(tx store.Tx) error { return tx.Create(c) })
	if errors.Is(err, store.ErrNameConflict) {
		return nil, wrapf(err, codes.AlreadyExists, "config %s already exists", req.GetSpec().GetAnnotations().GetName())
	}
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.CreateConfigResponse{Config: reread(s, c)}, nil
}

// GetConfig returns a config by ID, name or unique ID prefix.
func (s *Server) GetConfig(_ context.Context, req *api.GetConfigRequest) (*api.GetConfigResponse, error) {
	if req.GetConfigId() == "" {
		return nil, errorf(codes.InvalidArgument, "config ID must be provided")
	}
	var (
		c   *api.Config
		err error
	)
	s.store.View(func(tx store.ReadTx) { c, err = lookupConfig(tx, req.GetConfigId()) })
	if err != nil {
		return nil, err
	}
	return &api.GetConfigResponse{Config: c}, nil
}

// ListConfigs returns the configs the filters select: names, name and ID
// prefixes, labels.
func (s *Server) ListConfigs(_ context.Context, req *api.ListConfigsRequest) (*api.ListConfigsResponse, error) {
	f := req.GetFilters()
	configs, err := list(s, indexedBy(f), func(_ store.ReadTx, o *api.Config) bool {
		return f == nil || matchCommon(f, o.GetId(), o.GetSpec().GetAnnotations().GetName(), o.GetSpec().GetAnnotations().GetLabels())
	})
	if err != nil {
		return nil, err
	}
	return &api.ListConfigsResponse{Configs: configs}, nil
}

// UpdateConfig changes a config's labels, at the version it was read at:
// nothing else of a config can change.
func (s *Server) UpdateConfig(ctx context.Context, req *api.UpdateConfigRequest) (*api.UpdateConfigResponse, error) {
	if req.GetConfigId() == "" || req.GetConfigVersion() == nil || req.GetSpec() == nil {
		return nil, invalidArgument()
	}
	var c *api.Config
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if c, err = lookupConfig(tx, req.GetConfigId()); err != nil {
			return err
		}
		want := req.GetSpec()
		if want.GetAnnotations().GetName() == "" || c.GetSpec().GetAnnotations().GetName() != want.GetAnnotations().GetName() ||
			(want.GetData() != nil && !bytes.Equal(want.GetData(), c.GetSpec().GetData())) {
			return errorf(codes.InvalidArgument, "only updates to Labels are allowed")
		}
		c.Spec.Annotations.Labels = want.GetAnnotations().GetLabels()
		setVersion(c, req.GetConfigVersion())
		return tx.Update(c)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.UpdateConfigResponse{Config: reread(s, c)}, nil
}

// RemoveConfig deletes a config no service references.
func (s *Server) RemoveConfig(ctx context.Context, req *api.RemoveConfigRequest) (*api.RemoveConfigResponse, error) {
	if req.GetConfigId() == "" {
		return nil, errorf(codes.InvalidArgument, "config ID must be provided")
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		c, err := lookupConfig(tx, req.GetConfigId())
		if err != nil {
			return err
		}
		users, err := servicesUsing(tx, func(cs *api.ContainerSpec) bool {
			return slices.ContainsFunc(cs.GetConfigs(), func(r *api.ConfigReference) bool { return r.GetConfigId() == c.GetId() })
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return inUse("config", c.GetSpec().GetAnnotations().GetName(), users)
		}
		return tx.Delete(store.KindConfig, c.GetId())
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.RemoveConfigResponse{}, nil
}
