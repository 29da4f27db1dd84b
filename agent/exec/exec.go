// Package exec is the boundary between the worker and whatever runs tasks
// on a node: an Executor describes the node and makes a Controller for each
// task; a Controller acts on the task's runtime resources (for the Docker
// executor, one container). Do is the task state machine: it advances a task
// one step towards its desired state through the controller and returns the
// status the task reaches.
//
// Controllers do I/O; Do decides. Do never sleeps, never retries and never
// reads a clock: the caller (the worker's task manager) records and reports
// every status Do returns, and decides when to call it again.
package exec

import (
	"context"
	"errors"
	"fmt"

	"github.com/openswarm/swarmd/api"
)

// Executor runs tasks on a node.
type Executor interface {
	// Describe describes the node: hostname, platform, resources, engine
	// version and labels.
	Describe(ctx context.Context) (*api.NodeDescription, error)
	// Controller returns a controller for t. It does no I/O: resources are
	// created by Prepare. An error means t cannot run on this node at all
	// (e.g. a spec the executor does not support).
	Controller(t *api.Task) (Controller, error)
}

// Controller acts on one task's runtime resources. Every method may be
// called again after it failed or was interrupted; Prepare and Start report
// work already done with ErrTaskPrepared and ErrTaskStarted, so that a
// worker that restarted does not redo it.
type Controller interface {
	// Update tells the controller that the task object changed (its
	// desired state, networks, ...; never its spec).
	Update(ctx context.Context, t *api.Task) error
	// Prepare creates what the task needs to start (e.g. pulls the image
	// and creates the container). It returns ErrTaskPrepared if that was
	// done already, and an error wrapping ErrTaskRetry (see Temporary) for
	// a failure worth retrying; any other error rejects the task.
	Prepare(ctx context.Context) error
	// Start starts the task; ErrTaskStarted if it was started before (even
	// if it has exited since: a task is never started twice).
	Start(ctx context.Context) error
	// Wait blocks until the task exits: nil on exit code 0, an *ExitError
	// otherwise, or ctx's error if ctx ends first.
	Wait(ctx context.Context) error
	// Shutdown stops the task gracefully, within the spec's stop grace
	// period (then kills it). Stopping a task that does not run is not an
	// error.
	Shutdown(ctx context.Context) error
	// Terminate kills the task at once.
	Terminate(ctx context.Context) error
	// Remove removes every resource of the task. Removing what does not
	// exist is not an error.
	Remove(ctx context.Context) error
	// Close releases the controller; it is not used afterwards.
	Close() error
}

// Errors controllers return and Do interprets.
var (
	// ErrTaskPrepared: Prepare found the task prepared already.
	ErrTaskPrepared = errors.New("exec: task already prepared")
	// ErrTaskStarted: Start found the task started already.
	ErrTaskStarted = errors.New("exec: task already started")
	// ErrTaskNoop is returned by Do when the task is where it should be
	// for now: nothing changes until the task does.
	ErrTaskNoop = errors.New("exec: nothing to do until the task changes")
	// ErrTaskRetry marks a temporary failure: the step should be tried
	// again later. Do returns errors wrapping it with the status unchanged.
	ErrTaskRetry = errors.New("exec: temporary failure; retry")
)

// Temporary marks err as a temporary failure: the result matches both
// ErrTaskRetry and err with errors.Is. Temporary(nil) is nil.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return &temporaryError{err: err}
}

type temporaryError struct{ err error }

func (e *temporaryError) Error() string   { return e.err.Error() }
func (e *temporaryError) Unwrap() []error { return []error{ErrTaskRetry, e.err} }

// ExitError is a task that exited with a non-zero code.
type ExitError struct {
	Code int
	// Cause is what the runtime said about the exit, if anything (e.g.
	// "OOMKilled").
	Cause error
}

// Error is the text docker shows for a failed task: "task: non-zero exit
// (1)", followed by the cause if there is one.
func (e *ExitError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("task: non-zero exit (%d): %v", e.Code, e.Cause)
	}
	return fmt.Sprintf("task: non-zero exit (%d)", e.Code)
}

// Unwrap returns the cause.
func (e *ExitError) Unwrap() error { return e.Cause }

// ExitCode is the task's exit code.
func (e *ExitError) ExitCode() int { return e.Code }

// Dependencies gives controllers the secrets and configs assigned to the
// node. They are held in memory only.
type Dependencies interface {
	Secret(id string) (*api.Secret, bool)
	Config(id string) (*api.Config, bool)
}

// DependencyUser is implemented by executors whose controllers need the
// node's secrets and configs; the worker hands them over before it asks for
// any controller.
type DependencyUser interface {
	SetDependencies(Dependencies)
}

// LogPublisher receives the log lines a controller reads for a
// subscription.
type LogPublisher interface {
	Publish(ctx context.Context, msg *api.LogMessage) error
}

// LogsController is implemented by controllers that can read their task's
// logs (stdout and stderr of the container). Logs publishes the lines opts
// asks for (tail, since, streams) and, with opts.Follow, goes on until the
// task's runtime ends or ctx ends; it returns nil when the logs are
// exhausted.
type LogsController interface {
	Logs(ctx context.Context, publish LogPublisher, opts *api.LogSubscriptionOptions) error
}
