package controlapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func TestCreateService(t *testing.T) {
	s, _ := newTestServer(t, nil)
	ctx := context.Background()
	spec := serviceSpec("web")
	svc := createService(t, s, spec)
	if len(svc.GetId()) != 25 { // docker-form IDs: 25 base-36 digits
		t.Fatalf("ID %q", svc.GetId())
	}
	if svc.GetMeta().GetVersion().GetIndex() == 0 || svc.GetMeta().GetCreatedAt() == nil {
		t.Fatalf("meta %v", svc.GetMeta())
	}
	if svc.GetSpecVersion() == nil || svc.GetPreviousSpec() != nil {
		t.Fatalf("spec version %v, previous spec %v", svc.GetSpecVersion(), svc.GetPreviousSpec())
	}
	want := proto.CloneOf(spec)
	applyServiceDefaults(want)
	if !proto.Equal(svc.GetSpec(), want) {
		t.Fatalf("stored spec %v, want the defaults filled: %v", svc.GetSpec(), want)
	}
	if spec.GetUpdate() != nil {
		t.Fatal("the request's spec was modified")
	}

	_, err := s.CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("WEB")})
	wantErr(t, err, codes.AlreadyExists, "name conflicts with an existing object: service WEB already exists")
	if !errors.Is(err, store.ErrNameConflict) {
		t.Fatalf("%v does not wrap store.ErrNameConflict", err)
	}

	bad := serviceSpec("bad")
	bad.Task.Container.Image = ""
	_, err = s.CreateService(ctx, &api.CreateServiceRequest{Spec: bad})
	wantErr(t, err, codes.InvalidArgument, "ContainerSpec: image reference must be provided")
	_, err = s.CreateService(ctx, &api.CreateServiceRequest{})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")

	job := serviceSpec("job")
	job.Mode = &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{MaxConcurrent: 2, TotalCompletions: 4}}
	js := createService(t, s, job).GetJobStatus()
	if js.GetJobIteration() == nil || !js.GetLastExecution().AsTime().Equal(testNow) {
		t.Fatalf("job status %v", js)
	}
}

func TestServicePortConflicts(t *testing.T) {
	s, st := newTestServer(t, nil)
	ctx := context.Background()
	tcp := func(pub uint32, mode api.PortConfig_PublishMode) *api.PortConfig {
		return &api.PortConfig{TargetPort: 80, PublishedPort: pub, PublishMode: mode}
	}
	x := createService(t, s, withPorts(serviceSpec("x"), tcp(8080, api.PortConfig_INGRESS)))
	h := createService(t, s, withPorts(serviceSpec("h"), tcp(9090, api.PortConfig_HOST)))
	allocated := &api.Service{
		Id:       "allocatedaaaaaaaaaaaaaaaa",
		Spec:     withPorts(serviceSpec("dyn"), &api.PortConfig{TargetPort: 80}),
		Endpoint: &api.Endpoint{Ports: []*api.PortConfig{tcp(30001, api.PortConfig_INGRESS)}},
	}
	put(t, st, allocated)

	tests := []struct {
		name  string
		ports []*api.PortConfig
		want  string
	}{
		{"ingress on ingress", []*api.PortConfig{tcp(8080, api.PortConfig_INGRESS)}, "port '8080' is already in use by service 'x' (" + x.GetId() + ") as an ingress port"},
		{"host on ingress", []*api.PortConfig{tcp(8080, api.PortConfig_HOST)}, "port '8080' is already in use by service 'x' (" + x.GetId() + ") as an ingress port"},
		{"ingress on host", []*api.PortConfig{tcp(9090, api.PortConfig_INGRESS)}, "port '9090' is already in use by service 'h' (" + h.GetId() + ") as a host-published port"},
		{"host on host", []*api.PortConfig{tcp(9090, api.PortConfig_HOST)}, ""},
		{"other protocol", []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080, Protocol: api.PortConfig_UDP}}, ""},
		{"allocated dynamic port", []*api.PortConfig{tcp(30001, api.PortConfig_INGRESS)}, "port '30001' is already in use by service 'dyn' (allocatedaaaaaaaaaaaaaaaa) as an ingress port"},
		{"free", []*api.PortConfig{tcp(8081, api.PortConfig_INGRESS)}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateService(ctx, &api.CreateServiceRequest{Spec: withPorts(serviceSpec(fmt.Sprintf("s%d", i)), tt.ports...)})
			if tt.want == "" {
				mustOK(t, err)
				return
			}
			wantErr(t, err, codes.InvalidArgument, tt.want)
		})
	}

	// A service does not conflict with itself on update.
	spec := proto.CloneOf(x.GetSpec())
	spec.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 3}}
	spec.Endpoint.Ports = append(spec.Endpoint.Ports, tcp(8082, api.PortConfig_INGRESS))
	resp, err := s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: x.GetId(), ServiceVersion: x.GetMeta().GetVersion(), Spec: spec})
	mustOK(t, err)
	x = resp.GetService()
	// Taking another service's port on update is refused.
	spec = proto.CloneOf(x.GetSpec())
	spec.Endpoint.Ports = append(spec.Endpoint.Ports, tcp(9090, api.PortConfig_INGRESS))
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: x.GetId(), ServiceVersion: x.GetMeta().GetVersion(), Spec: spec})
	// Two services hold 9090 in host mode; either may be named.
	wantErr(t, err, codes.InvalidArgument, "port '9090' is already in use by service '")

	// A conflict that slipped in (concurrent creations) does not block
	// updates that leave the ports alone.
	clash := &api.Service{Id: "clashaaaaaaaaaaaaaaaaaaaa", Spec: withPorts(serviceSpec("clash"), tcp(8080, api.PortConfig_INGRESS))}
	applyServiceDefaults(clash.Spec)
	put(t, st, clash)
	spec = proto.CloneOf(x.GetSpec())
	spec.Task.ForceUpdate++
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: x.GetId(), ServiceVersion: x.GetMeta().GetVersion(), Spec: spec})
	mustOK(t, err)
}

