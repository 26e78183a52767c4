package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/nocopy"
)

// Names of the built-in statuses the runtime registers.
const (
	// NameOS is every worker's last heartbeat.
	NameOS = "status.os"
	// NameDeathQueue is the master's death queue: the pids waiting for
	// replacement.
	NameDeathQueue = "deathQueue"
	// NameRespawns is the master's slots whose lost worker could not be
	// respawned yet (cluster2.StatusRespawns).
	NameRespawns = "respawns"
	// NameUpgrade is the master's last in-place upgrade
	// (cluster2.StatusUpgrade).
	NameUpgrade = "upgrade"
	// NameScale is the master's elastic worker count (cluster2.Scaling:
	// target, workers, max).
	NameScale = "scale"
)

// DefaultTimeout bounds Get and Set when their context has no deadline.
const DefaultTimeout = time.Second

// Events of the status protocol, carried by the emitter.
const (
	evRegister   = "cluster2.status.register"   // worker → master: [name]
	evUnregister = "cluster2.status.unregister" // worker → master: [name]
	evGet        = "cluster2.status.get"        // master → worker: [id, name]
	evSet        = "cluster2.status.set"        // master → worker: [id, name, value]
	evReply      = "cluster2.status.reply"      // worker → master: [id, status, error text or null]
)

// Entry is one process's answer for a status.
type Entry struct {
	Pid    int             `json:"pid"`
	Name   string          `json:"name"`
	Status json.RawMessage `json:"status,omitempty"` // the view's value (Get) or the update's result (Set), as JSON
	Err    error           `json:"-"`                // why this process gave no status
}

// MarshalJSON encodes the entry with its error as text ("error").
func (e Entry) MarshalJSON() ([]byte, error) {
	type plain Entry
	v := struct {
		plain
		Error string `json:"error,omitempty"`
	}{plain: plain(e)}
	if e.Err != nil {
		v.Error = e.Err.Error()
	}
	return json.Marshal(v)
}

// Decode decodes the entry's status into v (a pointer, as for
// json.Unmarshal). An entry that carries an error returns it.
func (e Entry) Decode(v any) error {
	if e.Err != nil {
		return e.Err
	}
	return json.Unmarshal(e.Status, v)
}

type registration struct {
	view   func() any
	update func(any) (any, error)
}

type reply struct {
	status json.RawMessage
	err    error
}

// Registry holds the statuses registered in this process and, in the master,
// which workers registered which names. It answers the master's requests
// over its emitter. Its zero value is not usable: get one from New (or use
// the package-level functions, on the default registry). It must not be
// copied; it is safe for concurrent use.
type Registry struct {
	_       nocopy.NoCopy
	em      *emitter.Emitter
	mu      sync.Mutex
	local   map[string]registration
	remote  map[string]map[int]bool // master: name → worker pids that registered it
	pending map[uint64]chan reply
	seq     atomic.Uint64
	ls      []*emitter.Listener
}

// New returns a registry that talks over em. The emitter may be attached
// later (as the runtime does with the Cluster's); call Announce then.
func New(em *emitter.Emitter) *Registry {
	r := &Registry{em: em, local: map[string]registration{}, remote: map[string]map[int]bool{},
		pending: map[uint64]chan reply{}}
	r.ls = []*emitter.Listener{
		em.On(evRegister, r.onRegister),
		em.On(evUnregister, r.onUnregister),
		em.On(evGet, r.onGet),
		em.On(evSet, r.onSet),
		em.On(evReply, r.onReply),
	}
	return r
}

// Close removes the registry's listeners from its emitter.
func (r *Registry) Close() {
	for _, l := range r.ls {
		r.em.Off(l)
	}
}

// Emitter returns the registry's emitter.
func (r *Registry) Emitter() *emitter.Emitter { return r.em }

