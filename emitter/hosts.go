package emitter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Backplane carries events between the masters of several hosts: an event
// to AllHosts is published by the master of the host it was emitted on, and
// every master's emitter is fed what the backplane brings (FromBackplane),
// its own events included, which it drops by their origin. Package bridge
// implements it on the host's Redis connection (pub/sub on one channel);
// the emitter knows nothing of Redis.
type Backplane interface {
	// Publish sends msg, one encoded event, to every host's master. It
	// returns nil only once the backplane took the message, an error when
	// it cannot (Redis down, for one) before ctx ends. msg must not be kept
	// after Publish returns. Publish is called by one goroutine per sender
	// (the emitting goroutine, or the master's reader of a worker's ring):
	// it must be safe for concurrent use, and events of one sender must
	// reach the other hosts in the order of its calls.
	Publish(ctx context.Context, msg []byte) error
}

type backplane struct{ Backplane }

// SetBackplane makes b the emitter's way to other hosts (nil: none). Call it
// in the master (or in an emitter outside any cluster): a worker's events to
// AllHosts always go through its master, whose backplane publishes them; a
// worker's own backplane is never used. It may be called at any time; an
// emit uses the backplane set when it publishes.
func (em *Emitter) SetBackplane(b Backplane) {
	if b == nil {
		em.bp.Store(nil)
		return
	}
	em.bp.Store(&backplane{b})
}

// SetHost names this host in the events it sends to other hosts
// (Event.Host): a name unique in the fleet, at most MaxHost bytes (two hosts
// of the same name drop each other's events as echoes). Without it, or
// with "", the host id
// is the hostname, the master's pid and the time its emitter region was
// made ("web1/4242/20261202T034501.123456789Z"): unique, and the same
// across an in-place upgrade (the region is kept). It must be called before
// Attach (ErrAttached after) and counts in the master only: the master
// writes the id into the emitter region, from which every worker reads it.
func (em *Emitter) SetHost(name string) error {
	if len(name) > MaxHost {
		return fmt.Errorf("emitter: host %.40q: %w: %d bytes (at most %d)", name, ErrInvalidConfig, len(name), MaxHost)
	}
	if em.st.Load() != nil {
		return fmt.Errorf("emitter: host %.40q: %w", name, ErrAttached)
	}
	if name == "" {
		em.hostName.Store(nil)
	} else {
		em.hostName.Store(&name)
	}
	return nil
}

// Host returns this host's id, which events emitted here carry in
// Event.Host: once attached, the id the cluster's master wrote in the
// emitter region; before, SetHost's name or this process's default id.
func (em *Emitter) Host() string { return em.hostOf(em.st.Load()) }

func (em *Emitter) hostOf(st *state) string {
	if st != nil {
		return st.host
	}
	if n := em.hostName.Load(); n != nil {
		return *n
	}
	return em.host
}

// defaultHost is the one place a host id is made when none is configured:
// hostname, the master's pid and t (when the master made its emitter
// region), cut to MaxHost bytes.
func defaultHost(pid int, t time.Time) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	suffix := "/" + strconv.Itoa(pid) + "/" + t.UTC().Format("20060102T150405.000000000Z")
	if len(h)+len(suffix) > MaxHost {
		h = h[:MaxHost-len(suffix)]
	}
	return h + suffix
}

// publish encodes an event of sender from (this host's) into buf and hands
// it to the backplane, bounded by ctx. It returns buf, for reuse, and an
// error wrapping ErrNoBackplane or ErrBackplane; both are counted.
func (em *Emitter) publish(ctx context.Context, buf []byte, from uint32, host string, name string, args []byte) ([]byte, error) {
	bp := em.bp.Load()
	if bp == nil {
		em.stats.publishFailed.Add(1)
		return buf, ErrNoBackplane
	}
	buf = appendFrame(buf[:0], from, 0, nil, host, name, args)
	if err := bp.Publish(ctx, buf); err != nil {
		em.stats.publishFailed.Add(1)
		return buf, fmt.Errorf("%w: %w", ErrBackplane, err)
	}
	em.stats.published.Add(1)
	return buf, nil
}

