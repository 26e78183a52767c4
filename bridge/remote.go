package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/cluster2/cluster2/cache"
)

// The second tier of the distributed caches (cache.Remote), in Redis:
//
//	<Namespace><cache>:<key>    the value (a string), with the entry's TTL (PX)
//	<Namespace><cache>#<tag>    a set of the value keys stored with tag,
//	                            expiring with its longest-lived member
//	                            (setTaggedScript)
//
// Only the values are under the tracked prefixes (<Namespace><cache>:): a
// tag set's changes invalidate nothing. Cache names have no '#' and no ':'
// (Config.Caches), so no tag set is under another cache's prefix.

// fastFail is how long after a connection error the bridge's commands fail
// at once with ErrRedisDown rather than dial again: a Redis that is down
// costs a miss or a write nothing but the error.
const fastFail = 250 * time.Millisecond

// Attach makes the caches of Config.Caches distributed in sp, with b as
// their second tier (cache.Space.Distribute): every process of the cluster
// attaches its own Bridge (package cluster2 does it in each).
func (b *Bridge) Attach(sp *cache.Space) error {
	for _, n := range b.cfg.Caches {
		if err := sp.Distribute(n, b); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
	}
	return nil
}

// Target returns the Target that applies the tracking connection's
// invalidations to sp's distributed caches (cache.Cache.Invalidate and
// InvalidateAll) and its state to sp's tracking epoch
// (cache.Space.BeginTracking): the master passes it to Track. It ends the
// epoch a tracker before it may have left running (killed while tracking).
func (b *Bridge) Target(sp *cache.Space) Target {
	sp.EndTracking(0)
	return &spaceTarget{b: b, sp: sp}
}

// spaceTarget is Target on a cache space.
type spaceTarget struct {
	b  *Bridge
	sp *cache.Space

	mu    sync.Mutex
	h     map[string]*cache.Cache // handles of the distributed caches some process created
	epoch uint64                  // the tracking epoch this target began (0: none)
}

func (t *spaceTarget) Tracking(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		t.epoch = t.sp.BeginTracking()
		return
	}
	if t.epoch != 0 {
		t.sp.EndTracking(t.epoch)
		t.epoch = 0
	}
}

// handle returns the master's handle of the distributed cache name, or nil
// while no process created it (nothing to invalidate).
func (t *spaceTarget) handle(name string) *cache.Cache {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.h[name]; c != nil {
		return c
	}
	opts, ok := t.sp.Lookup(name)
	if !ok {
		return nil
	}
	c, err := t.sp.Use(name, opts)
	if err != nil {
		t.b.log.Error("bridge: cannot open a distributed cache to invalidate it", "cache", name, "err", err)
		return nil
	}
	if t.h == nil {
		t.h = map[string]*cache.Cache{}
	}
	t.h[name] = c
	return c
}

func (t *spaceTarget) Invalidate(name, key string) {
	if c := t.handle(name); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Invalidate(ctx, key); err != nil {
			t.b.log.Error("bridge: invalidate", "cache", name, "key", key, "err", err)
		}
	}
}

func (t *spaceTarget) InvalidateAll() {
	for _, n := range t.b.cfg.Caches {
		if c := t.handle(n); c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := c.InvalidateAll(ctx); err != nil {
				t.b.log.Error("bridge: invalidate all", "cache", n, "err", err)
			}
			cancel()
		}
	}
}

// do runs cmds (pipelined) with the bridge's bound, failing fast while a
// connection error is recent.
func (b *Bridge) do(ctx context.Context, op string, cmds ...rueidis.Completed) ([]rueidis.RedisResult, error) {
	return b.round(ctx, op, func(ctx context.Context, c rueidis.Client) []rueidis.RedisResult {
		return c.DoMulti(ctx, cmds...)
	})
}

// round is do's frame around send (the commands of one round trip): the
// fast fail, the bound, and the first error of its results, as down wraps
// it (a connection error starts the fast fail).
func (b *Bridge) round(ctx context.Context, op string, send func(context.Context, rueidis.Client) []rueidis.RedisResult) ([]rueidis.RedisResult, error) {
	if until := b.failUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return nil, fmt.Errorf("%w: %s: redis at %s failed less than %v ago", ErrRedisDown, op, b.cfg.Addr, fastFail)
	}
	c, err := b.Client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	res := send(ctx, c)
	for _, r := range res {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			err = down(op, err)
			if errors.Is(err, ErrRedisDown) {
				b.failUntil.Store(time.Now().Add(fastFail).UnixNano())
			}
			return nil, err
		}
	}
	return res, nil
}