// Register registers the status name in this process: view (required)
// returns its current value, which must be JSON-encodable; update
// (optional) applies a value given to Set and returns the result. A worker
// tells the master, so that the master's Get spans it. Registering a name
// again replaces its functions.
func (r *Registry) Register(name string, view func() any, update func(any) (any, error)) error {
	if name == "" || view == nil {
		return fmt.Errorf("status: register %q: %w", name, ErrBadName)
	}
	r.mu.Lock()
	r.local[name] = registration{view: view, update: update}
	r.mu.Unlock()
	r.tellMaster(evRegister, name)
	return nil
}

// Unregister removes the status name from this process (and tells the
// master). An unknown name does nothing.
func (r *Registry) Unregister(name string) {
	r.mu.Lock()
	_, ok := r.local[name]
	delete(r.local, name)
	r.mu.Unlock()
	if ok {
		r.tellMaster(evUnregister, name)
	}
}

// Announce tells the master every name registered in this process: call it
// in a worker once its emitter is attached (registrations made before were
// not heard). The runtime does it.
func (r *Registry) Announce() {
	r.mu.Lock()
	names := make([]string, 0, len(r.local))
	for n := range r.local {
		names = append(names, n)
	}
	r.mu.Unlock()
	for _, n := range names {
		r.tellMaster(evRegister, n)
	}
}

func (r *Registry) tellMaster(ev, name string) {
	if r.em.Role() == emitter.RoleWorker {
		_ = r.em.To(emitter.Master).Emit(ev, name) // a full ring past SendTimeout: the master's Get misses us

	}
}

func (r *Registry) onRegister(e emitter.Event) {
	name, err := emitter.Arg[string](e, 0)
	if err != nil || r.em.Role() != emitter.RoleMaster {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.remote[name] == nil {
		r.remote[name] = map[int]bool{}
	}
	r.remote[name][e.From] = true
}

func (r *Registry) onUnregister(e emitter.Event) {
	name, err := emitter.Arg[string](e, 0)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.remote[name], e.From)
	if len(r.remote[name]) == 0 {
		delete(r.remote, name)
	}
}

// Names returns the names of the statuses registered in this process and,
// in the master, in its live workers, sorted.
func (r *Registry) Names() []string {
	live := r.livePeers()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.local {
		out = append(out, n)
	}
	for n, pids := range r.remote {
		if _, mine := r.local[n]; mine {
			continue
		}
		for pid := range pids {
			if live[pid] {
				out = append(out, n)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func (r *Registry) livePeers() map[int]bool {
	live := map[int]bool{}
	if r.em.Role() == emitter.RoleMaster {
		for _, p := range r.em.Peers() {
			live[p] = true
		}
	}
	return live
}

// targets returns whether name is registered here, and the live workers
// that registered it (master only), pruning dead ones.
func (r *Registry) targets(name string) (registration, bool, []int) {
	live := r.livePeers()
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, mine := r.local[name]
	var pids []int
	for pid := range r.remote[name] {
		if live[pid] {
			pids = append(pids, pid)
		} else {
			delete(r.remote[name], pid)
		}
	}
	if len(r.remote[name]) == 0 {
		delete(r.remote, name)
	}
	slices.Sort(pids)
	return reg, mine, pids
}

// Get returns the status name of every process that registered it: from
// the master, the master itself (first, if it registered it) and every live
// worker; from a worker, that worker. A process that does not answer before
// ctx ends (or DefaultTimeout, when ctx has no deadline) gives an Entry
// whose Err wraps ErrTimeout; the call itself fails only for a name nobody
// registered (ErrUnknown).
func (r *Registry) Get(ctx context.Context, name string) ([]Entry, error) {
	return r.do(ctx, "get", name, nil)
}

// Set gives value (JSON-encodable) to the update function of the status
// name in every process that registered it (the same processes as Get) and
// returns each one's result. The update function receives value decoded
// from JSON into an any (numbers as float64, objects as map[string]any), in
// the calling process too, so that every process sees the same value.
func (r *Registry) Set(ctx context.Context, name string, value any) ([]Entry, error) {
	raw, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("status: set %q: %w", name, err)
	}
	return r.do(ctx, "set", name, raw)
}

func (r *Registry) do(ctx context.Context, op, name string, value json.RawMessage) ([]Entry, error) {
	reg, mine, pids := r.targets(name)
	if !mine && len(pids) == 0 {
		return nil, fmt.Errorf("status: %s %q: %w", op, name, ErrUnknown)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	type call struct {
		pid int
		id  uint64
		ch  chan reply
	}
	calls := make([]call, 0, len(pids))
	for _, pid := range pids {
		c := call{pid: pid, id: r.seq.Add(1), ch: make(chan reply, 1)}
		r.mu.Lock()
		r.pending[c.id] = c.ch
		r.mu.Unlock()
		to := r.em.To(emitter.Pid(pid))
		var err error
		if op == "get" {
			err = to.EmitContext(ctx, evGet, c.id, name)
		} else {
			err = to.EmitContext(ctx, evSet, c.id, name, value)
		}
		if err != nil {
			c.ch <- reply{err: fmt.Errorf("%w: %w", ErrTimeout, err)}
		}
		calls = append(calls, c)
	}
	var out []Entry
	if mine {
		st, err := answer(reg, op, value)
		out = append(out, Entry{Pid: r.em.Pid(), Name: name, Status: st, Err: err})
	}
	for _, c := range calls {
		var rep reply
		select {
		case rep = <-c.ch:
		case <-ctx.Done():
			rep.err = fmt.Errorf("status: %s %q from %d: %w: %w", op, name, c.pid, ErrTimeout, ctx.Err())
		}
		r.mu.Lock()
		delete(r.pending, c.id)
		r.mu.Unlock()
		out = append(out, Entry{Pid: c.pid, Name: name, Status: rep.status, Err: rep.err})
	}
	return out, nil
}

// answer runs a registration's view (get) or update (set) and encodes the
// result, turning failures and panics into errors.
func answer(reg registration, op string, value json.RawMessage) (st json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			st, err = nil, fmt.Errorf("%w: panic: %v", ErrFailed, p)
		}
	}()
	var v any
	if op == "get" {
		v = reg.view()
	} else {
		if reg.update == nil {
			return nil, ErrReadOnly
		}
		var in any
		if err := json.Unmarshal(value, &in); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFailed, err)
		}
		if v, err = reg.update(in); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFailed, err)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return b, nil
}

