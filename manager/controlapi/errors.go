package controlapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errInvalidArgument is swarmkit's text for a missing ID, version or spec.
const errInvalidArgument = "invalid argument"

// rpcError is a gRPC status error that keeps its cause for errors.Is/As.
// Its text is the one a gRPC client sees ("rpc error: code = ... desc =
// ..."), so callers in the same process and remote ones read the same.
type rpcError struct {
	st    *status.Status
	cause error
}

func (e *rpcError) Error() string { return e.st.Err().Error() }

// GRPCStatus makes the error a status error for grpc and status.FromError.
func (e *rpcError) GRPCStatus() *status.Status { return e.st }

func (e *rpcError) Unwrap() error { return e.cause }

// errorf returns a status error with code c and a formatted description.
func errorf(c codes.Code, format string, args ...any) error {
	return &rpcError{st: status.New(c, fmt.Sprintf(format, args...))}
}

// wrapf is errorf keeping cause for errors.Is.
func wrapf(cause error, c codes.Code, format string, args ...any) error {
	return &rpcError{st: status.New(c, fmt.Sprintf(format, args...)), cause: cause}
}

func invalidArgument() error { return errorf(codes.InvalidArgument, errInvalidArgument) }

// storeErr maps an error out of a store transaction to a status error.
// Status errors (those the transaction's callback returned) pass through.
func storeErr(err error) error {
	if err == nil {
		return nil
	}
	var re *rpcError
	if errors.As(err, &re) {
		return re
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	switch {
	case errors.Is(err, store.ErrSequenceConflict):
		return wrapf(err, codes.Unknown, "%s", store.ErrSequenceConflict.Error())
	case errors.Is(err, store.ErrNameConflict):
		return wrapf(err, codes.AlreadyExists, "%s", store.ErrNameConflict.Error())
	case errors.Is(err, store.ErrNotExist):
		return wrapf(err, codes.NotFound, "%s", err.Error())
	case errors.Is(err, store.ErrExist):
		return wrapf(err, codes.AlreadyExists, "%s", err.Error())
	case errors.Is(err, store.ErrTxTooLarge):
		return wrapf(err, codes.ResourceExhausted, "%s", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &rpcError{st: status.FromContextError(err), cause: err}
	}
	return wrapf(err, codes.Unknown, "%s", err.Error())
}
