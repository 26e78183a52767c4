package shm

import (
	"fmt"
	"os"
	"time"
)

// Owner generations are 30 bits wide in a lock word; 0 and 1 are reserved
// (a free lock and an abandoned one).
const (
	tokenMask     = 1<<30 - 1
	firstToken    = 2
	tokensPerWrap = tokenMask + 1 - firstToken
)

// Proc is a process's membership of an arena: a slot in the process table and
// an owner generation (token) that names this process in lock words. A Proc is
// immutable after Join and safe for concurrent use by the goroutines of its
// process; it means nothing in another process.
type Proc struct {
	a     *Arena
	slot  int
	token uint32
	pid   int
}

// Arena returns the arena p belongs to.
func (p *Proc) Arena() *Arena { return p.a }

// Slot returns p's index in the process table.
func (p *Proc) Slot() int { return p.slot }

// Token returns p's owner generation: the value its locks carry. No other
// process of this arena is ever given the same one (it wraps after 2^30 joins).
func (p *Proc) Token() uint32 { return p.token }

// Pid returns the process id p joined with.
func (p *Proc) Pid() int { return p.pid }

// Join claims a free slot of the process table for this process, reclaiming
// the slot of a dead process if no slot is free, and returns the membership.
// role is stored in the slot for the caller's use. It returns ErrNoSlot when
// every slot is held by a live process.
func (a *Arena) Join(role uint32) (*Proc, error) { return a.adopt(a.join(-1, role)) }

// JoinSlot claims slot i for this process (the master chooses slots for its
// workers so that per-slot structures are known in advance). A slot held by a
// live process returns ErrSlotBusy; the slot of a dead one is reclaimed.
func (a *Arena) JoinSlot(i int, role uint32) (*Proc, error) {
	if i < 0 || i >= len(a.slots) {
		return nil, fmt.Errorf("shm: %w: slot %d of %d", ErrInvalidConfig, i, len(a.slots))
	}
	return a.adopt(a.join(i, role))
}

// adopt makes p the arena's Self if this process had not joined before.
func (a *Arena) adopt(p *Proc, err error) (*Proc, error) {
	if err != nil {
		return nil, err
	}
	a.selfMu.Lock()
	if a.self == nil {
		a.self = p
	}
	a.selfMu.Unlock()
	return p, nil
}

func (a *Arena) join(want int, role uint32) (*Proc, error) {
	if a.closed.Load() {
		return nil, ErrClosed
	}
	pid := os.Getpid()
	claimed := -1
	if want >= 0 {
		if !a.claim(want, pid) {
			if err := a.ReleaseSlot(want); err != nil {
				return nil, fmt.Errorf("shm: join slot %d: %w", want, err)
			}
			if !a.claim(want, pid) {
				return nil, fmt.Errorf("shm: join slot %d: %w", want, ErrSlotBusy)
			}
		}
		claimed = want
	} else {
		for i := range a.slots {
			if a.claim(i, pid) {
				claimed = i
				break
			}
		}
		for i := 0; claimed < 0 && i < len(a.slots); i++ {
			if a.ReleaseSlot(i) == nil && a.claim(i, pid) {
				claimed = i
			}
		}
		if claimed < 0 {
			return nil, ErrNoSlot
		}
	}
	s := &a.slots[claimed]
	tok := a.newToken()
	s.token.Store(tok)
	s.role.Store(role)
	s.startTime.Store(selfStartTime()) // kept since init: no descriptor needed (0 if never read)
	s.joinedAt.Store(time.Now().UnixNano())
	s.joinedBoot.Store(bootNanos())       // after this process started: see "Who is dead" in doc.go
	s.word.Store(slotWord(pid, slotLive)) // release: token, role, startTime and joinedBoot are valid
	return &Proc{a: a, slot: claimed, token: tok, pid: pid}, nil
}

// claim moves slot i from free to claiming by this pid.
func (a *Arena) claim(i, pid int) bool {
	return a.slots[i].word.CompareAndSwap(0, slotWord(pid, slotClaiming))
}

// newToken mints an owner generation no live process holds.
func (a *Arena) newToken() uint32 {
	g := a.h.gen.Add(1)
	return uint32(firstToken + (g-1)%tokensPerWrap)
}

// Leave releases p's slot: any lock p still holds is marked abandoned (the
// next owner is told it recovered it), then the slot is freed. Call it on a
// clean exit; a crashed process is reaped by ReleaseSlot instead.
func (p *Proc) Leave() {
	s := &p.a.slots[p.slot]
	w := s.word.Load()
	if wordPid(w) != p.pid || wordState(w) != slotLive || s.token.Load() != p.token {
		return // already reaped
	}
	if s.word.CompareAndSwap(w, slotWord(p.pid, slotReleasing)) {
		p.a.abandonLocks(p.token)
		s.word.CompareAndSwap(slotWord(p.pid, slotReleasing), 0)
	}
}