// onGet and onSet answer the master's requests in a worker.
func (r *Registry) onGet(e emitter.Event) { r.serve(e, "get") }
func (r *Registry) onSet(e emitter.Event) { r.serve(e, "set") }

func (r *Registry) serve(e emitter.Event, op string) {
	var id uint64
	var name string
	var value json.RawMessage
	if err := e.Decode(&id, &name, &value); err != nil {
		return
	}
	r.mu.Lock()
	reg, ok := r.local[name]
	r.mu.Unlock()
	var st json.RawMessage
	var err error
	if ok {
		st, err = answer(reg, op, value)
	} else {
		err = ErrUnknown
	}
	var text *string
	if err != nil {
		s := err.Error()
		text = &s
	}
	if st == nil {
		st = json.RawMessage("null")
	}
	r.em.To(emitter.Pid(e.From)).Emit(evReply, id, st, text)
}

func (r *Registry) onReply(e emitter.Event) {
	var id uint64
	var st json.RawMessage
	var text *string
	if err := e.Decode(&id, &st, &text); err != nil {
		return
	}
	r.mu.Lock()
	ch := r.pending[id]
	r.mu.Unlock()
	if ch == nil {
		return // answered too late
	}
	rep := reply{status: st}
	if text != nil {
		rep.status = nil
		rep.err = remoteError(*text)
	}
	select {
	case ch <- rep:
	default:
	}
}

// remoteError rebuilds an error that crossed processes as text, keeping the
// sentinels of this package usable with errors.Is.
func remoteError(text string) error {
	for _, s := range []error{ErrUnknown, ErrReadOnly, ErrFailed} {
		if len(text) >= len(s.Error()) && text[:len(s.Error())] == s.Error() {
			if text == s.Error() {
				return s
			}
			return fmt.Errorf("%w%s", s, text[len(s.Error()):])
		}
	}
	return errors.New(text)
}
