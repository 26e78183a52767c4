package proc

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/shm"
)

// Format constants of the supervision region: changing any of them, or the
// Block struct, changes the layout and must bump LayoutVersion.
const (
	// LayoutVersion is the version of the supervision region's layout. 2:
	// the start-failure reason (rlen, reason). 3: the worker's build (blen,
	// build) in a fourth line: BlockSize 384 → 512. 4: the worker's live
	// totals (accepts, requests) in a fifth line: BlockSize 512 → 640. 5:
	// the master's request limit (reqLimit, in line 0's padding) and the
	// worker's count of hung requests (hung, in line 4's padding).
	LayoutVersion = 5

	// RegionName names the supervision region in the arena.
	RegionName = "cluster2.sup.v5"

	// BlockSize is the size of one slot's control block.
	BlockSize = 5 * shm.PadLine

	// HeartbeatWords is the number of 64-bit words of a heartbeat.
	HeartbeatWords = 16

	// ReasonWords is the number of 64-bit words of a worker's start-failure
	// reason: ReasonMax bytes of text.
	ReasonWords = 12

	// ReasonMax is the longest reason a block holds; a longer one is cut.
	ReasonMax = 8 * ReasonWords

	// BuildWords is the number of 64-bit words of a worker's build:
	// BuildMax bytes of text.
	BuildWords = 15

	// BuildMax is the longest build text a block holds (see SetBuild).
	BuildMax = 8 * BuildWords
)

// Want is what the master asks of a worker.
type Want uint32

// Values of Block.want.
const (
	WantRun   Want = iota // serve (the zero value: what a reset block says)
	WantPause             // stop accepting; in-flight requests finish
	WantDrain             // drain and exit; final
)

// State is a worker's progress, as the worker reports it.
type State uint32

// Values of Block.state, in the order a worker goes through them.
const (
	StateForked     State = iota // spawned, not reported yet (what a reset leaves)
	StateWarming                 // running WarmUp on its private address
	StateWarmed                  // warm-up done, joining the shared socket
	StateListening               // accepting on the shared socket
	StatePaused                  // not accepting (Want was pause)
	StateDraining                // draining before exit
	StateWarmFailed              // WarmUp failed; the worker will not listen
	StateStopped                 // drained; about to exit
)

var stateNames = [...]string{"forked", "warming", "warmed", "listening", "paused", "draining", "warm-failed", "stopped"}

// String returns the state's name.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Block is one slot's control block in the supervision region. See the
// package doc for its layout, who writes each field, and what a crash leaves.
// It lives only in the arena (never copy it); it is safe for concurrent use
// by the master and the worker of its slot.
type Block struct {
	// Line 0: written by the master.
	want     atomic.Uint32 // Want
	spawn    atomic.Uint32 // resets so far
	toWorker shm.Event     // master → worker wake-up
	deadline atomic.Int64  // drain deadline in ns (0: worker default)
	reqLimit atomic.Uint64 // the requests after which the master recycles the worker (0: none)
	_        [shm.PadLine - 32]byte

	// Lines 1-2: written by the worker.
	state    atomic.Uint32 // State
	pid      atomic.Uint32 // worker pid
	toMaster shm.Event     // worker → master wake-up
	hbSeq    atomic.Uint64 // seqlock over hb: odd while being written
	hb       [HeartbeatWords]atomic.Uint64
	rlen     atomic.Uint64 // bytes of reason; stored after them, before the state
	reason   [ReasonWords]atomic.Uint64

	// Line 3: written by the worker, once, before its first state.
	blen  atomic.Uint64 // bytes of build; stored after them
	build [BuildWords]atomic.Uint64

	// Line 4: written by the worker on every accept and request (its own
	// line: the master's reads never share a line with the seqlock).
	accepts  atomic.Uint64 // connections accepted on the shared socket since the process started
	requests atomic.Uint64 // requests completed on the shared socket since the process started
	hung     atomic.Uint64 // requests that passed the server's RequestTimeout
	_        [shm.PadLine - 24]byte
}

// Region returns the supervision region of a, creating it if needed (the
// master does at start, before any worker runs), as one Block per slot.
func Region(ctx context.Context, a *shm.Arena) ([]Block, error) {
	n := a.SlotCount()
	off, _, err := a.Region(ctx, RegionName, int64(n)*BlockSize, nil)
	if err != nil {
		return nil, err
	}
	return shm.Slice[Block](a, off, n), nil
}