// FromBackplane delivers msg, an event the backplane brought from a host's
// master, in this process: to its listeners and, in a master, to every
// worker (through their rings, as the master's own events go). An event of
// this host (its origin is Host) is an echo of what this master published:
// it is dropped and counted (Stats.Echoes). msg may be reused once
// FromBackplane returns. A message that is not an event from a host returns
// an error wrapping ErrCorrupt, one larger than this host's MaxFrame an error
// wrapping ErrTooLarge (both deliver nothing); a worker's ring that stayed full for
// Options.SendTimeout is reported (that worker missed the event; it is also
// counted in Stats.Dropped and logged). The backplane calls it from one
// goroutine, in the order the events came.
func (em *Emitter) FromBackplane(msg []byte) error {
	f, err := parseFrame(msg)
	switch {
	case err != nil:
	case f.host == nil || f.npids() != 0:
		err = fmt.Errorf("%w: %d pids, host %q", ErrCorrupt, f.npids(), f.host)
	case len(msg) > em.MaxFrame(): // another host's rings may be larger: the limit is this host's
		err = fmt.Errorf("%w: %d-byte frame, max %d", ErrTooLarge, len(msg), em.MaxFrame())
	}
	if err != nil {
		return fmt.Errorf("emitter: from the backplane: %w", err)
	}
	st := em.st.Load()
	if st != nil && st.role == RoleWorker {
		return fmt.Errorf("emitter: from the backplane: %w: a worker's master takes the backplane's events", ErrInvalidConfig)
	}
	host := string(f.host)
	if host == em.hostOf(st) {
		em.stats.echoes.Add(1)
		return nil
	}
	em.stats.fromHosts.Add(1)
	sb := sendBufs.Get().(*sendBuf)
	defer sb.release()
	sb.timeout = em.opts.SendTimeout
	var errs []error
	if err := em.dispatch(sb, int(f.from), host, em.listenersOf(f.name), f.args, heapCopy); err != nil {
		errs = append(errs, err)
	}
	if st != nil {
		for _, l := range st.links() {
			sent, err := l.send(sb, 0, recordEvent, msg)
			switch {
			case err != nil:
				em.stats.dropped.Add(1)
				st.log.Warn("an event from another host was not delivered", "host", host, "event", string(f.name), "to", l.pid, "err", err)
				errs = append(errs, err)
			case sent:
				em.stats.sent.Add(1)
			default:
				em.stats.dropped.Add(1)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("emitter: from host %s: %w", host, errors.Join(errs...))
	}
	return nil
}

// sendHosts is a worker's emit to AllHosts: frame (after its 8-byte
// sequence) goes to the master as a recordHosts, and the worker waits for
// the master's recordAck, under sb's context.
func (st *state) sendHosts(sb *sendBuf, l *link, seq uint64) error {
	fail := func(err error) error {
		st.em.stats.publishFailed.Add(1)
		return err
	}
	if l == nil {
		st.em.stats.dropped.Add(1)
		return fail(fmt.Errorf("%w: no master to publish through", ErrBackplane))
	}
	ch := make(chan error, 1)
	st.pendMu.Lock()
	st.pending[seq] = ch
	st.pendMu.Unlock()
	defer func() {
		st.pendMu.Lock()
		delete(st.pending, seq)
		st.pendMu.Unlock()
	}()
	sent, err := l.send(sb, 0, recordHosts, sb.frame)
	switch {
	case err != nil:
		return fail(err)
	case !sent:
		st.em.stats.dropped.Add(1)
		return fail(fmt.Errorf("%w: the master is gone", ErrBackplane))
	}
	st.em.stats.sent.Add(1)
	select {
	case err := <-ch:
		if err != nil {
			st.em.stats.publishFailed.Add(1)
		}
		return err
	case <-l.deadFlag:
		return fail(fmt.Errorf("%w: the master died before it answered", ErrBackplane))
	case <-sb.waitCtx().Done():
		return fail(fmt.Errorf("emitter: the master did not say whether it published: %w", sb.waitCtx().Err()))
	}
}

// answer hands a recordAck to the emit waiting for it (none: it gave up).
func (st *state) answer(l *link, b []byte) {
	if len(b) < 9 {
		st.em.stats.dropped.Add(1)
		st.log.Error("bad answer from the master", "peer", l.pid, "bytes", len(b))
		return
	}
	seq, code, text := binary.LittleEndian.Uint64(b), b[8], string(b[9:])
	var err error
	switch code {
	case ackPublished:
	case ackNoBackplane:
		err = ErrNoBackplane
	default:
		err = fmt.Errorf("%w: %s", ErrBackplane, text)
	}
	st.pendMu.Lock()
	ch := st.pending[seq]
	st.pendMu.Unlock()
	if ch != nil {
		ch <- err // cap 1, one answer per sequence
	}
}

// fromWorkerHosts is the master's side of a worker's recordHosts: the frame
// is routed in this host like a recordEvent, published to the backplane,
// and the worker is told how that went.
func (st *state) fromWorkerHosts(l *link, b []byte) {
	if len(b) < 8 {
		st.em.stats.dropped.Add(1)
		st.log.Error("bad request from a worker", "peer", l.pid, "bytes", len(b))
		return
	}
	seq := binary.LittleEndian.Uint64(b)
	code, text := uint8(ackPublished), ""
	f, err := parseFrame(b[8:])
	if err == nil {
		st.routeFrame(l, f, b[8:])
		ctx, cancel := context.WithTimeout(l.ctx, st.em.opts.SendTimeout/2) // answer before the worker's own bound
		l.scratch, err = st.em.publish(ctx, l.scratch, f.from, st.host, string(f.name), f.args)
		cancel()
	} else {
		st.em.stats.dropped.Add(1)
		st.em.stats.publishFailed.Add(1)
		st.log.Error("bad frame", "peer", l.pid, "err", err)
	}
	switch {
	case errors.Is(err, ErrNoBackplane):
		code = ackNoBackplane
	case err != nil:
		code, text = ackFailed, strings.TrimPrefix(err.Error(), ErrBackplane.Error()+": ")
	}
	ack := binary.LittleEndian.AppendUint64(l.ack[:0], seq)
	ack = append(append(ack, code), text...)
	l.ack = ack
	if _, err := l.send(l, st.em.opts.SendTimeout, recordAck, ack); err != nil {
		st.log.Warn("answer to a worker lost", "to", l.pid, "err", err)
	}
}
