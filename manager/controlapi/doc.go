// Package controlapi is the manager's control gRPC service
// (api.ControlServer): validation, defaults and versioned CRUD of the
// cluster's objects — nodes, services, tasks, networks, the cluster,
// secrets and configs — over the manager's store.
//
// # Layout
//
// validate.go and defaults.go hold the pure logic: every rule a spec must
// satisfy and every default docker applies, with no I/O. The RPC files
// (node.go, service.go, ...) read the store, check what needs other
// objects (name and port conflicts, references to secrets, configs and
// networks, the last manager, raft quorum) inside the write transaction,
// and map store errors to gRPC status codes.
//
// # Errors
//
// Errors are gRPC status errors with the codes and texts swarmkit uses, so
// that the Engine API layer can turn them into what docker prints
// ("rpc error: code = FailedPrecondition desc = node x is not down and
// can't be removed"). Every error also unwraps to its cause where there is
// one: errors.Is(err, store.ErrSequenceConflict) holds for a stale update,
// whose status is codes.Unknown with the text "update out of sequence" (as
// swarmkit returns it; docker answers 500 with that text).
//
// # Names, IDs and prefixes
//
// Every RPC that takes an object ID also accepts, like the docker CLI, the
// object's exact name or a unique prefix of its ID: the ID is tried first,
// then the name, then the prefix. Several matches give InvalidArgument
// "<kind> <input> is ambiguous (<n> matches found)", none NotFound
// "<kind> <input> not found". Object IDs are 25 base-36 digits of 128
// random bits (NewID).
package controlapi
