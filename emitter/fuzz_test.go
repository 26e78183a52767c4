package emitter

import (
	"bytes"
	"testing"
)

// FuzzFrame checks the frame codec: any bytes either fail to decode with
// ErrCorrupt or decode into a frame that re-encodes to the same bytes.
func FuzzFrame(f *testing.F) {
	// Seed corpus: a master's frame (no targets), a worker's frame to the
	// master and all workers with two explicit pids, a frame without
	// arguments, a frame from another host (flagOrigin), and malformed ones
	// (an empty host, short, unknown flag, empty name, pid count past the
	// end).
	f.Add(appendFrame(nil, 100, 0, nil, "", "ping", []byte(`[1,"a"]`)))
	f.Add(appendFrame(nil, 200, flagMaster|flagWorkers, []int{300, 400}, "", "worker-300-listening", []byte(`[]`)))
	f.Add(appendFrame(nil, 1, flagMaster, nil, "", "e", nil))
	f.Add(appendFrame(nil, 9, 0, nil, "web1/42/20261202T034501.000000001Z", "deploy", []byte(`["v2"]`)))
	f.Add([]byte{1, 0, 0, 0, flagOrigin, 1, 0, 0, 0, 'x'})
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{1, 0, 0, 0, 0x80, 1, 0, 0, 'x'})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 'x'})
	f.Add([]byte{1, 0, 0, 0, 0, 1, 9, 0, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err != nil {
			return
		}
		pids := make([]int, fr.npids())
		for i := range pids {
			pids[i] = fr.pid(i)
		}
		again := appendFrame(nil, fr.from, fr.flags, pids, string(fr.host), string(fr.name), fr.args)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x; want %x", again, b)
		}
		if frameSize(len(pids), len(fr.host), len(fr.name), len(fr.args)) != len(b) {
			t.Fatalf("frameSize %d; want %d", frameSize(len(pids), len(fr.host), len(fr.name), len(fr.args)), len(b))
		}
	})
}

// TestFrameRoundTrip checks encode → decode for chosen frames.
func TestFrameRoundTrip(t *testing.T) {
	b := appendFrame(nil, 7, flagWorkers, []int{1, 2, 3}, "", "name", []byte(`["x"]`))
	fr, err := parseFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if fr.from != 7 || fr.flags != flagWorkers || fr.npids() != 3 || fr.pid(2) != 3 ||
		string(fr.name) != "name" || string(fr.args) != `["x"]` {
		t.Fatalf("got %+v; want the encoded frame", fr)
	}
}
