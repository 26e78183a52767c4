package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/redis/rueidis"
)

// The fleet-wide load lock (Config.FleetLoad).
//
// The lock of key K of cache C is the Redis key <Namespace>C!K: outside the
// tracked prefix <Namespace>C: (taking or releasing it invalidates nothing)
// and outside Clear's patterns (it expires by itself). Its value is a random
// token of the holder's load, so that the release (compare-and-delete, one
// script) never removes a lock another host took after this one's expired.
//
// What a crash leaves: a holder killed while its loader runs leaves its lock
// until FleetLoad passes; the hosts waiting on it poll Redis until then and
// then take it (or give up waiting and load themselves: the same bound).
// Nothing is stored under the lock key but the token: no value can be lost
// or torn by it, and a lock that fails (Redis down) only means the loader
// may run on two hosts at once, as without the option.

// Load-lock polling: the first wait, and the longest.
const (
	lockPollFirst = 2 * time.Millisecond
	lockPollMax   = 50 * time.Millisecond
)

// unlockScript deletes the lock KEYS[1] if it still holds the token ARGV[1].
var unlockScript = rueidis.NewLuaScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// lockKey is the Redis key of the load lock of key in cache name.
func (b *Bridge) lockKey(name, key string) string { return b.cfg.Namespace + name + "!" + key }

// LockLoad is cache.LoadLocker's: with Config.FleetLoad it takes key's load
// lock (unlock releases it) or, while another host holds it, waits for the
// value to reach Redis (found), up to FleetLoad; after that wait it returns
// neither (the caller loads without the lock). Without FleetLoad it returns
// neither at once.
func (b *Bridge) LockLoad(ctx context.Context, name, key string) (v []byte, ttl time.Duration, found bool, unlock func(), err error) {
	if b.cfg.FleetLoad == 0 {
		return nil, 0, false, nil, nil
	}
	c, err := b.Client()
	if err != nil {
		return nil, 0, false, nil, err
	}
	var raw [16]byte
	rand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	lk := b.lockKey(name, key)
	ms := max(b.cfg.FleetLoad.Milliseconds(), 1)
	give := time.Now().Add(b.cfg.FleetLoad)
	wait := lockPollFirst
	k := b.Key(name, key)
	for {
		// One round trip: take the lock, and read the value (another
		// host's load may have stored it since our miss). (Commands are
		// built for each call: rueidis recycles them after.)
		res, err := b.do(ctx, "load lock", c.B().Set().Key(lk).Value(token).Nx().PxMilliseconds(ms).Build(),
			c.B().Get().Key(k).Build(), c.B().Pttl().Key(k).Build())
		if err != nil {
			return nil, 0, false, nil, err
		}
		locked := res[0].Error() == nil // else nil: another host holds it
		v, ttl, found, err := valueOf("load lock", res[1], res[2])
		switch {
		case err != nil || found:
			if locked {
				b.unlockLoad(lk, token)
			}
			return v, ttl, found, nil, err
		case locked:
			return nil, 0, false, func() { b.unlockLoad(lk, token) }, nil
		case time.Now().After(give):
			return nil, 0, false, nil, nil
		}
		if err := xtime.SleepCtx(ctx, wait); err != nil {
			return nil, 0, false, nil, err
		}
		wait = min(2*wait, lockPollMax)
	}
}

// unlockLoad releases the load lock lk if it still holds token, within the
// bridge's Timeout (the load's context may have ended). A failure leaves
// the lock to expire.
func (b *Bridge) unlockLoad(lk, token string) {
	c, err := b.Client()
	if err != nil {
		return
	}
	ctx, cancel := b.ctx(context.Background())
	defer cancel()
	if err := unlockScript.Exec(ctx, c, []string{lk}, []string{token}).Error(); err != nil {
		b.log.Debug("bridge: releasing a load lock", "key", lk, "err", err)
	}
}

var _ cache.LoadLocker = (*Bridge)(nil)
