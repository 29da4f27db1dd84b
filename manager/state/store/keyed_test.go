package store

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestKeyedList(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var l keyedList[int]
	want := make(map[objKey]int)
	kinds := []Kind{KindTask, KindService}
	for step := 0; step < 20000; step++ {
		key := objKey{kinds[rng.IntN(2)], fmt.Sprint(rng.IntN(40))}
		switch r := rng.IntN(100); {
		case r < 2:
			k := kinds[rng.IntN(2)]
			l.removeKind(k)
			for key := range want {
				if key.kind == k {
					delete(want, key)
				}
			}
		case r < 3:
			l.reset()
			clear(want)
		default:
			_, had := want[key]
			if isNew := l.set(key, step); isNew == had {
				t.Fatalf("step %d: set %v reports new %v", step, key, isNew)
			}
			want[key] = step
		}
		if l.len() != len(want) {
			t.Fatalf("step %d: %d entries, want %d", step, l.len(), len(want))
		}
		n := 0
		l.each(func(k objKey, v int) {
			if want[k] != v {
				t.Fatalf("step %d: each %v: %d, want %d", step, k, v, want[k])
			}
			n++
		})
		if n != len(want) {
			t.Fatalf("step %d: each saw %d entries, want %d", step, n, len(want))
		}
		probe := objKey{kinds[rng.IntN(2)], fmt.Sprint(rng.IntN(40))}
		got, ok := l.get(probe)
		w, wok := want[probe]
		if ok != wok || got != w {
			t.Fatalf("step %d: get %v: %v %v, want %v %v", step, probe, got, ok, w, wok)
		}
	}
}