// Get is cache.Remote's: GET and PTTL in one round trip.
func (b *Bridge) Get(ctx context.Context, name, key string) ([]byte, time.Duration, bool, error) {
	c, err := b.Client()
	if err != nil {
		return nil, 0, false, err
	}
	k := b.Key(name, key)
	res, err := b.do(ctx, "get", c.B().Get().Key(k).Build(), c.B().Pttl().Key(k).Build())
	if err != nil {
		return nil, 0, false, err
	}
	return valueOf("get", res[0], res[1])
}

// valueOf reads the replies of a GET and a PTTL of one key: its value and
// time left to live (0: none), or found false.
func valueOf(op string, get, pttl rueidis.RedisResult) ([]byte, time.Duration, bool, error) {
	v, err := get.AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, down(op, err)
	}
	var ttl time.Duration
	if ms, err := pttl.AsInt64(); err == nil && ms > 0 {
		ttl = time.Duration(ms) * time.Millisecond
	}
	return v, ttl, true, nil
}

// Set is cache.Remote's: SET (NX GET for onlyIfAbsent) with PX, in one
// round trip; a tagged Set is setTagged's script instead.
func (b *Bridge) Set(ctx context.Context, name, key string, value []byte, ttl time.Duration, tags []string, onlyIfAbsent bool) (bool, []byte, error) {
	if len(tags) > 0 {
		return b.setTagged(ctx, name, key, value, ttl, tags, onlyIfAbsent)
	}
	c, err := b.Client()
	if err != nil {
		return false, nil, err
	}
	k := b.Key(name, key)
	args := []string{"SET", k, rueidis.BinaryString(value)}
	if onlyIfAbsent {
		args = append(args, "NX", "GET")
	}
	if ttl > 0 {
		args = append(args, "PX", fmt.Sprint(pxMillis(ttl)))
	}
	res, err := b.do(ctx, "set", c.B().Arbitrary(args[0]).Keys(k).Args(args[2:]...).Build())
	if err != nil {
		return false, nil, err
	}
	if onlyIfAbsent {
		if old, err := res[0].AsBytes(); err == nil {
			return false, old, nil // the key had a value: it stays
		}
	}
	return true, value, nil
}

// pxMillis is ttl (> 0) in whole milliseconds, at least 1.
func pxMillis(ttl time.Duration) int64 { return max(ttl.Milliseconds(), 1) }

// setTaggedScript stores a tagged value and files it under its tags,
// atomically. KEYS[1] is the value's key, KEYS[2..] its tag sets; ARGV is
// the value, its TTL in ms ("0": none) and "1" for set-if-absent. A tag set
// lives as long as its longest-lived member may, and no longer: a member
// without TTL makes it persistent, one with TTL t gives a set that holds
// only this member exactly t and extends any other set to at least t
// (PEXPIRE GT: a persistent set, whose TTL GT takes as infinite, stays
// persistent; none is ever shortened). SCARD after SADD tells a new set
// (whose PTTL is -1 like a persistent one's) from the others.
//
// Replies: {0, old} when set-if-absent found a value (nothing changed), {1}
// when stored and tagged, {1, error} when stored but a tag set refused its
// member (a key that is no set: the tags after it are not filed). The SET
// comes first, so a refused SET (OOM, WRONGTYPE) is the script's error and
// changes nothing.
const setTaggedScript = `
local ttl = ARGV[2]
local set = {'SET', KEYS[1], ARGV[1]}
if ARGV[3] == '1' then table.insert(set, 'NX'); table.insert(set, 'GET') end
if ttl ~= '0' then table.insert(set, 'PX'); table.insert(set, ttl) end
local old = redis.call(unpack(set))
if ARGV[3] == '1' and old then return {0, old} end
for i = 2, #KEYS do
	local r = redis.pcall('SADD', KEYS[i], KEYS[1])
	if type(r) == 'table' and r.err then return {1, r} end
	if ttl == '0' then redis.call('PERSIST', KEYS[i])
	elseif redis.call('SCARD', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ttl)
	else redis.call('PEXPIRE', KEYS[i], ttl, 'GT') end
end
return {1}
`

// setTagged is setTaggedScript (EVALSHA, EVAL the first time a Redis has
// not seen it): one round trip for the value and every tag.
var setTagged = rueidis.NewLuaScript(setTaggedScript)

