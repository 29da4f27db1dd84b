// Package convert translates between the Docker Engine API's swarm types
// (github.com/docker/docker/api/types/swarm), which the docker CLI and the
// Go SDK speak, and swarmd's own cluster API (package api). It is pure: no
// I/O, no clock. Specs coming from clients are checked for what swarmd
// cannot carry, with errors naming the field; everything else (names,
// replicas, durations, ports) is validated by the control API.
package convert
