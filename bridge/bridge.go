package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/backoff"
	"github.com/cluster2/cluster2/internal/cfgerr"
	"github.com/cluster2/cluster2/internal/xtime"
)

// Errors.
var (
	// ErrRedisDown is wrapped by every operation that needed Redis and could
	// not reach it: a write of a distributed cache while Redis is down (unless
	// Config.LocalWrites), a Publish. The error names the cause. It is
	// cache.ErrRemoteDown, so that a cache's caller tests one value.
	ErrRedisDown = cache.ErrRemoteDown

	// ErrInvalidConfig is wrapped by Open's error for a bad Config; the same
	// value as cluster2.ErrInvalidConfig.
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrClosed is returned by calls on a closed Bridge.
	ErrClosed = errors.New("bridge: closed")

	// ErrRedisTooOld is the tracking connection's error (Stats.Error, the
	// log) when Redis is older than MinRedisVersion: the bridge then stays
	// down (nothing distributed is trusted) and tries again after its
	// back-off, in case Redis is upgraded in place.
	ErrRedisTooOld = errors.New("bridge: redis is too old")
)

// MinRedisVersion is the oldest Redis the bridge works with: 7.0 (SET with
// NX and GET together, PEXPIRE GT, CLIENT TRACKING BCAST with RESP3).
const MinRedisVersion = "7.0"

// Defaults of Config.
const (
	DefaultNamespace = "cluster2:"
	DefaultPingEvery = time.Second
	DefaultTimeout   = 500 * time.Millisecond
)

// Config configures a Bridge. Every zero field takes the default its doc
// names, except Addr.
type Config struct {
	// Addr is Redis's address, host:port. Required.
	Addr string

	// Username, Password: Redis AUTH (ACL user, password). Default none.
	Username, Password string

	// DB is the Redis database (SELECT). Default 0.
	DB int

	// Namespace prefixes every key the bridge writes: a distributed cache
	// C's key K is Namespace + C + ":" + K in Redis, and the tracking
	// connection watches the prefix Namespace + C + ":" of each cache of
	// Caches. Default "cluster2:". Two clusters share entries exactly when
	// they share Redis, Namespace and the cache's name.
	Namespace string

	// Caches names the distributed caches (their entries live in Redis too;
	// see the package doc). Names are 1 to 48 bytes of letters, digits, '_',
	// '-' and '.' (no ':': a name is the part of a Redis key before the
	// first ':' after the namespace). Default none.
	Caches []string

	// PingEvery is the period of the tracking connection's PING: a PING
	// that fails (or takes longer than Timeout) takes the bridge down. Default
	// 1 s.
	PingEvery time.Duration

	// Timeout bounds each Redis command of the bridge (and its dial) when
	// the caller's context has no earlier deadline. Default 500 ms.
	Timeout time.Duration

	// LocalWrites lets Set, Del, InvalidateTag and Clear of a distributed
	// cache change this host's cache alone while Redis is down, instead of
	// returning an error wrapping ErrRedisDown. Such a write never reaches
	// Redis or the other hosts, and is undone on this host when the bridge
	// reconnects (every distributed entry is revalidated then). Default false.
	LocalWrites bool

	// FleetLoad, when not 0, makes one host of the fleet at a time run the
	// loader of a key Redis lacks: the host that misses takes the key's
	// load lock in Redis (SET <Namespace><cache>!<key> NX PX FleetLoad)
	// before it runs its loader, and releases it once the value is offered
	// to Redis; a host that finds the lock taken polls Redis for the value
	// (2 ms doubling to 50 ms) and returns it, and runs its loader itself
	// only once the lock is free again or after FleetLoad (the holder may
	// have died: its lock expires). Choose it above the loader's usual
	// time. Default 0: every host that misses runs its loader, and Redis
	// keeps the first value (SET NX GET; see the package doc).
	FleetLoad time.Duration

	// Logger receives the bridge's state changes. Default slog.Default().
	Logger *slog.Logger
}

// maxName is the longest cache name (cache.MaxNameLen's value).
const maxName = 48

