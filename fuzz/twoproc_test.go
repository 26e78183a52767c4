package fuzz_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"peer": childPeer})
}

// Operations of FuzzTwoProcesses.
const (
	opSet = iota
	opGetInto
	opDel
	opSetIfAbsent // LeaveIfNotNull
	opLoad        // Get with a loader
	numOps
)

// peerOp is one operation; peerResult what it returned.
type peerOp struct {
	Kind int
	Key  string
	Val  string
}

type peerResult struct {
	OK  bool   // found, stored or deleted
	Val string // the value read, deleted or loaded
	Err string
}

// peerRequest asks the peer to run Ops on the cache Cache, then read Read.
type peerRequest struct {
	Cache string
	Ops   []peerOp
	Read  []string
}

type peerResponse struct {
	Results []peerResult
	Values  map[string]string // Read's keys that were present
	Err     string
}

// runOps runs ops on c in order. A loader stores "loaded by "+who.
func runOps(c *cache.Cache, who string, ops []peerOp) []peerResult {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := make([]peerResult, len(ops))
	for i, op := range ops {
		var r peerResult
		var err error
		switch op.Kind {
		case opSet, opSetIfAbsent:
			r.OK, err = c.Set(ctx, op.Key, []byte(op.Val), cache.SetOptions{LeaveIfNotNull: op.Kind == opSetIfAbsent})
		case opGetInto:
			var v []byte
			v, r.OK, err = c.GetInto(nil, op.Key)
			r.Val = string(v)
		case opDel:
			var v []byte
			v, r.OK, err = c.Del(ctx, op.Key)
			r.Val = string(v)
			if errors.Is(err, cache.ErrNotFound) {
				err = nil // OK false says it
			}
		case opLoad:
			var v []byte
			v, err = c.Get(ctx, op.Key, func(context.Context, string) ([]byte, error) { return []byte("loaded by " + who), nil })
			r.OK, r.Val = err == nil, string(v)
		}
		if err != nil {
			r.Err = err.Error()
		}
		out[i] = r
	}
	return out
}

func readKeys(c *cache.Cache, keys []string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok, err := c.GetInto(nil, k); err == nil && ok {
			out[k] = string(v)
		}
	}
	return out
}

// childPeer serves peerRequests, one JSON line each, on stdin and stdout,
// against the arena inherited as fd 3.
func childPeer() {
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer: open:", err)
		os.Exit(2)
	}
	sp, err := cache.Attach(a)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer: attach:", err)
		os.Exit(2)
	}
	in, out := json.NewDecoder(bufio.NewReader(os.Stdin)), json.NewEncoder(os.Stdout)
	for {
		var req peerRequest
		if err := in.Decode(&req); err != nil {
			return // the parent is done
		}
		var resp peerResponse
		if c, err := sp.Use(req.Cache, cache.Options{}); err != nil {
			resp.Err = err.Error()
		} else {
			resp.Results = runOps(c, "peer", req.Ops)
			resp.Values = readKeys(c, req.Read)
		}
		if err := out.Encode(resp); err != nil {
			os.Exit(3)
		}
	}
}

// peer is the child process of a fuzz worker.
type peer struct {
	in   io.Writer
	resp chan peerResponse
}

func startPeer(f *testing.F, a *shm.Arena) *peer {
	cmd := xtesting.Command(f, "peer", []*os.File{a.File()})
	in, err := cmd.StdinPipe()
	if err != nil {
		f.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		f.Fatal(err)
	}
	xtesting.Start(f, cmd)
	p := &peer{in: in, resp: make(chan peerResponse)}
	go func() {
		dec := json.NewDecoder(outp)
		for {
			var r peerResponse
			if err := dec.Decode(&r); err != nil {
				close(p.resp)
				return
			}
			p.resp <- r
		}
	}()
	f.Cleanup(func() { in.Close(); cmd.Wait() })
	return p
}

// twoProcKeys are the keys of FuzzTwoProcesses: in round r, the parent owns
// the keys of even index+r, the peer the others, so that ownership changes
// hands every round.
var twoProcKeys = func() []string {
	var ks []string
	for i := range 12 {
		ks = append(ks, fmt.Sprint("key", i))
	}
	return ks
}()

// decodeRounds turns the input into rounds of operations of the parent (0)
// and the peer (1), each on its own keys of the round.
func decodeRounds(in []byte) [][2][]peerOp {
	var rounds [][2][]peerOp
	for r := 0; len(in) > 0 && r < 12; r++ {
		var round [2][]peerOp
		for who := range 2 {
			if len(in) == 0 {
				break
			}
			n := int(in[0] % 12)
			in = in[1:]
			for i := 0; i < n && len(in) > 0; i++ {
				b := in[0]
				in = in[1:]
				// The who-th half of the keys, by parity with the round.
				k := 2*(int(b>>3)%(len(twoProcKeys)/2)) + (who+r)%2
				round[who] = append(round[who], peerOp{Kind: int(b) % numOps, Key: twoProcKeys[k],
					Val: fmt.Sprintf("r%d-%d-%d-%d", r, who, i, b)})
			}
		}
		rounds = append(rounds, round)
	}
	return rounds
}

