package executor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// WatchExit returns a channel closed as soon as the process of the
// container of a task this node runs exits: the kernel tells through a
// pidfd, before the engine has cleaned up and answered the task's wait
// (which takes a few hundred milliseconds), so the routing mesh stops
// sending it connections at once. The channel stays open if ctx ends
// first. It needs swarmd to share the engine's PID namespace.
func (e *Executor) WatchExit(ctx context.Context, taskID string) (<-chan struct{}, error) {
	name, _, ok := e.addrs.lookup(taskID)
	if !ok {
		return nil, fmt.Errorf("executor: task %s does not run on this node", taskID)
	}
	pid, err := e.runningPID(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("executor: task %s: %w", taskID, err)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("executor: task %s: pidfd of %d: %w", taskID, pid, err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))
	// The PID might have been another process's by the time it was
	// opened: it is the container's if the container still runs with it.
	if again, err := e.runningPID(ctx, name); err != nil || again != pid {
		_ = f.Close()
		if err == nil {
			err = errors.New("container restarted")
		}
		return nil, fmt.Errorf("executor: task %s: %w", taskID, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("executor: task %s: %w", taskID, err)
	}
	exited := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { _ = f.Close() })
	go func() {
		defer f.Close()
		defer stop()
		// A pidfd becomes readable when its process exits: the first call
		// finds nothing to do, the second comes once the poller saw it
		// readable. Closing the file (ctx ended) ends the wait with an error.
		calls := 0
		if err := rc.Read(func(uintptr) bool { calls++; return calls > 1 }); err == nil {
			close(exited)
		}
	}()
	return exited, nil
}

// runningPID is the PID of a running container's main process.
func (e *Executor) runningPID(ctx context.Context, name string) (int, error) {
	ctr, err := e.engine.ContainerInspect(ctx, name)
	if err != nil {
		return 0, err
	}
	if ctr.State == nil || !ctr.State.Running || ctr.State.Pid <= 0 {
		return 0, fmt.Errorf("container %s is not running", name)
	}
	return ctr.State.Pid, nil
}