func (c Config) withDefaults() (Config, error) {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.PingEvery == 0 {
		c.PingEvery = DefaultPingEvery
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("bridge: %w: %s %v %s", ErrInvalidConfig, field, v, why)
	}
	switch {
	case c.Addr == "":
		return c, fmt.Errorf("bridge: %w: Addr is empty", ErrInvalidConfig)
	case c.PingEvery < 0:
		return c, bad("PingEvery", c.PingEvery, "is negative")
	case c.Timeout < 0:
		return c, bad("Timeout", c.Timeout, "is negative")
	case c.DB < 0:
		return c, bad("DB", c.DB, "is negative")
	case c.FleetLoad < 0:
		return c, bad("FleetLoad", c.FleetLoad, "is negative")
	case strings.ContainsAny(c.Namespace, "*?[]\\#"):
		return c, bad("Namespace", fmt.Sprintf("%q", c.Namespace), "has one of * ? [ ] \\ #")
	}
	seen := map[string]bool{}
	for _, n := range c.Caches {
		if !validName(n) {
			return c, bad("Caches", fmt.Sprintf("%q", n), "is not 1 to 48 bytes of letters, digits, '_', '-' and '.'")
		}
		if seen[n] {
			return c, bad("Caches", fmt.Sprintf("%q", n), "is named twice")
		}
		seen[n] = true
	}
	return c, nil
}

// Validate reports the first field of c (with defaults applied) that is out
// of range, as an error wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

func validName(n string) bool {
	if len(n) == 0 || len(n) > maxName {
		return false
	}
	for _, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

// State is the tracking connection's state.
type State string

// States.
const (
	StateConnecting State = "connecting" // never connected yet
	StateUp         State = "up"         // tracking: invalidations arrive
	StateDown       State = "down"       // lost: every distributed entry was marked stale; reconnecting
	StateClient     State = "client"     // a Bridge without tracking (Open without Track: a worker's)
)

// Stats are a bridge's state and counters.
type Stats struct {
	State         State     `json:"state"`
	Since         time.Time `json:"since"`           // when State began
	Addr          string    `json:"addr"`            // Config.Addr
	Error         string    `json:"error,omitempty"` // why it is down
	Invalidations uint64    `json:"invalidations"`   // keys invalidated by Redis (the own writes' included)
	Flushes       uint64    `json:"flushes"`         // invalidations of everything: a FLUSHALL, a lost connection, a (re)connect
	Reconnects    uint64    `json:"reconnects"`      // connections made after the first
	Messages      uint64    `json:"messages"`        // pub/sub messages received
}

// Target is what the tracking connection changes: the host's distributed
// caches (package cluster2 passes one that calls the cache space's
// cache.Cache.Invalidate and cache.Cache.InvalidateAll). Its methods are
// called from the bridge's goroutines, one at a time, and must be quick.
type Target interface {
	// Invalidate says that key of the distributed cache named cache
	// changed in Redis (or expired, or was evicted there).
	Invalidate(cache, key string)

	// InvalidateAll says that every entry of every distributed cache may be
	// stale: the connection was lost (invalidations may have been missed),
	// it was made again, or Redis flushed its data.
	InvalidateAll()

	// Tracking says whether every change in Redis reaches Invalidate from
	// now on (on: called after the InvalidateAll of a new connection) or
	// may be missed (off: called before the InvalidateAll of a lost one,
	// and when tracking stops). Package cache keeps a value read from Redis
	// only as stale while it is off (cache.Space.BeginTracking).
	Tracking(on bool)
}

// Bridge is a host's connection to Redis. In the master (Track) it holds the
// tracking connection, which turns Redis's invalidations into the arena's
// deletes, and the pub/sub subscriptions; in every process it is the client
// the distributed caches' misses and writes use. It is safe for concurrent
// use.
type Bridge struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	client  rueidis.Client // nil until a connection was made once
	state   State
	since   time.Time
	lastErr string
	subs    map[string]map[*subscription]struct{}
	dc      rueidis.DedicatedClient // the tracking connection while up
	target  Target
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
	prefix  []string // the tracked prefixes, one per distributed cache
	tracked bool     // Track was called

	up            atomic.Bool
	failUntil     atomic.Int64 // unix ns: commands fail at once until then (fastFail)
	invalidations atomic.Uint64
	flushes       atomic.Uint64
	reconnects    atomic.Uint64
	messages      atomic.Uint64
}

type subscription struct {
	fn func([]byte)
}

// Open returns a Bridge to cfg.Addr. It does not wait for Redis: the
// connection is made on first use and again after a failure, so a Redis
// that is down at Open is no error (calls wrap ErrRedisDown until it is
// up). Its error is a bad Config's.
func Open(cfg Config) (*Bridge, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger, state: StateClient, since: time.Now(), subs: map[string]map[*subscription]struct{}{}}
	for _, n := range cfg.Caches {
		b.prefix = append(b.prefix, cfg.Namespace+n+":")
	}
	return b, nil
}

