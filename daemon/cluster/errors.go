package cluster

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// httpError is an error with the HTTP status the Engine API answers it with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// StatusCode is the HTTP status of the error.
func (e *httpError) StatusCode() int { return e.code }

func unavailable(msg string) error { return &httpError{code: http.StatusServiceUnavailable, msg: msg} }
func badRequest(msg string) error  { return &httpError{code: http.StatusBadRequest, msg: msg} }

// The errors docker answers with, in its words.
var (
	errNoSwarm     = unavailable("This node is not part of a swarm")
	errSwarmExists = unavailable(`This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.`)
	errNoManager   = unavailable(`This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`)
	errWorker      = unavailable("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. " +
		"Please run this command on a manager node or promote the current node to a manager.")
	errManagerNotReady = unavailable("This node is not a swarm manager. Manager is being prepared or has trouble connecting to the cluster.")
	errJoinTimeout     = unavailable(`Timeout was reached before node joined. The attempt to join the swarm will continue in the background. ` +
		`Use the "docker info" command to see the current swarm status of your node.`)
	// errSwarmLocked answers a locked node (autolock) until docker swarm
	// unlock.
	errSwarmLocked = unavailable(`Swarm is encrypted and needs to be unlocked before it can be used. Please use "docker swarm unlock" to unlock it.`)
	errLockedLeave = unavailable("Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.")
	// docker answers these two unauthorized (401) and conflict (409).
	errInvalidUnlockKey = &httpError{code: http.StatusUnauthorized, msg: "swarm could not be unlocked: invalid key provided"}
	errNotLocked        = &httpError{code: http.StatusConflict, msg: "swarm is not locked"}
)

// statusOf is the HTTP status an error is answered with: its own for
// httpError, the one docker maps a gRPC code to for control API errors,
// else 500.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.code
	}
	if st, ok := status.FromError(err); ok {
		return grpcHTTPStatus(st.Code())
	}
	return http.StatusInternalServerError
}

// grpcHTTPStatus maps a gRPC code to the HTTP status docker answers with.
func grpcHTTPStatus(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// lookupError words an error of a lookup by ID, name or prefix as docker
// does: the description alone ("secret x not found", "secret x is
// ambiguous (2 matches found)") with the status of its code. Other errors
// pass as they are.
func lookupError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.NotFound, codes.InvalidArgument:
		return &httpError{code: grpcHTTPStatus(st.Code()), msg: st.Message()}
	}
	return err
}
