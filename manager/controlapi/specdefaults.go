package controlapi

import (
	"google.golang.org/protobuf/proto"

	"github.com/openswarm/swarmd/api"
)

// ServiceSpecWithDefaults is a copy of spec with the defaults CreateService
// and UpdateService fill in, as the service would store it: callers compare
// a requested spec with a stored one.
func ServiceSpecWithDefaults(spec *api.ServiceSpec) *api.ServiceSpec {
	out := proto.CloneOf(spec)
	applyServiceDefaults(out)
	return out
}