// Config returns the bridge's configuration, defaults applied.
func (b *Bridge) Config() Config { return b.cfg }

// newClient makes the rueidis client. It dials once: a Redis that is down
// still gives a client (ForceSingleClient), which dials again on use.
func (b *Bridge) newClient() rueidis.Client {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{b.cfg.Addr},
		Username:          b.cfg.Username,
		Password:          b.cfg.Password,
		SelectDB:          b.cfg.DB,
		ForceSingleClient: true,
		DisableCache:      true, // the arena is the client-side cache; the tracking connection is ours (Track)
		Dialer:            netDialer(b.cfg.Timeout),
		ConnWriteTimeout:  max(b.cfg.Timeout, 100*time.Millisecond) * 4,
		ClientName:        "cluster2",
	})
	if c == nil {
		// Only a bad option makes no client: a programming error here.
		panic(fmt.Sprintf("bridge: rueidis.NewClient: %v", err))
	}
	return c
}

// Client returns the rueidis client of the bridge (made on the first call):
// for commands the bridge does not make itself. Its commands go to the
// server the bridge uses; close the Bridge, not the client.
func (b *Bridge) Client() (rueidis.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if b.client == nil {
		b.client = b.newClient()
	}
	return b.client, nil
}

// ctx bounds ctx by the configured Timeout.
func (b *Bridge) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < b.cfg.Timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, b.cfg.Timeout)
}

// down wraps a Redis error as ErrRedisDown unless Redis answered it (a
// RedisError: the server is up and said no), except LOADING: a Redis that
// restarted and is still loading its append-only file or snapshot answers
// every data command so, and is down for us until it has loaded.
func down(op string, err error) error {
	if err == nil {
		return nil
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) && !re.IsLoading() { // LOADING: a restarted Redis replaying its file is not up yet
		return fmt.Errorf("bridge: %s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrRedisDown, op, err)
}

// Publish sends msg on channel to every host's subscribers (Subscribe),
// this host's included, through Redis's pub/sub: at most once, and only to
// the hosts connected now. It returns an error wrapping ErrRedisDown when
// Redis cannot be reached.
func (b *Bridge) Publish(ctx context.Context, channel string, msg []byte) error {
	c, err := b.Client()
	if err != nil {
		return err
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	return down("publish", c.Do(ctx, c.B().Publish().Channel(channel).Message(rueidis.BinaryString(msg)).Build()).Error())
}

// Subscribe calls fn with every message published on channel (by any host's
// Publish, or any Redis client's PUBLISH) while the bridge's tracking
// connection is up; it needs Track. Messages published while it is down are
// lost (pub/sub keeps nothing); the subscription is made again on every
// reconnect. fn is called from one goroutine, in order, and must not block
// for long. The returned func ends the subscription.
func (b *Bridge) Subscribe(channel string, fn func([]byte)) (cancel func()) {
	s := &subscription{fn: fn}
	b.mu.Lock()
	first := len(b.subs[channel]) == 0
	if first {
		b.subs[channel] = map[*subscription]struct{}{}
	}
	b.subs[channel][s] = struct{}{}
	dc := b.dc
	b.mu.Unlock()
	if first && dc != nil {
		b.command(dc, dc.B().Subscribe().Channel(channel).Build())
	}
	return func() {
		b.mu.Lock()
		delete(b.subs[channel], s)
		last := len(b.subs[channel]) == 0
		if last {
			delete(b.subs, channel)
		}
		dc := b.dc
		b.mu.Unlock()
		if last && dc != nil {
			b.command(dc, dc.B().Unsubscribe().Channel(channel).Build())
		}
	}
}

// command runs cmd on the tracking connection; a failure is the ping loop's
// to notice.
func (b *Bridge) command(dc rueidis.DedicatedClient, cmd rueidis.Completed) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	defer cancel()
	if err := dc.Do(ctx, cmd).Error(); err != nil {
		b.log.Warn("bridge: tracking connection", "err", err)
	}
}

// onMessage delivers one pub/sub message.
func (b *Bridge) onMessage(m rueidis.PubSubMessage) {
	b.messages.Add(1)
	b.mu.Lock()
	var fns []func([]byte)
	for s := range b.subs[m.Channel] {
		fns = append(fns, s.fn)
	}
	b.mu.Unlock()
	msg := []byte(m.Message)
	for _, fn := range fns {
		fn(msg)
	}
}

// Track makes b the host's tracking bridge (the master's): it connects to
// Redis, turns on CLIENT TRACKING in BCAST mode for the distributed caches'
// prefixes on a connection of its own, and keeps it: a lost connection or a
// failed PING marks every distributed entry stale (t.InvalidateAll) and
// reconnects with a back-off (100 ms doubling to 2 s); a new connection
// tracks again, subscribes again and marks every entry stale once more
// (Redis forgets a client's tracking with its connection: redis/redis
// #11767). Track returns at once; Close stops it. A Bridge tracks once: a
// second call does nothing.
func (b *Bridge) Track(t Target) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tracked || b.closed {
		return
	}
	b.tracked, b.target = true, t
	b.setState(StateConnecting, "")
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.done = cancel, make(chan struct{})
	go b.run(ctx)
}

// setState records a state change; the caller holds b.mu.
func (b *Bridge) setState(s State, why string) {
	if b.state != s {
		b.state, b.since = s, time.Now()
	}
	b.lastErr = why
	b.up.Store(s == StateUp)
}

// Up reports whether the tracking connection is up now (always false
// without Track).
func (b *Bridge) Up() bool { return b.up.Load() }

// Stats returns the bridge's state and counters.
func (b *Bridge) Stats() Stats {
	b.mu.Lock()
	st := Stats{State: b.state, Since: b.since, Addr: b.cfg.Addr, Error: b.lastErr}
	b.mu.Unlock()
	st.Invalidations = b.invalidations.Load()
	st.Flushes = b.flushes.Load()
	st.Reconnects = b.reconnects.Load()
	st.Messages = b.messages.Load()
	return st
}

// Close stops tracking, ends the subscriptions and closes the client. Calls
// after it return ErrClosed.
func (b *Bridge) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cancel, done := b.cancel, b.done
	b.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	b.mu.Lock()
	c := b.client
	b.client = nil
	b.mu.Unlock()
	if c != nil {
		c.Close()
	}
	return nil
}

