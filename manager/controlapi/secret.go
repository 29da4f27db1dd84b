package controlapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"slices"
	"strings"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Secrets: the data goes in and never comes out of this API (responses
// carry no Data) nor into logs.

// redactSecret drops a secret's data.
func redactSecret(sec *api.Secret) *api.Secret {
	if sec.GetSpec() != nil {
		sec.Spec.Data = nil
	}
	return sec
}

// CreateSecret stores a new secret: a name of up to 64 [a-zA-Z0-9-_.]
// characters, unique, and 1 to MaxSecretSize-1 bytes of data.
func (s *Server) CreateSecret(ctx context.Context, req *api.CreateSecretRequest) (*api.CreateSecretResponse, error) {
	if err := validateSecretSpec(req.GetSpec()); err != nil {
		return nil, err
	}
	sec := &api.Secret{Id: ca.NewID(), Spec: proto.CloneOf(req.GetSpec())}
	err := s.store.Update(ctx, func(tx store.Tx) error { return tx.Create(sec) })
	if errors.Is(err, store.ErrNameConflict) {
		return nil, wrapf(err, codes.AlreadyExists, "secret %s already exists", req.GetSpec().GetAnnotations().GetName())
	}
	if err != nil {
		return nil, storeErr(err)
	}
	s.log.Debug("controlapi: secret created", "secret.id", sec.GetId(), "secret.name", sec.GetSpec().GetAnnotations().GetName())
	return &api.CreateSecretResponse{Secret: redactSecret(reread(s, sec))}, nil
}

// GetSecret returns a secret, without its data, by ID, name or unique ID
// prefix.
func (s *Server) GetSecret(_ context.Context, req *api.GetSecretRequest) (*api.GetSecretResponse, error) {
	if req.GetSecretId() == "" {
		return nil, errorf(codes.InvalidArgument, "secret ID must be provided")
	}
	var (
		sec *api.Secret
		err error
	)
	s.store.View(func(tx store.ReadTx) { sec, err = lookupSecret(tx, req.GetSecretId()) })
	if err != nil {
		return nil, err
	}
	return &api.GetSecretResponse{Secret: redactSecret(sec)}, nil
}

// ListSecrets returns the secrets the filters select (names, name and ID
// prefixes, labels), without their data; internal secrets are left out.
func (s *Server) ListSecrets(_ context.Context, req *api.ListSecretsRequest) (*api.ListSecretsResponse, error) {
	f := req.GetFilters()
	secrets, err := list(s, indexedBy(f), func(_ store.ReadTx, o *api.Secret) bool {
		return !o.GetInternal() && (f == nil || matchCommon(f, o.GetId(), o.GetSpec().GetAnnotations().GetName(), o.GetSpec().GetAnnotations().GetLabels()))
	})
	if err != nil {
		return nil, err
	}
	for _, sec := range secrets {
		redactSecret(sec)
	}
	return &api.ListSecretsResponse{Secrets: secrets}, nil
}

// UpdateSecret changes a secret's labels, at the version it was read at:
// nothing else of a secret can change.
func (s *Server) UpdateSecret(ctx context.Context, req *api.UpdateSecretRequest) (*api.UpdateSecretResponse, error) {
	if req.GetSecretId() == "" || req.GetSecretVersion() == nil || req.GetSpec() == nil {
		return nil, invalidArgument()
	}
	var sec *api.Secret
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if sec, err = lookupSecret(tx, req.GetSecretId()); err != nil {
			return err
		}
		want := req.GetSpec()
		if want.GetAnnotations().GetName() == "" || sec.GetSpec().GetAnnotations().GetName() != want.GetAnnotations().GetName() ||
			(want.GetData() != nil && subtle.ConstantTimeCompare(want.GetData(), sec.GetSpec().GetData()) == 0) {
			return errorf(codes.InvalidArgument, "only updates to Labels are allowed")
		}
		sec.Spec.Annotations.Labels = want.GetAnnotations().GetLabels()
		setVersion(sec, req.GetSecretVersion())
		return tx.Update(sec)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.UpdateSecretResponse{Secret: redactSecret(reread(s, sec))}, nil
}

// RemoveSecret deletes a secret no service references.
func (s *Server) RemoveSecret(ctx context.Context, req *api.RemoveSecretRequest) (*api.RemoveSecretResponse, error) {
	if req.GetSecretId() == "" {
		return nil, errorf(codes.InvalidArgument, "secret ID must be provided")
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		sec, err := lookupSecret(tx, req.GetSecretId())
		if err != nil {
			return err
		}
		users, err := servicesUsing(tx, func(c *api.ContainerSpec) bool {
			return slices.ContainsFunc(c.GetSecrets(), func(r *api.SecretReference) bool { return r.GetSecretId() == sec.GetId() })
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return inUse("secret", sec.GetSpec().GetAnnotations().GetName(), users)
		}
		return tx.Delete(store.KindSecret, sec.GetId())
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.RemoveSecretResponse{}, nil
}

// servicesUsing returns the sorted names of the services whose container
// spec uses says true for.
func servicesUsing(tx store.ReadTx, uses func(*api.ContainerSpec) bool) ([]string, error) {
	services, err := store.FindServices(tx, store.All)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, svc := range services {
		if uses(svc.GetSpec().GetTask().GetContainer()) {
			names = append(names, svc.GetSpec().GetAnnotations().GetName())
		}
	}
	slices.Sort(names)
	return names, nil
}

// inUse is docker's "secret 'x' is in use by the following service: y".
func inUse(kind, name string, services []string) error {
	noun := "service"
	if len(services) > 1 {
		noun = "services"
	}
	return errorf(codes.InvalidArgument, "%s '%s' is in use by the following %s: %s", kind, name, noun, strings.Join(services, ", "))
}
