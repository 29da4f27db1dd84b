package controlapi

import (
	"context"
	"errors"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
)

func TestSecrets(t *testing.T) {
	s, st := newTestServer(t, nil)
	ctx := context.Background()
	resp, err := s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{
		Annotations: &api.Annotations{Name: "db-password", Labels: map[string]string{"a": "1"}},
		Data:        []byte("hunter2"),
	}})
	mustOK(t, err)
	sec := resp.GetSecret()
	if sec.GetSpec().GetData() != nil {
		t.Fatal("CreateSecret returned the data")
	}
	st.View(func(tx store.ReadTx) {
		if string(store.GetSecret(tx, sec.GetId()).GetSpec().GetData()) != "hunter2" {
			t.Fatal("data not stored")
		}
	})
	put(t, st, &api.Secret{Id: "internalaaaaaaaaaaaaaaaaa", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "int"}, Data: []byte("k")}, Internal: true})

	_, err = s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "db-password"}, Data: []byte("x")}})
	wantErr(t, err, codes.AlreadyExists, "secret db-password already exists")
	if !errors.Is(err, store.ErrNameConflict) {
		t.Fatalf("%v does not wrap store.ErrNameConflict", err)
	}
	_, err = s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "big"}, Data: make([]byte, MaxSecretSize)}})
	wantErr(t, err, codes.InvalidArgument, "secret data must be larger than 0 and less than 512000 bytes")

	for _, input := range []string{sec.GetId(), "db-password", sec.GetId()[:4]} {
		got, err := s.GetSecret(ctx, &api.GetSecretRequest{SecretId: input})
		mustOK(t, err)
		if got.GetSecret().GetId() != sec.GetId() || got.GetSecret().GetSpec().GetData() != nil {
			t.Fatalf("GetSecret(%q) = %v", input, got.GetSecret())
		}
	}
	_, err = s.GetSecret(ctx, &api.GetSecretRequest{})
	wantErr(t, err, codes.InvalidArgument, "secret ID must be provided")
	_, err = s.GetSecret(ctx, &api.GetSecretRequest{SecretId: "nope"})
	wantErr(t, err, codes.NotFound, "secret nope not found")

	list, err := s.ListSecrets(ctx, &api.ListSecretsRequest{})
	mustOK(t, err)
	if len(list.GetSecrets()) != 1 || list.GetSecrets()[0].GetSpec().GetData() != nil {
		t.Fatalf("listed %v (internal secrets and data must not show)", list.GetSecrets())
	}
	list, err = s.ListSecrets(ctx, &api.ListSecretsRequest{Filters: &api.ListFilters{Labels: map[string]string{"a": "2"}}})
	mustOK(t, err)
	if len(list.GetSecrets()) != 0 {
		t.Fatalf("label filter listed %v", list.GetSecrets())
	}

	// Only labels change.
	upd, err := s.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: sec.GetId(), SecretVersion: sec.GetMeta().GetVersion(),
		Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "db-password", Labels: map[string]string{"a": "2"}}}})
	mustOK(t, err)
	if upd.GetSecret().GetSpec().GetAnnotations().GetLabels()["a"] != "2" || upd.GetSecret().GetSpec().GetData() != nil {
		t.Fatalf("updated %v", upd.GetSecret())
	}
	cur := upd.GetSecret().GetMeta().GetVersion()
	_, err = s.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: sec.GetId(), SecretVersion: cur,
		Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "db-password"}, Data: []byte("other")}})
	wantErr(t, err, codes.InvalidArgument, "only updates to Labels are allowed")
	_, err = s.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: sec.GetId(), SecretVersion: cur,
		Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "renamed"}}})
	wantErr(t, err, codes.InvalidArgument, "only updates to Labels are allowed")
	_, err = s.UpdateSecret(ctx, &api.UpdateSecretRequest{SecretId: sec.GetId(), SecretVersion: sec.GetMeta().GetVersion(),
		Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "db-password"}}})
	wantErr(t, err, codes.Unknown, "update out of sequence")

	// In use.
	spec := serviceSpec("app")
	spec.Task.Container.Secrets = []*api.SecretReference{{SecretId: sec.GetId(), SecretName: "db-password", File: &api.FileTarget{Name: "pw"}}}
	svc := createService(t, s, spec)
	spec2 := serviceSpec("app2")
	spec2.Task.Container.Secrets = spec.Task.Container.Secrets
	createService(t, s, spec2)
	_, err = s.RemoveSecret(ctx, &api.RemoveSecretRequest{SecretId: "db-password"})
	wantErr(t, err, codes.InvalidArgument, "secret 'db-password' is in use by the following services: app, app2")
	_, err = s.RemoveService(ctx, &api.RemoveServiceRequest{ServiceId: "app2"})
	mustOK(t, err)
	_, err = s.RemoveSecret(ctx, &api.RemoveSecretRequest{SecretId: "db-password"})
	wantErr(t, err, codes.InvalidArgument, "secret 'db-password' is in use by the following service: app")
	_, err = s.RemoveService(ctx, &api.RemoveServiceRequest{ServiceId: svc.GetId()})
	mustOK(t, err)
	_, err = s.RemoveSecret(ctx, &api.RemoveSecretRequest{SecretId: "db-password"})
	mustOK(t, err)
	_, err = s.RemoveSecret(ctx, &api.RemoveSecretRequest{SecretId: "db-password"})
	wantErr(t, err, codes.NotFound, "secret db-password not found")
	_, err = s.RemoveSecret(ctx, &api.RemoveSecretRequest{})
	wantErr(t, err, codes.InvalidArgument, "secret ID must be provided")
}

