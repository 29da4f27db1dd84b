package executor

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var (
	ts1 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	ts2 = ts1.Add(time.Second)
)

func stamp(ts time.Time, s string) string { return ts.Format(time.RFC3339Nano) + " " + s }

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		wantTS time.Time
		want   string
		ok     bool
	}{
		{"line", stamp(ts1, "hello\n"), ts1, "hello\n", true},
		{"empty line", stamp(ts1, "\n"), ts1, "\n", true},
		{"no newline", stamp(ts1, "part"), ts1, "part", true},
		{"missing timestamp", "hello world\n", time.Time{}, "hello world\n", false},
		{"no space", "hello\n", time.Time{}, "hello\n", false},
		{"leading space", " x\n", time.Time{}, " x\n", false},
		{"offset timestamp", "2024-05-06T09:08:09+02:00 x\n", time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), "x\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, data, ok := parseLogLine([]byte(tt.in))
			if ok != tt.ok || !ts.Equal(tt.wantTS) || string(data) != tt.want {
				t.Errorf("parseLogLine(%q) = %v %q %v, want %v %q %v", tt.in, ts, data, ok, tt.wantTS, tt.want, tt.ok)
			}
		})
	}
}

type frame struct {
	stream stdcopy.StdType
	data   string
}

func multiplexed(frames ...frame) []byte {
	var buf bytes.Buffer
	out, errw := stdcopy.NewStdWriter(&buf, stdcopy.Stdout), stdcopy.NewStdWriter(&buf, stdcopy.Stderr)
	for _, f := range frames {
		w := out
		if f.stream == stdcopy.Stderr {
			w = errw
		}
		if _, err := w.Write([]byte(f.data)); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func collect(read func(emit func(logLine) error) error) ([]logLine, error) {
	var got []logLine
	err := read(func(l logLine) error {
		l.Data = bytes.Clone(l.Data)
		got = append(got, l)
		return nil
	})
	return got, err
}

const (
	stdout = api.LogStream_LOG_STREAM_STDOUT
	stderr = api.LogStream_LOG_STREAM_STDERR
)

func TestReadMultiplexed(t *testing.T) {
	tests := []struct {
		name   string
		frames []frame
		want   []logLine
	}{
		{
			name:   "both streams",
			frames: []frame{{stdcopy.Stdout, stamp(ts1, "out\n")}, {stdcopy.Stderr, stamp(ts2, "err\n")}},
			want:   []logLine{{ts1, stdout, []byte("out\n")}, {ts2, stderr, []byte("err\n")}},
		},
		{
			name: "partial line continued in the next message",
			frames: []frame{
				{stdcopy.Stdout, stamp(ts1, "long ")},
				{stdcopy.Stderr, stamp(ts1, "interleaved\n")},
				{stdcopy.Stdout, stamp(ts2, "line\n")},
			},
			want: []logLine{{ts1, stderr, []byte("interleaved\n")}, {ts1, stdout, []byte("long line\n")}},
		},
		{
			name:   "several lines in one frame",
			frames: []frame{{stdcopy.Stdout, stamp(ts1, "a\n") + stamp(ts2, "b\n")}},
			want:   []logLine{{ts1, stdout, []byte("a\n")}, {ts2, stdout, []byte("b\n")}},
		},
		{
			name:   "missing timestamp",
			frames: []frame{{stdcopy.Stdout, "plain\n"}},
			want:   []logLine{{time.Time{}, stdout, []byte("plain\n")}},
		},
		{
			name:   "stream ends in a partial line",
			frames: []frame{{stdcopy.Stdout, stamp(ts1, "a\n")}, {stdcopy.Stdout, stamp(ts2, "tail")}},
			want:   []logLine{{ts1, stdout, []byte("a\n")}, {ts2, stdout, []byte("tail")}},
		},
		{name: "empty", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(func(emit func(logLine) error) error {
				return readMultiplexed(bytes.NewReader(multiplexed(tt.frames...)), emit)
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("lines = %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestReadRaw(t *testing.T) {
	in := stamp(ts1, "a\n") + stamp(ts2, "\n") + "no timestamp\n" + stamp(ts2, "end")
	got, err := collect(func(emit func(logLine) error) error {
		// One byte at a time: reads split lines anywhere.
		return readRaw(&oneByteReader{strings.NewReader(in)}, emit)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []logLine{
		{ts1, stdout, []byte("a\n")},
		{ts2, stdout, []byte("\n")},
		{time.Time{}, stdout, []byte("no timestamp\n")},
		{ts2, stdout, []byte("end")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines = %q\nwant %q", got, want)
	}
}

type oneByteReader struct{ r *strings.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestReadStopsOnPublishError(t *testing.T) {
	boom := errors.New("boom")
	in := multiplexed(frame{stdcopy.Stdout, stamp(ts1, "a\n")}, frame{stdcopy.Stdout, stamp(ts1, "b\n")})
	n := 0
	err := readMultiplexed(bytes.NewReader(in), func(logLine) error { n++; return boom })
	if !errors.Is(err, boom) || n != 1 {
		t.Errorf("err = %v after %d lines, want %v after 1", err, n, boom)
	}
}

func TestLogsOptions(t *testing.T) {
	since := time.Unix(1700000000, 5)
	tests := []struct {
		name string
		in   *api.LogSubscriptionOptions
		want container.LogsOptions
	}{
		{"nil", nil, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Tail: "all"}},
		{"tail 0", &api.LogSubscriptionOptions{}, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Tail: "0"}},
		{
			"all, follow",
			&api.LogSubscriptionOptions{Follow: true, Tail: -1},
			container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: true, Tail: "all"},
		},
		{
			"stderr, tail, since",
			&api.LogSubscriptionOptions{Streams: []api.LogStream{stderr}, Tail: 10, Since: timestamppb.New(since)},
			container.LogsOptions{ShowStderr: true, Timestamps: true, Tail: "10", Since: "1700000000.000000005"},
		},
		{
			"stdout only",
			&api.LogSubscriptionOptions{Streams: []api.LogStream{stdout}, Tail: -1},
			container.LogsOptions{ShowStdout: true, Timestamps: true, Tail: "all"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := logsOptions(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("logsOptions = %+v, want %+v", got, tt.want)
			}
		})
	}
}