// Reset prepares b for a new process: want run, state forked, no heartbeat,
// no counts.
// Only the master calls it, and only while no process uses the slot.
func (b *Block) Reset(drainDeadline time.Duration) {
	b.want.Store(uint32(WantRun))
	b.deadline.Store(int64(drainDeadline))
	b.state.Store(uint32(StateForked))
	b.pid.Store(0)
	for i := range b.hb {
		b.hb[i].Store(0)
	}
	b.hbSeq.Store(0)
	b.rlen.Store(0)
	clear(b.reason[:])
	b.blen.Store(0)
	clear(b.build[:])
	b.accepts.Store(0)
	b.requests.Store(0)
	b.hung.Store(0)
	b.reqLimit.Store(0)
	b.spawn.Add(1)
}

// SetRequestLimit stores the number of served requests after which the
// master recycles the worker (master side: after Reset, before the spawn,
// so that the worker reads it when it joins; 0: no limit).
func (b *Block) SetRequestLimit(n uint64) { b.reqLimit.Store(n) }

// RequestLimit returns what SetRequestLimit stored (0: no limit).
func (b *Block) RequestLimit() uint64 { return b.reqLimit.Load() }

// AddHung counts one request past the server's RequestTimeout (worker side)
// and wakes the master; it returns the new count.
func (b *Block) AddHung() uint64 {
	n := b.hung.Add(1) // seq-cst: before Wake's load of the waiter count
	b.toMaster.Wake()
	return n
}

// Hung returns how many requests passed the server's RequestTimeout (either
// side; 0 after a Reset).
func (b *Block) Hung() uint64 { return b.hung.Load() }

// SetReason stores why the worker failed to start (worker side, once, before
// the state that reports the failure, or before exiting): its first
// ReasonMax bytes.
func (b *Block) SetReason(text string) { storeText(b.reason[:], &b.rlen, text) }

// Reason returns the start-failure reason the worker stored, "" if none
// (master side: after seeing the failure state, or once the worker is
// reaped).
func (b *Block) Reason() string { return loadText(b.reason[:], &b.rlen) }

// SetBuild stores the worker's build (worker side, once, before its first
// state): version, revision (its first 12 characters) and Go version (its
// first 32 bytes), the version cut to what the other two leave of BuildMax.
// A NUL in a field is dropped.
func (b *Block) SetBuild(version, revision, goVersion string) {
	clean := func(s string, n int) string {
		s = strings.ReplaceAll(s, "\x00", "")
		return s[:min(n, len(s))]
	}
	revision, goVersion = clean(revision, 12), clean(goVersion, 32)
	version = clean(version, BuildMax-2-len(revision)-len(goVersion))
	storeText(b.build[:], &b.blen, version+"\x00"+revision+"\x00"+goVersion)
}

// Build returns what the worker stored with SetBuild; all "" before it did
// (master side: once the worker reported a state past forked).
func (b *Block) Build() (version, revision, goVersion string) {
	f := strings.SplitN(loadText(b.build[:], &b.blen), "\x00", 3)
	if len(f) != 3 {
		return "", "", ""
	}
	return f[0], f[1], f[2]
}

// CountAccept counts one connection accepted on the shared socket (worker
// side, any goroutine).
func (b *Block) CountAccept() { b.accepts.Add(1) }

// CountRequests counts n completed requests (worker side, any goroutine)
// and returns the new total.
func (b *Block) CountRequests(n uint64) uint64 { return b.requests.Add(n) }

// Accepts returns the connections the worker accepted on the shared socket
// since it started: live, not a heartbeat's copy (either side; 0 after a
// Reset).
func (b *Block) Accepts() uint64 { return b.accepts.Load() }

// Requests returns the requests the worker completed since it started, live
// (either side; 0 after a Reset).
func (b *Block) Requests() uint64 { return b.requests.Load() }

// storeText stores text, cut to 8*len(words) bytes, little-endian in words,
// then its length in n (seq-cst: after the words, so that a reader that
// loads n first and sees it non-zero reads the words written).
func storeText(words []atomic.Uint64, n *atomic.Uint64, text string) {
	text = text[:min(len(text), 8*len(words))]
	for i := range words {
		var v uint64
		for j := 7; j >= 0; j-- {
			if k := 8*i + j; k < len(text) {
				v = v<<8 | uint64(text[k])
			} else {
				v <<= 8
			}
		}
		words[i].Store(v)
	}
	n.Store(uint64(len(text)))
}

// loadText returns the text storeText stored in words and n ("" if none).
func loadText(words []atomic.Uint64, n *atomic.Uint64) string {
	l := min(n.Load(), uint64(8*len(words)))
	buf := make([]byte, 8*len(words))
	for i := range words {
		v := words[i].Load()
		for j := range 8 {
			buf[8*i+j] = byte(v >> (8 * j))
		}
	}
	return string(buf[:l])
}