func TestConfigs(t *testing.T) {
	s, _ := newTestServer(t, nil)
	ctx := context.Background()
	resp, err := s.CreateConfig(ctx, &api.CreateConfigRequest{Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "nginx.conf"}, Data: []byte("events {}")}})
	mustOK(t, err)
	c := resp.GetConfig()
	if string(c.GetSpec().GetData()) != "events {}" {
		t.Fatalf("config data %q", c.GetSpec().GetData())
	}
	_, err = s.CreateConfig(ctx, &api.CreateConfigRequest{Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "nginx.conf"}, Data: []byte("x")}})
	wantErr(t, err, codes.AlreadyExists, "config nginx.conf already exists")
	_, err = s.CreateConfig(ctx, &api.CreateConfigRequest{Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "big"}, Data: make([]byte, MaxConfigSize)}})
	wantErr(t, err, codes.InvalidArgument, "config data must be larger than 0 and less than 1024000 bytes")

	got, err := s.GetConfig(ctx, &api.GetConfigRequest{ConfigId: "nginx.conf"})
	mustOK(t, err)
	if got.GetConfig().GetId() != c.GetId() {
		t.Fatalf("GetConfig by name = %v", got.GetConfig())
	}
	_, err = s.GetConfig(ctx, &api.GetConfigRequest{})
	wantErr(t, err, codes.InvalidArgument, "config ID must be provided")
	list, err := s.ListConfigs(ctx, &api.ListConfigsRequest{Filters: &api.ListFilters{Names: []string{"nginx.conf"}}})
	mustOK(t, err)
	if len(list.GetConfigs()) != 1 {
		t.Fatalf("listed %v", list.GetConfigs())
	}

	upd, err := s.UpdateConfig(ctx, &api.UpdateConfigRequest{ConfigId: c.GetId(), ConfigVersion: c.GetMeta().GetVersion(),
		Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "nginx.conf", Labels: map[string]string{"v": "1"}}, Data: []byte("events {}")}})
	mustOK(t, err)
	if upd.GetConfig().GetSpec().GetAnnotations().GetLabels()["v"] != "1" {
		t.Fatalf("labels not updated: %v", upd.GetConfig())
	}
	_, err = s.UpdateConfig(ctx, &api.UpdateConfigRequest{ConfigId: c.GetId(), ConfigVersion: upd.GetConfig().GetMeta().GetVersion(),
		Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "nginx.conf"}, Data: []byte("other")}})
	wantErr(t, err, codes.InvalidArgument, "only updates to Labels are allowed")

	spec := serviceSpec("web")
	spec.Task.Container.Configs = []*api.ConfigReference{{ConfigId: c.GetId(), ConfigName: "nginx.conf", File: &api.FileTarget{Name: "/etc/nginx.conf"}}}
	createService(t, s, spec)
	_, err = s.RemoveConfig(ctx, &api.RemoveConfigRequest{ConfigId: c.GetId()})
	wantErr(t, err, codes.InvalidArgument, "config 'nginx.conf' is in use by the following service: web")
	_, err = s.RemoveService(ctx, &api.RemoveServiceRequest{ServiceId: "web"})
	mustOK(t, err)
	_, err = s.RemoveConfig(ctx, &api.RemoveConfigRequest{ConfigId: c.GetId()})
	mustOK(t, err)
}