// expect runs ops on the model and returns what they must return.
func expect(model map[string]string, who string, ops []peerOp) []peerResult {
	out := make([]peerResult, len(ops))
	for i, op := range ops {
		v, had := model[op.Key]
		switch op.Kind {
		case opSet:
			model[op.Key], out[i] = op.Val, peerResult{OK: true}
		case opSetIfAbsent:
			if !had {
				model[op.Key] = op.Val
			}
			out[i] = peerResult{OK: !had}
		case opGetInto:
			out[i] = peerResult{OK: had, Val: v}
		case opDel:
			delete(model, op.Key)
			out[i] = peerResult{OK: had, Val: v}
		case opLoad:
			if !had {
				v = "loaded by " + who
				model[op.Key] = v
			}
			out[i] = peerResult{OK: true, Val: v}
		}
	}
	return out
}

// FuzzTwoProcesses drives one cache from two processes; see the package doc.
func FuzzTwoProcesses(f *testing.F) {
	f.Add([]byte{3, opSet, opGetInto, opDel, 3, opSet, opSetIfAbsent, opLoad, 4, opGetInto, opLoad, opDel, opSetIfAbsent, 2, opGetInto, opSet})
	f.Add([]byte{11, 0, 8, 16, 24, 32, 40, 1, 9, 17, 25, 33, 11, 0, 8, 16, 24, 32, 40, 1, 9, 17, 25, 33, 5, 4, 12, 20, 28, 36, 5, 4, 12, 20, 28, 36})
	f.Add([]byte("two processes, one arena, rounds of sets, gets, deletes and loads"))
	a, err := shm.Create(shm.Options{Size: 4 << 20, Slots: 4})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 2 << 20, Shards: 4})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sp.Close() })
	p := startPeer(f, a)
	run := 0
	f.Fuzz(func(t *testing.T, in []byte) {
		run++
		name := fmt.Sprint("two", run%(cache.MaxCaches-1))
		c, err := sp.Use(name, cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range twoProcKeys {
			c.Del(context.Background(), k)
		}
		model := map[string]string{}
		for r, round := range decodeRounds(in) {
			want := [2][]peerResult{expect(model, "parent", round[0]), expect(model, "peer", round[1])}
			// The peer's operations run while the parent's do.
			req, _ := json.Marshal(peerRequest{Cache: name, Ops: round[1], Read: twoProcKeys})
			if _, err := p.in.Write(append(req, '\n')); err != nil {
				t.Fatalf("round %d: the peer is gone: %v", r, err)
			}
			got0 := runOps(c, "parent", round[0])
			var resp peerResponse
			select {
			case rr, ok := <-p.resp:
				if !ok {
					t.Fatalf("round %d: the peer died", r)
				}
				resp = rr
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: the peer has not answered in 10 s", r)
			}
			if resp.Err != "" {
				t.Fatalf("round %d: peer: %s", r, resp.Err)
			}
			for who, got := range [2][]peerResult{got0, resp.Results} {
				for i := range want[who] {
					if i >= len(got) || got[i] != want[who][i] {
						t.Fatalf("round %d, %s's op %d %+v: got %+v; the model says %+v",
							r, []string{"parent", "peer"}[who], i, round[who][i], got, want[who][i])
					}
				}
			}
			// After the round both processes see the model's state. The
			// peer read at the end of its own operations, maybe before the
			// parent's last ones: only its own keys are sure there.
			if now := readKeys(c, twoProcKeys); !maps.Equal(now, model) {
				t.Fatalf("round %d: the parent reads %v; the model says %v", r, now, model)
			}
			for i, k := range twoProcKeys {
				got, had := resp.Values[k]
				if v, ok := model[k]; (i+r)%2 == 1 && (got != v || had != ok) {
					t.Fatalf("round %d: the peer read %q = %q (present %v); the model says %q (present %v)", r, k, got, had, v, ok)
				}
			}
		}
		// A last read by the peer, after everything: the whole model.
		req, _ := json.Marshal(peerRequest{Cache: name, Read: twoProcKeys})
		p.in.Write(append(req, '\n'))
		select {
		case resp, ok := <-p.resp:
			if !ok || resp.Err != "" || !maps.Equal(resp.Values, model) {
				t.Fatalf("final read by the peer: %v (%s, alive %v); the model says %v", resp.Values, resp.Err, ok, model)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the peer has not answered the final read in 10 s")
		}
		if err := sp.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
