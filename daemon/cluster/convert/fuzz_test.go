package convert

import (
	"encoding/json"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/protobuf/proto"

	"github.com/openswarm/swarmd/api"
)

// FuzzServiceSpecFromDocker: any service spec a client sends is refused
// with an error or converted; what is converted survives the way back to
// docker's types and in again unchanged.
func FuzzServiceSpecFromDocker(f *testing.F) {
	f.Add([]byte(cliCreateBody))
	f.Add([]byte(`{"Name":"g","TaskTemplate":{"ContainerSpec":{"Image":"i","Mounts":[{"Type":"tmpfs","Target":"/t"}]}},"Mode":{"Global":{}}}`))
	f.Add([]byte(`{"Mode":{"ReplicatedJob":{"MaxConcurrent":2}},"TaskTemplate":{"ContainerSpec":{"Image":"i"},"RestartPolicy":{"Condition":"none"}}}`))
	f.Add([]byte(`{"EndpointSpec":{"Mode":"dnsrr","Ports":[{"Protocol":"udp","TargetPort":53,"PublishMode":"host"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var ds swarm.ServiceSpec
		if json.Unmarshal(body, &ds) != nil {
			return
		}
		s, err := ServiceSpecFromDocker(ds)
		if err != nil {
			return
		}
		again, err := ServiceSpecFromDocker(serviceSpecToDocker(s))
		if err != nil {
			t.Fatalf("a converted spec is refused on the way back: %v\n%v", err, s)
		}
		if !proto.Equal(s, again) {
			t.Fatalf("round trip differs:\n%v\n%v", s, again)
		}
	})
}

// FuzzFilters: any filters query is refused or gives predicates that run.
func FuzzFilters(f *testing.F) {
	f.Add(`{"name":{"web":true},"label":{"a=b":true}}`)
	f.Add(`{"mode":{"global":true}}`)
	f.Add(`{"role":{"manager":true},"node.label":{"zone":true}}`)
	f.Add(`{"desired-state":{"running":true},"_up-to-date":{"true":true}}`)
	svc := &api.Service{Id: "s", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web", Labels: map[string]string{"a": "b"}}}}
	node := &api.Node{Id: "n", Spec: &api.NodeSpec{}, Description: &api.NodeDescription{Hostname: "h"}}
	task := &api.Task{Id: "t", Slot: 1, ServiceAnnotations: &api.Annotations{Name: "web"}}
	f.Fuzz(func(t *testing.T, q string) {
		args, err := filters.FromJSON(q)
		if err != nil {
			return
		}
		if m, err := ServiceFilter(args); err == nil {
			m(svc)
		}
		if m, err := NodeFilter(args); err == nil {
			m(node)
		}
		if m, err := TaskFilter(args); err == nil {
			m(task)
		}
	})
}
