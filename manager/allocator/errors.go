package allocator

import (
	"errors"
	"fmt"
)

// Errors the allocation of an object can fail with, for errors.Is. The
// errors returned carry a complete message of their own (naming the port,
// network, subnet or service concerned): their text is what users see in a
// task's Status.Err.
var (
	// ErrPortInUse: a published port is held by another service.
	ErrPortInUse = errors.New("port already in use")
	// ErrPortsExhausted: no dynamic port is left for the protocol.
	ErrPortsExhausted = errors.New("no dynamic port left")
	// ErrAddressesExhausted: a network has no free address.
	ErrAddressesExhausted = errors.New("no free address")
	// ErrSubnetsExhausted: the default address pool has no free subnet.
	ErrSubnetsExhausted = errors.New("no free subnet")
	// ErrVNIsExhausted: no VXLAN network identifier is left.
	ErrVNIsExhausted = errors.New("no free VXLAN identifier")
	// ErrNetworkNotReady: a network an object needs does not exist or
	// has not been allocated (yet).
	ErrNetworkNotReady = errors.New("network not ready")
	// ErrInvalidConfig: an IPAM configuration or address pool that
	// cannot be used.
	ErrInvalidConfig = errors.New("invalid network configuration")
)

// allocError is an error with a message of its own that still matches one
// of the sentinels above.
type allocError struct {
	msg  string
	kind error
}

func (e *allocError) Error() string { return e.msg }
func (e *allocError) Unwrap() error { return e.kind }

func newError(kind error, format string, args ...any) error {
	return &allocError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// notReadyError is ErrNetworkNotReady for one network.
type notReadyError struct{ network string }

func (e *notReadyError) Error() string {
	return fmt.Sprintf("network %s is not allocated", e.network)
}

func (e *notReadyError) Is(target error) bool { return target == ErrNetworkNotReady }
