package mesh

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func be(task, node string) Backend {
	return Backend{TaskID: task, NodeID: node, Tunnel: node + ":4790"}
}

func TestDiffTable(t *testing.T) {
	web := Port{Protocol: TCP, Published: 80, Target: 8080, ServiceID: "web", Backends: []Backend{be("t1", "n1"), be("t2", "n2")}}
	dns := Port{Protocol: UDP, Published: 53, Target: 53, ServiceID: "dns", Backends: []Backend{be("d1", "n1")}}
	dnsTCP := Port{Protocol: TCP, Published: 53, Target: 53, ServiceID: "dns", Backends: []Backend{be("d1", "n1")}}
	cur := func(ps ...Port) map[portKey]Port {
		m := map[portKey]Port{}
		for _, p := range ps {
			m[p.key()] = canonical(p)
		}
		return m
	}
	with := func(p Port, f func(*Port)) Port {
		p.Backends = append([]Backend(nil), p.Backends...)
		f(&p)
		return p
	}
	tests := []struct {
		name      string
		current   map[portKey]Port
		desired   []Port
		open      []Port
		close     []portKey
		swap      []Port
		errSubstr []string
	}{
		{name: "empty"},
		{name: "open all", current: cur(), desired: []Port{web, dns, dnsTCP},
			open: []Port{canonical(dnsTCP), canonical(dns), canonical(web)}},
		{name: "unchanged", current: cur(web, dns), desired: []Port{dns, web}},
		{name: "unchanged reordered backends", current: cur(web),
			desired: []Port{with(web, func(p *Port) { p.Backends[0], p.Backends[1] = p.Backends[1], p.Backends[0] })}},
		{name: "close removed", current: cur(web, dns, dnsTCP), desired: []Port{web},
			close: []portKey{{TCP, 53}, {UDP, 53}}},
		{name: "close all", current: cur(web, dns), desired: nil,
			close: []portKey{{UDP, 53}, {TCP, 80}}},
		{name: "swap backends", current: cur(web),
			desired: []Port{with(web, func(p *Port) { p.Backends = p.Backends[:1] })},
			swap:    []Port{with(web, func(p *Port) { p.Backends = p.Backends[:1] })}},
		{name: "swap target", current: cur(web),
			desired: []Port{with(web, func(p *Port) { p.Target = 9090 })},
			swap:    []Port{canonical(with(web, func(p *Port) { p.Target = 9090 }))}},
		{name: "same port other protocol is a new listener", current: cur(dns), desired: []Port{dns, dnsTCP},
			open: []Port{canonical(dnsTCP)}},
		{name: "duplicate keeps first", current: cur(), desired: []Port{web, with(web, func(p *Port) { p.Target = 1 })},
			open: []Port{canonical(web)}, errSubstr: []string{"80/tcp: duplicate"}},
		{name: "invalid entries", current: cur(),
			desired: []Port{
				{Protocol: "sctp", Published: 1, Target: 1},
				{Protocol: TCP, Published: 0, Target: 1},
				{Protocol: TCP, Published: 70000, Target: 1},
				{Protocol: UDP, Published: 5, Target: 0},
			},
			errSubstr: []string{"unsupported protocol", "published port out of range", "published port out of range", "target port 0"}},
		{name: "invalid entry keeps open listener", current: cur(web),
			desired:   []Port{with(web, func(p *Port) { p.Target = 0 })},
			errSubstr: []string{"80/tcp: target port 0"}},
		{name: "duplicate backends collapsed", current: cur(),
			desired: []Port{with(web, func(p *Port) { p.Backends = append(p.Backends, be("t1", "n1")) })},
			open:    []Port{canonical(web)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diffTable(tt.current, tt.desired)
			if !reflect.DeepEqual(d.Open, tt.open) {
				t.Errorf("open = %+v, want %+v", d.Open, tt.open)
			}
			if !reflect.DeepEqual(d.Close, tt.close) {
				t.Errorf("close = %+v, want %+v", d.Close, tt.close)
			}
			if !reflect.DeepEqual(d.Swap, tt.swap) {
				t.Errorf("swap = %+v, want %+v", d.Swap, tt.swap)
			}
			if len(d.Errors) != len(tt.errSubstr) {
				t.Fatalf("errors = %v, want %d", d.Errors, len(tt.errSubstr))
			}
			for i, s := range tt.errSubstr {
				if !strings.Contains(d.Errors[i].Error(), s) {
					t.Errorf("error %d = %q, want it to contain %q", i, d.Errors[i], s)
				}
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	ids := func(bs []Backend) string {
		var s []string
		for _, b := range bs {
			s = append(s, b.TaskID)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name     string
		backends []Backend
		want     []string // attempts of successive picks
	}{
		{name: "none", want: []string{"", ""}},
		{name: "one", backends: []Backend{be("a", "n")}, want: []string{"a", "a", "a"}},
		{name: "three", backends: []Backend{be("a", "n"), be("b", "n"), be("c", "m")},
			want: []string{"a,b,c", "b,c,a", "c,a,b", "a,b,c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &backendSet{port: Port{Backends: tt.backends}}
			for i, w := range tt.want {
				if got := ids(s.attempts()); got != w {
					t.Errorf("pick %d: attempts = %q, want %q", i, got, w)
				}
			}
		})
	}
}

func TestRoundRobinEven(t *testing.T) {
	s := &backendSet{port: Port{Backends: []Backend{be("a", "n"), be("b", "n"), be("c", "n")}}}
	count := map[string]int{}
	for range 300 {
		count[s.attempts()[0].TaskID]++
	}
	if !reflect.DeepEqual(count, map[string]int{"a": 100, "b": 100, "c": 100}) {
		t.Fatalf("first picks = %v", count)
	}
}

func TestAllowedDeliveries(t *testing.T) {
	table := map[portKey]Port{
		{TCP, 80}: {Protocol: TCP, Published: 80, Target: 8080, Backends: []Backend{be("t1", "n1"), be("t2", "n2")}},
		{UDP, 53}: {Protocol: UDP, Published: 53, Target: 5353, Backends: []Backend{be("d1", "n1")}},
	}
	got := allowedDeliveries("n1", table)
	want := map[allowKey]struct{}{{TCP, 8080, "t1"}: {}, {UDP, 5353, "d1"}: {}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("allowed = %v, want %v", got, want)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []tunnelHeader{
		{Protocol: TCP, Target: 80, TaskID: "abc123"},
		{Protocol: UDP, Target: 65535, TaskID: strings.Repeat("x", MaxTaskIDLen)},
	} {
		b, err := h.marshal()
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(append(b, "rest"...))
		got, err := readHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		if got != h {
			t.Fatalf("got %+v, want %+v", got, h)
		}
		if r.Len() != len("rest") {
			t.Fatalf("readHeader consumed %d bytes of the payload", len("rest")-r.Len())
		}
	}
}

func TestHeaderRejects(t *testing.T) {
	valid, err := tunnelHeader{Protocol: TCP, Target: 80, TaskID: "t1"}.marshal()
	if err != nil {
		t.Fatal(err)
	}
	mut := func(i int, v byte) []byte {
		b := bytes.Clone(valid)
		b[i] = v
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "EOF"},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "bad magic"},
		{"version", mut(4, 9), "unsupported version 9"},
		{"protocol", mut(5, 7), "unknown protocol 7"},
		{"port zero", append(mut(6, 0)[:7:7], append([]byte{0}, valid[8:]...)...), "target port 0"},
		{"id length zero", mut(8, 0), "task id length 0"},
		{"id length too long", mut(8, MaxTaskIDLen+1), "task id length 129"},
		{"id truncated", valid[:len(valid)-1], "unexpected EOF"},
		{"id control char", mut(9, '\n'), "task id has byte 0x0a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readHeader(bytes.NewReader(tt.in))
			if !errors.Is(err, errBadHeader) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want errBadHeader containing %q", err, tt.want)
			}
		})
	}
	if _, err := (tunnelHeader{Protocol: TCP, Target: 80, TaskID: strings.Repeat("x", MaxTaskIDLen+1)}).marshal(); err == nil {
		t.Fatal("marshal accepted a too long task id")
	}
}

func TestFrames(t *testing.T) {
	var stream bytes.Buffer
	var wbuf, rbuf []byte
	msgs := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte{7}, maxDatagram), []byte("small again")}
	for _, m := range msgs {
		if err := writeFrame(&stream, &wbuf, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFrame(&stream, &wbuf, make([]byte, maxDatagram+1)); err == nil {
		t.Fatal("oversized frame accepted")
	}
	for _, m := range msgs {
		got, err := readFrame(&stream, &rbuf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, m) {
			t.Fatalf("frame of %d bytes, want %d", len(got), len(m))
		}
	}
	if _, err := readFrame(&stream, &rbuf); err != io.EOF {
		t.Fatalf("read past the last frame: %v", err)
	}
	stream.Write([]byte{0, 5, 'a'})
	if _, err := readFrame(&stream, &rbuf); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated frame: %v", err)
	}
}