// ReleaseSlot frees slot i if the process holding it is dead: every lock that
// process held is marked abandoned and its waiters are woken, so that the next
// owner learns it must repair what the lock guards. The master calls it as
// soon as it reaps a child; Join calls it to reclaim slots. It returns nil for
// a free slot and ErrSlotBusy when the holder is alive.
//
// A releaser killed half way leaves the slot in its releasing state; the next
// ReleaseSlot finishes the work (abandoning locks is idempotent).
func (a *Arena) ReleaseSlot(i int) error {
	if i < 0 || i >= len(a.slots) {
		return fmt.Errorf("shm: %w: slot %d of %d", ErrInvalidConfig, i, len(a.slots))
	}
	s := &a.slots[i]
	for {
		w := s.word.Load()
		state, pid := wordState(w), wordPid(w)
		if state == slotFree {
			return nil
		}
		// Only a live slot's start time and joinedBoot are its holder's: a
		// claimer has not written them yet (they may be a previous owner's).
		var alive bool
		if state == slotLive {
			alive = slotAlive(pid, s.startTime.Load(), s.joinedBoot.Load())
		} else {
			alive = processAlive(pid, 0)
		}
		if alive {
			return fmt.Errorf("%w: slot %d held by live pid %d", ErrSlotBusy, i, pid)
		}
		releasing := slotWord(pid, slotReleasing)
		if state != slotReleasing && !s.word.CompareAndSwap(w, releasing) {
			continue // it changed under us: look again
		}
		if state == slotLive || state == slotReleasing {
			// In the releasing state the token is the dead owner's: a claimer
			// writes a new token only after its CAS from free.
			a.abandonLocks(s.token.Load())
		}
		s.word.CompareAndSwap(releasing, 0)
		return nil
	}
}

// Alive reports whether the owner generation tok belongs to a live process of
// this arena. It costs a scan of the slot table and a read of /proc: call it on
// slow paths only.
func (a *Arena) Alive(tok uint32) bool {
	for i := range a.slots {
		s := &a.slots[i]
		w := s.word.Load() // acquire: token is valid when the state is live
		if wordState(w) != slotLive || s.token.Load() != tok {
			continue
		}
		return slotAlive(wordPid(w), s.startTime.Load(), s.joinedBoot.Load())
	}
	return false
}

// SlotInfo describes one slot of the process table.
type SlotInfo struct {
	Slot     int
	Pid      int
	Token    uint32
	Role     uint32
	JoinedAt time.Time
	// StartTime is the start time the process recorded at its join
	// ([ProcessStartTime] of its pid), 0 if it could not read it.
	StartTime uint64
}

// Slots returns the live slots of the process table.
func (a *Arena) Slots() []SlotInfo {
	var out []SlotInfo
	for i := range a.slots {
		s := &a.slots[i]
		w := s.word.Load()
		if wordState(w) != slotLive {
			continue
		}
		out = append(out, SlotInfo{Slot: i, Pid: wordPid(w), Token: s.token.Load(), Role: s.role.Load(),
			JoinedAt: time.Unix(0, s.joinedAt.Load()), StartTime: s.startTime.Load()})
	}
	return out
}

// SlotCount returns the size of the process table.
func (a *Arena) SlotCount() int { return len(a.slots) }

// Resume makes this process the member of slot i again with owner
// generation tok, after it replaced its own program image (execve) while it
// was that member: the pid, start time and slot are unchanged, so to every
// other process the member never left. The new image knows its previous
// image's slot and token from the handover (the master's in-place upgrade),
// and calls Resume before anything else touches the arena.
//
// Every registered lock tok holds is marked abandoned first: no thread of
// the previous image survived the execve, so a lock it held is held by
// nobody, and its next owner repairs what it guards, as after a death.
// Structures that name their owner by token (ring ends, the log writer's
// and the sweeper's leases) stay this process's and are taken up again by
// the code that opens them. A slot that is not live with this pid and tok
// returns ErrSlotBusy, and nothing is changed.
func (a *Arena) Resume(i int, tok uint32) (*Proc, error) {
	if i < 0 || i >= len(a.slots) {
		return nil, fmt.Errorf("shm: %w: slot %d of %d", ErrInvalidConfig, i, len(a.slots))
	}
	pid := os.Getpid()
	s := &a.slots[i]
	w := s.word.Load() // acquire: the token is valid when the state is live
	if wordState(w) != slotLive || wordPid(w) != pid || s.token.Load() != tok {
		return nil, fmt.Errorf("shm: resume slot %d: %w: it is not this process's with token %d", i, ErrSlotBusy, tok)
	}
	a.selfMu.Lock()
	defer a.selfMu.Unlock()
	if a.self != nil {
		return nil, fmt.Errorf("shm: resume slot %d: %w: this mapping has joined already", i, ErrInvalidConfig)
	}
	a.abandonLocks(tok)
	a.self = &Proc{a: a, slot: i, token: tok, pid: pid}
	return a.self, nil
}