func TestGetService(t *testing.T) {
	s, st := newTestServer(t, nil)
	ctx := context.Background()
	svc := createService(t, s, serviceSpec("web"))
	createService(t, s, serviceSpec("webapp"))
	for _, input := range []string{svc.GetId(), "web", svc.GetId()[:6]} {
		resp, err := s.GetService(ctx, &api.GetServiceRequest{ServiceId: input})
		mustOK(t, err)
		if resp.GetService().GetId() != svc.GetId() {
			t.Fatalf("GetService(%q) = %s", input, resp.GetService().GetId())
		}
	}
	_, err := s.GetService(ctx, &api.GetServiceRequest{ServiceId: "nope"})
	wantErr(t, err, codes.NotFound, "service nope not found")
	_, err = s.GetService(ctx, &api.GetServiceRequest{})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")

	// A service stored without defaults (by another writer) gets them
	// on request only.
	raw := &api.Service{Id: "rawaaaaaaaaaaaaaaaaaaaaaa", Spec: serviceSpec("raw")}
	put(t, st, raw)
	resp, err := s.GetService(ctx, &api.GetServiceRequest{ServiceId: "raw"})
	mustOK(t, err)
	if resp.GetService().GetSpec().GetUpdate() != nil {
		t.Fatal("defaults inserted without insert_defaults")
	}
	resp, err = s.GetService(ctx, &api.GetServiceRequest{ServiceId: "raw", InsertDefaults: true})
	mustOK(t, err)
	got := resp.GetService().GetSpec()
	if got.GetUpdate().GetParallelism() != 1 || got.GetTask().GetRestart().GetDelay().AsDuration() != 5*time.Second ||
		got.GetTask().GetContainer().GetStopGracePeriod().AsDuration() != 10*time.Second {
		t.Fatalf("defaults not inserted: %v", got)
	}
}

