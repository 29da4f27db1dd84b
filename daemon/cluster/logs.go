package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	dockertime "github.com/docker/docker/api/types/time"
	"github.com/docker/docker/pkg/stdcopy"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/openswarm/swarmd/api"
)

// timestampFormat is the engine's log timestamp format (fixed width).
const timestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// logRequest is a parsed /services/{id}/logs or /tasks/{id}/logs request.
type logRequest struct {
	opts       *api.LogSubscriptionOptions
	details    bool
	timestamps bool
}

// parseLogRequest reads the query of a logs request as the engine does.
func parseLogRequest(q url.Values) (logRequest, error) {
	var lr logRequest
	b := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		x, err := strconv.ParseBool(v)
		if err != nil {
			return false, badRequest(fmt.Sprintf("invalid value for %s: %q", name, v))
		}
		return x, nil
	}
	follow, err := b("follow")
	if err != nil {
		return lr, err
	}
	stdout, err := b("stdout")
	if err != nil {
		return lr, err
	}
	stderr, err := b("stderr")
	if err != nil {
		return lr, err
	}
	if !stdout && !stderr {
		return lr, badRequest("Bad parameters: you must choose at least one stream")
	}
	if lr.details, err = b("details"); err != nil {
		return lr, err
	}
	if lr.timestamps, err = b("timestamps"); err != nil {
		return lr, err
	}
	lr.opts = &api.LogSubscriptionOptions{Follow: follow, Tail: -1}
	if stdout {
		lr.opts.Streams = append(lr.opts.Streams, api.LogStream_LOG_STREAM_STDOUT)
	}
	if stderr {
		lr.opts.Streams = append(lr.opts.Streams, api.LogStream_LOG_STREAM_STDERR)
	}
	if tail := q.Get("tail"); tail != "" && tail != "all" {
		n, err := strconv.ParseInt(tail, 10, 64)
		if err != nil || n < 0 {
			return lr, badRequest(fmt.Sprintf("invalid tail value %q: must be \"all\" or a non-negative number", tail))
		}
		lr.opts.Tail = n
	}
	if since := q.Get("since"); since != "" {
		ts, err := dockertime.GetTimestamp(since, time.Now())
		if err != nil {
			return lr, badRequest(fmt.Sprintf("invalid since value %q: %v", since, err))
		}
		sec, nsec, err := dockertime.ParseTimestamps(ts, 0)
		if err != nil {
			return lr, badRequest(fmt.Sprintf("invalid since value %q: %v", since, err))
		}
		lr.opts.Since = timestamppb.New(time.Unix(sec, nsec))
	}
	return lr, nil
}

func (s *Server) getServiceLogs(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	resp, err := ctl.GetService(r.Context(), &api.GetServiceRequest{ServiceId: r.PathValue("id")})
	if err != nil {
		return err
	}
	svc := resp.GetService()
	return s.streamLogs(w, r, &api.LogSelector{ServiceIds: []string{svc.GetId()}}, svc.GetSpec().GetTask().GetContainer().GetTty())
}

func (s *Server) getTaskLogs(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	resp, err := ctl.GetTask(r.Context(), &api.GetTaskRequest{TaskId: r.PathValue("id")})
	if err != nil {
		return err
	}
	t := resp.GetTask()
	return s.streamLogs(w, r, &api.LogSelector{TaskIds: []string{t.GetId()}}, t.GetSpec().GetContainer().GetTty())
}

// streamLogs subscribes to the selected logs and writes them as the engine
// does: stdout/stderr frames (raw lines for a TTY), each line prefixed by
// its timestamp and details on request. An error after the stream began
// goes into the stream as a system-error frame, which the docker CLI
// prints.
func (s *Server) streamLogs(w http.ResponseWriter, r *http.Request, sel *api.LogSelector, tty bool) error {
	lr, err := parseLogRequest(r.URL.Query())
	if err != nil {
		return err
	}
	logs, err := s.cluster.logs()
	if err != nil {
		return err
	}
	stream, err := logs.SubscribeLogs(r.Context(), &api.SubscribeLogsRequest{Selector: sel, Options: lr.opts})
	if err != nil {
		return err
	}
	ctype := "application/vnd.docker.raw-stream"
	if !tty && versionAtLeast(r, "1.42") {
		ctype = "application/vnd.docker.multiplexed-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	stdout, stderr, syserr := io.Writer(w), io.Writer(w), stdcopy.NewStdWriter(w, stdcopy.Systemerr)
	if !tty {
		stdout, stderr = stdcopy.NewStdWriter(w, stdcopy.Stdout), stdcopy.NewStdWriter(w, stdcopy.Stderr)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if r.Context().Err() != nil || status.Code(err) == codes.Canceled {
				return nil
			}
			_, _ = syserr.Write([]byte(status.Convert(err).Message()))
			flush()
			return nil
		}
		for _, m := range msg.GetMessages() {
			out := stdout
			if m.GetStream() == api.LogStream_LOG_STREAM_STDERR {
				out = stderr
			}
			if _, err := out.Write(formatLogLine(m, lr.details, lr.timestamps)); err != nil {
				return nil
			}
		}
		flush()
	}
}

// formatLogLine is one log line as the engine writes it:
// [timestamp ]details line, details being the sorted, escaped key=value
// attributes with the swarm context first (the docker CLI reads the
// node, service and task IDs from them).
func formatLogLine(m *api.LogMessage, details, timestamps bool) []byte {
	var b bytes.Buffer
	if timestamps {
		b.WriteString(m.GetTimestamp().AsTime().UTC().Format(timestampFormat))
		b.WriteByte(' ')
	}
	if details {
		attrs := map[string]string{
			"com.docker.swarm.node.id":    m.GetContext().GetNodeId(),
			"com.docker.swarm.service.id": m.GetContext().GetServiceId(),
			"com.docker.swarm.task.id":    m.GetContext().GetTaskId(),
		}
		for _, a := range m.GetAttrs() {
			attrs[a.GetKey()] = a.GetValue()
		}
		keys := make([]string, 0, len(attrs))
		for k := range attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(attrs[k]))
		}
		b.WriteByte(' ')
	}
	b.Write(m.GetData())
	if n := len(m.GetData()); n == 0 || m.GetData()[n-1] != '\n' {
		b.WriteByte('\n')
	}
	return b.Bytes()
}