// SetWant stores what the master wants and wakes the worker (master side).
// It synchronizes before the worker's Want that observes it. Drain is final:
// once want is WantDrain, SetWant leaves it so, even when it races another
// SetWant(WantDrain) (a compare-and-swap from the value it checked, retried
// when want changed in between, so no Pause or Resume can overwrite a drain
// stored after its check). Only Reset, for a new process, leaves drain.
func (b *Block) SetWant(w Want) {
	for {
		cur := b.want.Load()
		if Want(cur) == WantDrain {
			return // drain is final
		}
		if testHookSetWant != nil {
			testHookSetWant()
		}
		// seq-cst: before Wake's load of the waiter count.
		if b.want.CompareAndSwap(cur, uint32(w)) {
			break
		}
	}
	b.toWorker.Wake()
}

// testHookSetWant, when not nil, runs in SetWant between the check of the
// current want and the compare-and-swap (tests force a racing drain there).
var testHookSetWant func()

// SetDrainDeadline changes the drain deadline (master side), before SetWant
// asks for a drain.
func (b *Block) SetDrainDeadline(d time.Duration) { b.deadline.Store(int64(d)) }

// Want returns what the master wants (worker side).
func (b *Block) Want() Want { return Want(b.want.Load()) }

// DrainDeadline returns the drain deadline the master set (0: default).
func (b *Block) DrainDeadline() time.Duration { return time.Duration(b.deadline.Load()) }

// WaitWant sleeps until want differs from seen, or ready (when not nil)
// returns true, or timeout passes (negative: no limit), and returns the
// current want (worker side). ready is the worker's own wake-up condition
// for WakeWorker: it is re-checked after the announcement like want, so a
// WakeWorker that follows the condition is never lost.
func (b *Block) WaitWant(seen Want, ready func() bool, timeout time.Duration) Want {
	t := b.toWorker.Prepare()
	if w := b.Want(); w != seen || (ready != nil && ready()) { // re-check after announcing
		b.toWorker.Cancel()
		return w
	}
	b.toWorker.Sleep(t, timeout)
	return b.Want()
}

// WakeWorker wakes whoever sleeps in WaitWant without changing want (the
// worker uses it to interrupt its own control loop, after making the loop's
// ready condition true).
func (b *Block) WakeWorker() { b.toWorker.Wake() }

// SetState stores the worker's state and wakes the master (worker side). It
// synchronizes before the master's State that observes it.
func (b *Block) SetState(s State) {
	b.state.Store(uint32(s)) // seq-cst: before Wake's load of the waiter count
	b.toMaster.Wake()
}

// SetPid stores the worker's pid (worker side, before its first state).
func (b *Block) SetPid(pid int) { b.pid.Store(uint32(pid)) }

// Pid returns the pid the worker stored.
func (b *Block) Pid() int { return int(b.pid.Load()) }

// State returns the worker's last reported state.
func (b *Block) State() State { return State(b.state.Load()) }

// HeartbeatSeq returns the heartbeat sequence: it grows by two with each
// heartbeat, so a change tells the master that a new one arrived.
func (b *Block) HeartbeatSeq() uint64 { return b.hbSeq.Load() }

// StoreHeartbeat publishes a heartbeat and wakes the master (worker side, one
// writer). It synchronizes before a LoadHeartbeat that returns these words.
func (b *Block) StoreHeartbeat(w *[HeartbeatWords]uint64) {
	s := b.hbSeq.Load()
	b.hbSeq.Store(s + 1) // odd: readers retry
	for i := range w {
		b.hb[i].Store(w[i])
	}
	b.hbSeq.Store(s + 2) // even: publishes the words
	b.toMaster.Wake()
}

// LoadHeartbeat copies the latest heartbeat into w and returns its sequence;
// ok is false when there is none yet or the writer kept (or died) writing it.
func (b *Block) LoadHeartbeat(w *[HeartbeatWords]uint64) (seq uint64, ok bool) {
	for range 100 {
		s1 := b.hbSeq.Load()
		if s1 == 0 {
			return 0, false
		}
		if s1&1 != 0 {
			continue
		}
		for i := range w {
			w[i] = b.hb[i].Load()
		}
		if b.hbSeq.Load() == s1 {
			return s1, true
		}
	}
	return 0, false
}

// WaitMaster sleeps until the worker's state or heartbeat sequence differs
// from the ones given, or ready (when not nil) returns true, or timeout
// passes (master side). ready is re-checked after the announcement, like
// WaitWant's.
func (b *Block) WaitMaster(state State, hbSeq uint64, ready func() bool, timeout time.Duration) {
	t := b.toMaster.Prepare()
	if b.State() != state || b.HeartbeatSeq() != hbSeq || (ready != nil && ready()) { // re-check after announcing
		b.toMaster.Cancel()
		return
	}
	b.toMaster.Sleep(t, timeout)
}

// WakeMaster wakes whoever sleeps in WaitMaster (the master itself uses it to
// interrupt its own watcher).
func (b *Block) WakeMaster() { b.toMaster.Wake() }