// run is the tracking loop: connect, track, ping until a failure, mark
// everything stale, back off, again.
func (b *Bridge) run(ctx context.Context) {
	defer close(b.done)
	defer b.tracking(false)
	back := backoff.Backoff{First: 100 * time.Millisecond, Factor: 2, Max: 2 * time.Second}
	connected := false
	for ctx.Err() == nil {
		err := b.session(ctx, connected, &back)
		if ctx.Err() != nil {
			return
		}
		connected = connected || errors.Is(err, errWasUp)
		b.tracking(false)
		b.flushAll() // invalidations may have been missed: nothing distributed is trusted
		b.mu.Lock()
		if b.state != StateDown && b.state != StateConnecting || b.lastErr == "" {
			b.log.Warn("bridge: redis is down: distributed entries are marked stale; reconnecting", "addr", b.cfg.Addr, "err", err)
		}
		if connected {
			b.setState(StateDown, err.Error())
		} else {
			b.setState(StateConnecting, err.Error())
		}
		b.mu.Unlock()
		xtime.SleepCtx(ctx, back.Next())
	}
}

// checkVersion returns an error wrapping ErrRedisTooOld when the Redis dc
// talks to is older than MinRedisVersion (INFO server's redis_version).
func (b *Bridge) checkVersion(ctx context.Context, dc rueidis.DedicatedClient) error {
	tctx, cancel := b.ctx(ctx)
	defer cancel()
	info, err := dc.Do(tctx, dc.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return fmt.Errorf("info server: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			if versionBelow(v, MinRedisVersion) {
				return fmt.Errorf("%w: redis %s at %s, the bridge needs %s or later", ErrRedisTooOld, v, b.cfg.Addr, MinRedisVersion)
			}
			return nil
		}
	}
	return nil // no version said (a proxy, a fork): trust it
}