func TestUpdateService(t *testing.T) {
	s, _ := newTestServer(t, nil)
	ctx := context.Background()
	svc := createService(t, s, serviceSpec("web"))
	first := svc.GetSpec()

	spec := proto.CloneOf(first)
	spec.Task.Container.Image = "busybox:v2"
	resp, err := s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: svc.GetMeta().GetVersion(), Spec: spec})
	mustOK(t, err)
	updated := resp.GetService()
	if updated.GetSpec().GetTask().GetContainer().GetImage() != "busybox:v2" || !proto.Equal(updated.GetPreviousSpec(), first) {
		t.Fatalf("spec %v previous %v", updated.GetSpec(), updated.GetPreviousSpec())
	}
	if updated.GetSpecVersion().GetIndex() != svc.GetMeta().GetVersion().GetIndex() {
		t.Fatalf("spec version %v, want %v", updated.GetSpecVersion(), svc.GetMeta().GetVersion())
	}

	// Stale version.
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: svc.GetMeta().GetVersion(), Spec: spec})
	wantErr(t, err, codes.Unknown, "update out of sequence")
	if !errors.Is(err, store.ErrSequenceConflict) {
		t.Fatalf("%v does not wrap store.ErrSequenceConflict", err)
	}

	cur := updated.GetMeta().GetVersion()
	global := proto.CloneOf(spec)
	global.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: cur, Spec: global})
	wantErr(t, err, codes.Unimplemented, "service mode change is not allowed")
	renamed := proto.CloneOf(spec)
	renamed.Annotations.Name = "web2"
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: cur, Spec: renamed})
	wantErr(t, err, codes.Unimplemented, "renaming services is not supported")
	invalid := proto.CloneOf(spec)
	invalid.Task.Placement = &api.Placement{Constraints: []string{"node.role=manager"}}
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: cur, Spec: invalid})
	wantErr(t, err, codes.InvalidArgument, "constraint expected one operator from ==, !=")
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", Spec: spec})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: cur})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "nope", ServiceVersion: cur, Spec: spec})
	wantErr(t, err, codes.NotFound, "service nope not found")

	// Rollback swaps the specs; the request's spec may be left out.
	resp, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: cur, Rollback: api.UpdateServiceRequest_PREVIOUS})
	mustOK(t, err)
	rolled := resp.GetService()
	if rolled.GetSpec().GetTask().GetContainer().GetImage() != "busybox:latest" ||
		rolled.GetPreviousSpec().GetTask().GetContainer().GetImage() != "busybox:v2" {
		t.Fatalf("after rollback: spec %v previous %v", rolled.GetSpec(), rolled.GetPreviousSpec())
	}
	us := rolled.GetUpdateStatus()
	if us.GetState() != api.UpdateStatus_ROLLBACK_STARTED || us.GetMessage() != "manually requested rollback" || !us.GetStartedAt().AsTime().Equal(testNow) {
		t.Fatalf("update status %v", us)
	}

	// An update resets the update status.
	spec3 := proto.CloneOf(rolled.GetSpec())
	spec3.Task.ForceUpdate++
	resp, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "web", ServiceVersion: rolled.GetMeta().GetVersion(), Spec: spec3})
	mustOK(t, err)
	if resp.GetService().GetUpdateStatus() != nil {
		t.Fatalf("update status kept: %v", resp.GetService().GetUpdateStatus())
	}

	fresh := createService(t, s, serviceSpec("fresh"))
	_, err = s.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: "fresh", ServiceVersion: fresh.GetMeta().GetVersion(), Rollback: api.UpdateServiceRequest_PREVIOUS})
	wantErr(t, err, codes.FailedPrecondition, "service "+fresh.GetId()+" does not have a previous spec")
}

func TestUpdateJobRunsAgain(t *testing.T) {
	s, _ := newTestServer(t, nil)
	spec := serviceSpec("job")
	spec.Mode = &api.ServiceSpec_GlobalJob{GlobalJob: &api.GlobalJob{}}
	svc := createService(t, s, spec)
	resp, err := s.UpdateService(context.Background(), &api.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: svc.GetMeta().GetVersion(), Spec: svc.GetSpec()})
	mustOK(t, err)
	if it := resp.GetService().GetJobStatus().GetJobIteration().GetIndex(); it != 1 {
		t.Fatalf("job iteration %d, want 1", it)
	}
}

