package executor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// logsOptions are the engine's options for reading the logs a
// subscription asks for. Timestamps are always asked for: each line's is
// parsed off it.
func logsOptions(opts *api.LogSubscriptionOptions) container.LogsOptions {
	lo := container.LogsOptions{
		Follow:     opts.GetFollow(),
		Timestamps: true,
		Tail:       "all",
	}
	streams := opts.GetStreams()
	if len(streams) == 0 {
		lo.ShowStdout, lo.ShowStderr = true, true
	} else {
		lo.ShowStdout = slices.Contains(streams, api.LogStream_LOG_STREAM_STDOUT)
		lo.ShowStderr = slices.Contains(streams, api.LogStream_LOG_STREAM_STDERR)
	}
	// A negative tail means all the lines; otherwise it is how many of the
	// last lines to send (0: none, e.g. to follow new lines only). No
	// options at all mean all the lines.
	if n := opts.GetTail(); opts != nil && n >= 0 {
		lo.Tail = strconv.FormatInt(n, 10)
	}
	if s := opts.GetSince(); s != nil {
		ts := s.AsTime()
		lo.Since = fmt.Sprintf("%d.%09d", ts.Unix(), ts.Nanosecond())
	}
	return lo
}

// parseLogLine splits the timestamp the engine prefixes a log line with
// ("<RFC 3339 time> <data>") off it. ok is false, and data is line, if line
// does not start with a timestamp.
func parseLogLine(line []byte) (ts time.Time, data []byte, ok bool) {
	i := bytes.IndexByte(line, ' ')
	if i <= 0 {
		return time.Time{}, line, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return time.Time{}, line, false
	}
	return ts, line[i+1:], true
}

// logLine is one complete line of a stream, with its trailing newline
// (unless the stream ended in the middle of it).
type logLine struct {
	Timestamp time.Time
	Stream    api.LogStream
	Data      []byte
}

// lineAssembler rebuilds the lines of one stream from the engine's log
// messages. Each message starts with a timestamp; a message without a
// trailing newline is a part of a long line whose next part comes in the
// next message, with a timestamp of its own: the line keeps its first
// part's timestamp.
type lineAssembler struct {
	stream  api.LogStream
	emit    func(logLine) error
	pending []byte
	ts      time.Time
	partial bool
}

// message takes one message (or, with several newlines, several messages,
// each starting with a timestamp).
func (a *lineAssembler) message(p []byte) error {
	for len(p) > 0 {
		ts, data, _ := parseLogLine(p)
		if !a.partial {
			a.ts = ts
		}
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			a.pending = append(a.pending, data...)
			a.partial = true
			return nil
		}
		line := append(a.pending, data[:i+1]...)
		a.pending, a.partial = nil, false
		if err := a.emit(logLine{Timestamp: a.ts, Stream: a.stream, Data: line}); err != nil {
			return err
		}
		p = data[i+1:]
	}
	return nil
}

// flush emits the last line of a stream that ended in the middle of it.
func (a *lineAssembler) flush() error {
	if !a.partial {
		return nil
	}
	line := a.pending
	a.pending, a.partial = nil, false
	return a.emit(logLine{Timestamp: a.ts, Stream: a.stream, Data: line})
}

// messageWriter feeds an assembler with each write as one message, as
// stdcopy writes the payload of each frame of a multiplexed stream.
type messageWriter struct{ a *lineAssembler }

func (w messageWriter) Write(p []byte) (int, error) {
	if err := w.a.message(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readMultiplexed reads the logs of a container without a TTY: stdout and
// stderr multiplexed in frames, one message per frame.
func readMultiplexed(r io.Reader, emit func(logLine) error) error {
	out := &lineAssembler{stream: api.LogStream_LOG_STREAM_STDOUT, emit: emit}
	errs := &lineAssembler{stream: api.LogStream_LOG_STREAM_STDERR, emit: emit}
	if _, err := stdcopy.StdCopy(messageWriter{out}, messageWriter{errs}, r); err != nil {
		return err
	}
	return errors.Join(out.flush(), errs.flush())
}

// readRaw reads the logs of a container with a TTY: one stream, stdout,
// whose lines each start with a timestamp.
func readRaw(r io.Reader, emit func(logLine) error) error {
	a := &lineAssembler{stream: api.LogStream_LOG_STREAM_STDOUT, emit: emit}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if merr := a.message(line); merr != nil {
				return merr
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return a.flush()
		case err != nil:
			return err
		}
	}
}

// Logs publishes the lines of the container's logs opts asks for, until
// they are exhausted (or, with opts.Follow, the container stops).
func (c *Controller) Logs(ctx context.Context, publish exec.LogPublisher, opts *api.LogSubscriptionOptions) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	ci, found, err := c.inspect(ctx, t)
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("executor: logs: no container %s", c.name)
	}
	rc, err := c.engine.ContainerLogs(ctx, ci.ID, logsOptions(opts))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("executor: logs of container %s: %w", c.name, err)
		}
		return classify("logs of container "+c.name, err)
	}
	defer rc.Close()
	// Closing the stream unblocks a read when ctx ends.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()

	logCtx := &api.LogContext{ServiceId: t.GetServiceId(), NodeId: c.nodeID, TaskId: t.GetId()}
	emit := func(l logLine) error {
		msg := &api.LogMessage{
			Context: logCtx,
			Stream:  l.Stream,
			Data:    bytes.Clone(l.Data),
		}
		if !l.Timestamp.IsZero() {
			msg.Timestamp = timestamppb.New(l.Timestamp)
		}
		return publish.Publish(ctx, msg)
	}
	if ci.Config != nil && ci.Config.Tty {
		err = readRaw(rc, emit)
	} else {
		err = readMultiplexed(rc, emit)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("executor: logs of container %s: %w", c.name, err)
	}
	return nil
}