// setTagged is Set with tags. A tag step Redis refused returns stored with
// an error wrapping Redis's (the value is in Redis, its tags are not all).
func (b *Bridge) setTagged(ctx context.Context, name, key string, value []byte, ttl time.Duration, tags []string, onlyIfAbsent bool) (bool, []byte, error) {
	keys := make([]string, 1, 1+len(tags))
	keys[0] = b.Key(name, key)
	for _, t := range tags {
		keys = append(keys, b.tagKey(name, t))
	}
	px, nx := "0", "0"
	if ttl > 0 {
		px = fmt.Sprint(pxMillis(ttl))
	}
	if onlyIfAbsent {
		nx = "1"
	}
	args := []string{rueidis.BinaryString(value), px, nx}
	res, err := b.round(ctx, "set", func(ctx context.Context, c rueidis.Client) []rueidis.RedisResult {
		return []rueidis.RedisResult{setTagged.Exec(ctx, c, keys, args)}
	})
	if err != nil {
		return false, nil, err
	}
	reply, err := res[0].ToArray()
	if err != nil || len(reply) == 0 {
		return false, nil, fmt.Errorf("bridge: set: %w: %v", errScriptReply, err)
	}
	if stored, _ := reply[0].AsInt64(); stored == 0 {
		old, err := reply[1].AsBytes()
		if err != nil {
			return false, nil, fmt.Errorf("bridge: set: %w: %v", errScriptReply, err)
		}
		return false, old, nil // the key had a value: it stays
	}
	if len(reply) > 1 {
		return true, value, down("set: tags", reply[1].Error()) // stored, but its tags are not: say so
	}
	return true, value, nil
}

// errScriptReply is what a script's reply of an unexpected shape is.
var errScriptReply = errors.New("unexpected script reply")

// Del is cache.Remote's: UNLINK.
func (b *Bridge) Del(ctx context.Context, name, key string) error {
	c, err := b.Client()
	if err != nil {
		return err
	}
	_, err = b.do(ctx, "del", c.B().Unlink().Key(b.Key(name, key)).Build())
	return err
}

// InvalidateTag is cache.Remote's: the tag's set's members are unlinked and
// removed from it (a key added meanwhile stays in the set for the next
// one).
func (b *Bridge) InvalidateTag(ctx context.Context, name, tag string) ([]string, error) {
	c, err := b.Client()
	if err != nil {
		return nil, err
	}
	tk := b.tagKey(name, tag)
	res, err := b.do(ctx, "invalidate tag", c.B().Smembers().Key(tk).Build())
	if err != nil {
		return nil, err
	}
	members, err := res[0].AsStrSlice()
	if err != nil || len(members) == 0 {
		return nil, down("invalidate tag", err)
	}
	if _, err := b.do(ctx, "invalidate tag", c.B().Unlink().Key(members...).Build(), c.B().Srem().Key(tk).Member(members...).Build()); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(members))
	for _, m := range members {
		if _, key, ok := b.parse(m); ok {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// Clear is cache.Remote's: SCAN for the cache's values and tag sets, and
// UNLINK them, a batch per round trip. A key stored meanwhile may stay.
func (b *Bridge) Clear(ctx context.Context, name string) error {
	c, err := b.Client()
	if err != nil {
		return err
	}
	for _, pattern := range []string{globEscape(b.cfg.Namespace+name) + ":*", globEscape(b.cfg.Namespace+name) + "#*"} {
		var cursor uint64
		for {
			res, err := b.do(ctx, "clear", c.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build())
			if err != nil {
				return err
			}
			e, err := res[0].AsScanEntry()
			if err != nil {
				return down("clear", err)
			}
			if len(e.Elements) > 0 {
				if _, err := b.do(ctx, "clear", c.B().Unlink().Key(e.Elements...).Build()); err != nil {
					return err
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// LocalWrites is cache.Remote's: Config.LocalWrites.
func (b *Bridge) LocalWrites() bool { return b.cfg.LocalWrites }

// tagKey is the Redis key of the set of cache name's keys with tag.
func (b *Bridge) tagKey(name, tag string) string { return b.cfg.Namespace + name + "#" + tag }

// globEscape escapes SCAN MATCH's special characters.
func globEscape(s string) string {
	var out strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			out.WriteByte('\\')
		}
		out.WriteRune(r)
	}
	return out.String()
}

var _ cache.Remote = (*Bridge)(nil)