// versionBelow reports whether dotted version v is below min (numeric
// parts compared in order; a missing or non-numeric part counts as 0).
func versionBelow(v, min string) bool {
	a, m := strings.Split(v, "."), strings.Split(min, ".")
	for i := range max(len(a), len(m)) {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(m) {
			y, _ = strconv.Atoi(m[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// errWasUp wraps the error that ended a session that had been up.
var errWasUp = errors.New("was up")

// session makes one tracking connection and keeps it until it fails; its
// error says why (wrapping errWasUp if it had been up).
func (b *Bridge) session(ctx context.Context, connectedBefore bool, back *backoff.Backoff) error {
	c, err := b.Client()
	if err != nil {
		return err
	}
	dc, release := c.Dedicate()
	defer release()
	if err := b.checkVersion(ctx, dc); err != nil {
		return err
	}
	// SetOnInvalidations keeps the pub/sub hook and replaces its error
	// channel (the first one closes): the second is the connection's.
	dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onMessage})
	lost := dc.SetOnInvalidations(b.onInvalidations)
	if len(b.prefix) > 0 {
		args := []string{"BCAST"}
		for _, p := range b.prefix {
			args = append(args, "PREFIX", p)
		}
		tctx, cancel := b.ctx(ctx)
		err := dc.Do(tctx, dc.B().Arbitrary("CLIENT", "TRACKING", "ON").Args(args...).Build()).Error()
		cancel()
		if err != nil {
			return fmt.Errorf("client tracking: %w", err)
		}
	}
	b.mu.Lock()
	var chans []string
	for ch := range b.subs {
		chans = append(chans, ch)
	}
	b.mu.Unlock()
	if len(chans) > 0 {
		tctx, cancel := b.ctx(ctx)
		err := dc.Do(tctx, dc.B().Subscribe().Channel(chans...).Build()).Error()
		cancel()
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	if err := b.ping(ctx, dc); err != nil {
		return err
	}
	// Tracking is on: what the arena holds from before (loaded while no
	// invalidation could arrive) is revalidated, and from now on what a
	// load reads from Redis is kept fresh.
	b.flushAll()
	b.tracking(true)
	b.failUntil.Store(0) // Redis answers: a miss or a write need not wait out an earlier failure
	b.mu.Lock()
	b.dc = dc
	b.setState(StateUp, "")
	b.mu.Unlock()
	if connectedBefore {
		b.reconnects.Add(1)
	}
	b.log.Info("bridge: tracking", "addr", b.cfg.Addr, "prefixes", strings.Join(b.prefix, " "))
	back.Reset()
	defer func() {
		b.mu.Lock()
		b.dc = nil
		b.mu.Unlock()
	}()
	t := time.NewTicker(b.cfg.PingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-lost:
			if err == nil {
				err = errors.New("connection closed")
			}
			return fmt.Errorf("%w: %w", errWasUp, err)
		case <-t.C:
			if err := b.ping(ctx, dc); err != nil {
				return fmt.Errorf("%w: %w", errWasUp, err)
			}
		}
	}
}

func (b *Bridge) ping(ctx context.Context, dc rueidis.DedicatedClient) error {
	pctx, cancel := b.ctx(ctx)
	defer cancel()
	if err := dc.Do(pctx, dc.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// onInvalidations receives the tracking connection's invalidations: keys,
// or nil for everything (a FLUSHALL, or the connection closing).
func (b *Bridge) onInvalidations(msgs []rueidis.RedisMessage) {
	if msgs == nil {
		b.flushAll()
		return
	}
	b.mu.Lock()
	t := b.target
	b.mu.Unlock()
	for _, m := range msgs {
		k, err := m.ToString()
		if err != nil {
			continue
		}
		b.invalidations.Add(1)
		if name, key, ok := b.parse(k); ok && t != nil {
			t.Invalidate(name, key)
		}
	}
}

// tracking tells the target whether tracking is on (Target.Tracking).
func (b *Bridge) tracking(on bool) {
	b.mu.Lock()
	t := b.target
	b.mu.Unlock()
	if t != nil {
		t.Tracking(on)
	}
}

// flushAll tells the target that nothing distributed can be trusted.
func (b *Bridge) flushAll() {
	b.flushes.Add(1)
	b.mu.Lock()
	t := b.target
	b.mu.Unlock()
	if t != nil {
		t.InvalidateAll()
	}
}

// Key returns the Redis key of key in the distributed cache named cache.
func (b *Bridge) Key(cache, key string) string { return b.cfg.Namespace + cache + ":" + key }

// parse splits a Redis key of a distributed cache into its cache's name and
// the key, or reports false for a key of no distributed cache.
func (b *Bridge) parse(k string) (cache, key string, ok bool) {
	rest, ok := strings.CutPrefix(k, b.cfg.Namespace)
	if !ok {
		return "", "", false
	}
	cache, key, ok = strings.Cut(rest, ":")
	return cache, key, ok && len(key) > 0
}

// netDialer bounds a dial by timeout and probes idle connections every
// second.
func netDialer(timeout time.Duration) net.Dialer {
	return net.Dialer{Timeout: timeout, KeepAlive: time.Second}
}