func TestServiceReferences(t *testing.T) {
	s, _ := newTestServer(t, nil)
	ctx := context.Background()
	sec, err := s.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("hunter2")}})
	mustOK(t, err)
	secID := sec.GetSecret().GetId()
	net, err := s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "backend"}, Driver: "overlay"}})
	mustOK(t, err)
	_, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "ingress"}, Ingress: true}})
	mustOK(t, err)

	ref := func(id, name string) *api.SecretReference {
		return &api.SecretReference{SecretId: id, SecretName: name, File: &api.FileTarget{Name: name}}
	}
	spec := serviceSpec("a")
	spec.Task.Container.Secrets = []*api.SecretReference{ref(secID, "pw"), ref("nope", "x"), ref(secID, "other")}
	_, err = s.CreateService(ctx, &api.CreateServiceRequest{Spec: spec})
	wantErr(t, err, codes.InvalidArgument, "secrets not found: x, other")
	spec.Task.Container.Secrets = []*api.SecretReference{ref("nope", "x")}
	_, err = s.CreateService(ctx, &api.CreateServiceRequest{Spec: spec})
	wantErr(t, err, codes.InvalidArgument, "secret not found: x")
	cspec := serviceSpec("c")
	cspec.Task.Container.Configs = []*api.ConfigReference{{ConfigId: "nope", ConfigName: "cfg", File: &api.FileTarget{Name: "cfg"}}}
	_, err = s.CreateService(ctx, &api.CreateServiceRequest{Spec: cspec})
	wantErr(t, err, codes.InvalidArgument, "config not found: cfg")

	spec.Task.Container.Secrets = []*api.SecretReference{ref(secID, "pw")}
	spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "nonet"}}
	_, err = s.CreateService(ctx, &api.CreateServiceRequest{Spec: spec})
	wantErr(t, err, codes.NotFound, "network nonet not found")
	spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "ingress"}}
	_, err = s.CreateService(ctx, &api.CreateServiceRequest{Spec: spec})
	wantErr(t, err, codes.InvalidArgument, `Service cannot be explicitly attached to the ingress network "ingress"`)
	spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "backend"}}
	svc := createService(t, s, spec)
	if got := svc.GetSpec().GetTask().GetNetworks()[0].GetTarget(); got != net.GetNetwork().GetId() {
		t.Fatalf("network target %q, want the network's ID %q", got, net.GetNetwork().GetId())
	}
}

func TestRemoveAndListServices(t *testing.T) {
	s, _ := newTestServer(t, nil)
	ctx := context.Background()
	web := serviceSpec("web")
	web.Annotations.Labels = map[string]string{"tier": "front", "team": "a"}
	api1 := serviceSpec("api")
	api1.Annotations.Labels = map[string]string{"tier": "back"}
	w := createService(t, s, web)
	createService(t, s, api1)
	createService(t, s, serviceSpec("web-admin"))

	tests := []struct {
		f    *api.ListFilters
		want []string
	}{
		{nil, []string{"api", "web", "web-admin"}},
		{&api.ListFilters{Names: []string{"web"}}, []string{"web"}},
		{&api.ListFilters{Names: []string{"WEB"}}, nil},
		{&api.ListFilters{NamePrefixes: []string{"web"}}, []string{"web", "web-admin"}},
		{&api.ListFilters{IdPrefixes: []string{w.GetId()}}, []string{"web"}},
		{&api.ListFilters{Labels: map[string]string{"tier": ""}}, []string{"api", "web"}},
		{&api.ListFilters{Labels: map[string]string{"tier": "front"}}, []string{"web"}},
		{&api.ListFilters{NamePrefixes: []string{"web"}, Labels: map[string]string{"team": "a"}}, []string{"web"}},
	}
	for _, tt := range tests {
		resp, err := s.ListServices(ctx, &api.ListServicesRequest{Filters: tt.f})
		mustOK(t, err)
		var got []string
		for _, svc := range resp.GetServices() {
			got = append(got, svc.GetSpec().GetAnnotations().GetName())
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("filters %v: got %v, want %v", tt.f, got, tt.want)
		}
	}

	_, err := s.RemoveService(ctx, &api.RemoveServiceRequest{ServiceId: "web"})
	mustOK(t, err)
	_, err = s.RemoveService(ctx, &api.RemoveServiceRequest{ServiceId: "web"})
	wantErr(t, err, codes.NotFound, "service web not found")
	_, err = s.RemoveService(ctx, &api.RemoveServiceRequest{})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")
	// The name is free again.
	createService(t, s, serviceSpec("web"))
}
