package persist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/backoff"
	"github.com/cluster2/cluster2/internal/xtime"
)

// Options configure a LogWriter. The zero value is valid.
type Options struct {
	// Durability is the cluster's default for persistent caches that do not
	// choose their own. Default (zero): DefaultDurability (EverySecond).
	Durability Durability

	// Salvage, on damage before the log's durable end, a missing segment,
	// snapshot or checkpoint, keeps what comes before it and moves the rest
	// into DIR/salvaged-<time>/ (reported in Recovery) instead of refusing
	// to start. Default false: start-up stops with the file and offset.
	Salvage bool

	// SegmentSize is the size in bytes to which each log segment file is
	// preallocated (a batch larger than it gets a segment of its own size).
	// Default 16 MiB.
	SegmentSize int

	// CompactRatio and CompactMin: a snapshot replaces the log once the log
	// holds more than CompactRatio times the live bytes and at least
	// CompactMin bytes. Defaults 4 and 16 MiB.
	CompactRatio float64
	CompactMin   int64

	// RetryMin and RetryMax bound the back-off of Run's retries while the
	// log cannot be written (see Run). Defaults 50 ms and 1 s.
	RetryMin, RetryMax time.Duration

	// Logger receives recovery reports and errors. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Durability == DurabilityDefault {
		o.Durability = DefaultDurability
	}
	if o.Durability > Always {
		return o, fmt.Errorf("persist: %w: Durability %d", ErrInvalidConfig, o.Durability)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = 16 << 20
	}
	if o.CompactRatio == 0 {
		o.CompactRatio = 4
	}
	if o.CompactMin == 0 {
		o.CompactMin = 16 << 20
	}
	if o.SegmentSize < 0 || o.CompactRatio < 1 || o.CompactMin < 0 {
		return o, fmt.Errorf("persist: %w: SegmentSize %d, CompactRatio %v, CompactMin %d", ErrInvalidConfig, o.SegmentSize, o.CompactRatio, o.CompactMin)
	}
	if o.RetryMin <= 0 {
		o.RetryMin = defaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = defaultRetryMax
	}
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Recovery reports what Open and Replay found.
type Recovery struct {
	SnapshotIndex   uint64 // the log index the snapshot covers (0: no snapshot)
	SnapshotEntries int    // records read from the snapshot
	LogEntries      int    // log records replayed after the snapshot
	TornBytes       int64  // bytes a torn write left past the durable end, cut off the log (kept in DIR/salvaged-<time>/)
	TornFile        string
	Salvaged        error // the damage Salvage moved aside, with everything after it (nil if none)

	// Legacy: the directory was written by a release before checkpoints (no
	// checkpoint sidecar, no checkpoint slot in any segment, no lock file of
	// this release). Open recovered it by that release's rule (the log ends
	// at the first zero byte where an entry should start; a torn tail is cut)
	// and wrote its checkpoint: from the next Open on, the new rule holds.
	Legacy bool
}

// LogWriter is the log writer of a cache space: it owns the write-ahead log
// and the snapshot of a data directory, and copies the space's journal into
// the log. Open it, Replay the log into a cache space before the workers
// start (or Resume the role on a running space), then Run it. A LogWriter is
// safe for concurrent use; one process at a time may open a directory (Open
// takes a lock on it until Close). The master runs one (Cache.Mode master),
// or the cache manager process does (standalone).
type LogWriter struct {
	dir  string
	opts Options
	log  *segLog
	rec  Recovery

	j Journal // the space's log side, given to Replay or Resume
	p Cursor  // the journal reader, from j.Attach

	mu        sync.Mutex         // serialises log writes and snapshots
	caches    []cacheInfo        // by cache id (Record.Cache): what info found
	rs        *runState          // the run read is counting for (under mu)
	logRec    func(Record) error // logRecord, made once (see read)
	sinceSnap int64              // log bytes written since the last snapshot
	closed    bool
	settleT   *time.Timer // settles the checkpoint settleAfter after the last sync
	settling  sync.Mutex  // held by settle; Close takes it before mu

	lock     *os.File    // DIR/lock, flocked until Close
	lockPrev []byte      // what DIR/lock held before this Open (nil: nothing)
	sv       *salvageDir // where recovery moves what it drops
}

// settleAfter: a checkpoint that lags the durable end (the last sync's
// could only claim its data) is settled when no sync followed for this long.
// Under load the next sync's checkpoint settles it; an idle log pays one
// fdatasync of the checkpoint.
const settleAfter = 10 * time.Millisecond

// Open opens (creating if needed) the data directory dir: it refuses a
// directory other users can write to (ErrUnsafeDir), locks it (ErrLocked
// naming the holder's pid while another process has it open), checks the
// last log segment against the log's checkpoint, cuts what a torn write
// left past the durable end (reported in Recovery), fdatasyncs what is left
// and opens the log for appending. Damage before the durable end, or a
// missing segment or checkpoint, returns a *CorruptError, unless
// Options.Salvage; a directory written by the release before checkpoints
// is recovered by that release's rule and given a checkpoint (see the
// package doc, and Recovery.Legacy). The LogWriter holds the lock until Close.
func Open(dir string, opts Options) (*LogWriter, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, true, false); err != nil {
		return nil, err
	}
	waldir := filepath.Join(dir, "wal")
	if err := prepareDir(waldir, false, true); err != nil {
		return nil, err
	}
	lock, prev, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	m := &LogWriter{dir: dir, opts: o, lock: lock, lockPrev: prev, sv: &salvageDir{dir: dir}}
	if err := m.open(waldir, o.Salvage); err != nil {
		lock.Close()
		return nil, err
	}
	return m, nil
}

// open recovers the log in waldir (checkpoint, torn tail, gaps) and opens it
// for appending; salvage says whether damage may be salvaged (Open: the
// option; reopen: never).
func (m *LogWriter) open(waldir string, salvage bool) error {
	o := m.opts
	ck, nonce, err := readCheckpoint(waldir)
	strict, legacy := err == nil, false
	if err != nil {
		fresh, ferr := m.fresh(waldir)
		if ferr != nil {
			return ferr
		}
		if !fresh {
			var why string
			legacy, why, ferr = m.legacy(waldir, err)
			if ferr != nil {
				return ferr
			}
			if !legacy && errors.Is(err, errNoCheckpoint) {
				err = &CorruptError{File: filepath.Join(waldir, ckptName), Reason: "the checkpoint is missing while the log holds entries " +
					"(it says how far they are durable); this is not a directory of a release before checkpoints: " + why}
			}
			if !legacy && (!salvage || !errors.Is(err, ErrCorrupt)) {
				return err
			}
			if !legacy {
				m.salvaged(err)
			}
		}
		ck, nonce = checkpoint{}, 0
	}
	if legacy {
		// Until the checkpoint is durable, the lock file says why there
		// is none (an Open that fails or dies before leaves the note).
		if err := writeLock(m.lock, lockUpgrading); err != nil {
			return fmt.Errorf("persist: lock: %w", err)
		}
	}
	if strict {
		// The newest slot may be in the tail of the last segment.
		segs, err := segments(waldir)
		if err != nil {
			return fmt.Errorf("persist: %w", err)
		}
		if n := len(segs); n > 0 {
			if t, ok := tailCheckpoint(segs[n-1], nonce); ok && t.seq > ck.seq {
				ck = t
			}
		}
	}
	cut, file, err := repairTail(waldir, ck, strict, legacy, nonce, m.sv)
	if err != nil {
		var ce *CorruptError
		if !salvage || !errors.As(err, &ce) {
			return err
		}
		if ce.cut {
			if _, kerr := m.sv.keepTail(ce.File, ce.Offset); kerr != nil {
				return kerr
			}
			if terr := truncateFile(ce.File, ce.Offset); terr != nil {
				return terr
			}
		}
		m.salvaged(err)
		if cut, file, err = repairTail(waldir, ck, false, false, nonce, m.sv); err != nil {
			return err
		}
	}
	if cut > 0 {
		m.rec.TornBytes, m.rec.TornFile = cut, file
		o.Logger.Warn("persist: cut a torn write past the log's durable end (never acknowledged)", "file", file, "bytes", cut, "kept", m.sv.path)
	}
	m.log, err = openLog(waldir, int64(o.SegmentSize), ck, nonce)
	if err != nil {
		return fmt.Errorf("persist: open log %s: %w", waldir, err)
	}
	if legacy {
		// openLog fdatasynced the log and wrote the checkpoint naming it
		// durable: the next Open holds the log to the new rule.
		m.rec.Legacy = true
		o.Logger.Warn("persist: the data directory was written by a release before checkpoints: recovered by that release's rule "+
			"(the log ends at the first zeros where an entry should start; a torn tail is cut and kept), which cannot tell damage "+
			"from a torn write; a checkpoint is written now, and from the next start damage before the log's durable end stops start-up",
			"dir", m.dir, "torn_bytes", cut)
		if err := writeLock(m.lock, ""); err != nil {
			return fmt.Errorf("persist: lock: %w", err)
		}
	}
	// From now on the lock file is this release's (a reopen that finds no
	// sidecar does not take the directory for an old one).
	m.lockPrev = []byte(strconv.Itoa(os.Getpid()) + "\n")
	return nil
}

// legacy reports whether the data directory, whose log has data but no
// usable checkpoint sidecar (ckErr from readCheckpoint), was provably
// written by the release before checkpoints: no sidecar, no checkpoint slot
// of any nonce in the tail of any segment (every sync of this release
// leaves one in the segment being written), and no lock file left by an
// Open of this release (the previous release made none; this one writes
// its pid into it at every Open, so a cleanly closed log, whose segments
// were cut back to their data, still shows it). A lock file noting an
// upgrade under way (lockUpgrading: an Open of the legacy directory failed
// or died) does not count against it, nor then a sidecar without a whole
// slot (a crash while it was being created). why says what showed the
// directory is not legacy.
func (m *LogWriter) legacy(waldir string, ckErr error) (ok bool, why string, err error) {
	upgrading := false
	if m.lockPrev != nil {
		_, note, _ := strings.Cut(string(m.lockPrev), "\n")
		if upgrading = strings.TrimSpace(note) == lockUpgrading; !upgrading {
			return false, fmt.Sprintf("its lock file %s shows this release opened it", filepath.Join(m.dir, "lock")), nil
		}
	}
	if !errors.Is(ckErr, errNoCheckpoint) && !(upgrading && errors.Is(ckErr, ErrCorrupt)) {
		return false, "", nil
	}
	segs, err := segments(waldir)
	if err != nil {
		return false, "", fmt.Errorf("persist: %w", err)
	}
	for _, s := range segs {
		f, err := openFile(s.path, os.O_RDONLY, 0)
		if err != nil {
			return false, "", fmt.Errorf("persist: %w", err)
		}
		st, err := f.Stat()
		b := make([]byte, tailLen)
		if err == nil && st.Size() >= tailLen {
			_, err = f.ReadAt(b, st.Size()-tailLen)
		}
		f.Close()
		if err != nil {
			return false, "", fmt.Errorf("persist: %w", err)
		}
		if _, _, found := newestSlot(b, 0, 0); found {
			return false, fmt.Sprintf("segment %s carries checkpoint slots", s.path), nil
		}
	}
	return true, "", nil
}

// tailCheckpoint returns the newest slot in the tail of segment s.
func tailCheckpoint(s segment, nonce uint64) (checkpoint, bool) {
	f, err := openFile(s.path, os.O_RDONLY, 0)
	if err != nil {
		return checkpoint{}, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return checkpoint{}, false
	}
	c, _, ok := readTail(f, st.Size(), nonce, s.index)
	return c, ok
}

// fresh reports whether the data directory holds nothing yet: no snapshot,
// no segment with data (a crash while creating the first segment leaves it
// empty, maybe without a checkpoint).
func (m *LogWriter) fresh(waldir string) (bool, error) {
	if _, err := os.Lstat(m.snapshotPath()); !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	segs, err := segments(waldir)
	if err != nil {
		return false, fmt.Errorf("persist: %w", err)
	}
	for _, s := range segs {
		if end, err := dataEnd(s.path); err != nil || end > 0 {
			return false, err
		}
	}
	return true, nil
}

// salvaged records and logs damage that Salvage dropped.
func (m *LogWriter) salvaged(err error) {
	m.rec.Salvaged = errors.Join(m.rec.Salvaged, err)
	m.opts.Logger.Warn("persist: salvaged the log: moved everything from the damage on aside", "err", err, "to", m.sv.path)
}

// Recovery returns what Open and Replay found.
func (m *LogWriter) Recovery() Recovery { return m.rec }

func (m *LogWriter) snapshotPath() string { return filepath.Join(m.dir, "snapshot") }

// Replay applies the snapshot and the log entries after it to the space of
// j, then makes this process its log writer from the journal's end on (Run
// logs what comes next). The master calls it once, on a fresh arena, before its workers
// start. Expired entries are not resurrected. Damage returns a *CorruptError
// naming the file and offset, unless Options.Salvage (then the log is cut
// there, reported).
func (m *LogWriter) Replay(ctx context.Context, j Journal) error {
	if err := m.replay(ctx, j); err != nil {
		return err
	}
	p, err := j.Attach(m.opts.Durability)
	if err != nil {
		return err
	}
	p.Logged(p.Skip())
	p.Durable(p.Position())
	m.j, m.p = j, p
	return nil
}

// Resume makes this process the log writer of j's space, whose journal
// survived a previous log writer (a cache manager process restarted by the
// master): Run goes on
// where that one had logged to. That one may have died between writing a
// batch and its fdatasync (the data is in the page cache, in the file):
// Resume fdatasyncs the log before it publishes anything as durable, so no
// Always writer waiting for that batch is released before a sync covers it.
func (m *LogWriter) Resume(j Journal) error {
	p, err := j.Attach(m.opts.Durability)
	if err != nil {
		return err
	}
	m.mu.Lock()
	start := time.Now()
	err = m.log.forceSync()
	m.mu.Unlock()
	if err != nil {
		p.Detach()
		return err
	}
	p.CountSync(time.Since(start))
	p.Durable(p.Position()) // everything the predecessor logged is in the file: now durable
	m.j, m.p = j, p
	return nil
}

// replay applies the snapshot, then the log from the entry after the
// snapshot's index on, checking that the segments follow each other without
// a gap (a missing segment, or a missing snapshot, is a *CorruptError).
func (m *LogWriter) replay(ctx context.Context, j Journal) error {
	r := &replayer{r: j.Restore(), defined: map[string]bool{}}
	defer r.r.Close()
	idx, n, err := readSnapshot(m.snapshotPath(), func(mu Mutation) error { return r.apply(ctx, mu) })
	if err != nil {
		return err
	}
	m.rec.SnapshotIndex, m.rec.SnapshotEntries = idx, n
	segs := append([]segment(nil), m.log.segs...)
	k := 0
	for k+1 < len(segs) && segs[k+1].index <= idx+1 {
		k++ // every entry of segs[k] is in the snapshot
	}
	for want, first := idx+1, true; k < len(segs); k, first = k+1, false {
		seg := segs[k]
		if seg.index > want || !first && seg.index != want {
			cerr := m.gap(seg, want, idx)
			if !m.opts.Salvage {
				return cerr
			}
			if err := m.log.dropFrom(k, -1, want, m.sv); err != nil {
				return fmt.Errorf("persist: salvage: %w (after %w)", err, cerr)
			}
			m.salvaged(cerr)
			return nil
		}
		end, salvaged, err := m.replaySegment(ctx, k, seg, idx, r)
		if err != nil || salvaged {
			return err
		}
		want = end
	}
	return nil
}

// gap describes the entries missing before seg.
func (m *LogWriter) gap(seg segment, want, snapIndex uint64) error {
	reason := fmt.Sprintf("entries %d to %d are missing before this segment (a segment was removed)", want, seg.index-1)
	if seg.index < want {
		reason = fmt.Sprintf("the segment starts at entry %d, but the one before it ends at entry %d (overlapping segments)", seg.index, want-1)
	} else if want == snapIndex+1 {
		if snapIndex == 0 {
			reason = fmt.Sprintf("the log starts at entry %d and there is no snapshot %s to hold the entries before it (it was removed?)", seg.index, m.snapshotPath())
		} else {
			reason = fmt.Sprintf("the snapshot %s covers entries up to %d and the log starts at entry %d (a segment was removed, or the snapshot replaced by an older one)",
				m.snapshotPath(), snapIndex, seg.index)
		}
	}
	return &CorruptError{File: seg.path, Offset: 0, Reason: reason}
}

// replaySegment applies the entries of segment k (seg) with indexes above
// after, and returns the index after its last entry.
func (m *LogWriter) replaySegment(ctx context.Context, k int, seg segment, after uint64, r *replayer) (end uint64, salvaged bool, err error) {
	f, err := openFile(seg.path, os.O_RDONLY, 0)
	if err != nil {
		return 0, false, fmt.Errorf("persist: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("persist: %w", err)
	}
	_, limit, _ := readTail(f, st.Size(), m.log.nonce, seg.index)
	er := newEntryReader(f, limit)
	for index := seg.index; ; index++ {
		b, off, err := er.next()
		if err == io.EOF {
			return index, false, nil
		}
		var mu Mutation
		if err == nil {
			mu, err = decodeRecord(b)
		}
		var cerr *CorruptError
		if err != nil {
			cerr = &CorruptError{File: seg.path, Offset: off, Reason: "bad entry: " + err.Error()}
		} else if index > after {
			if mu.Op != OpDefine && !r.defined[mu.Cache] {
				cerr = &CorruptError{File: seg.path, Offset: off,
					Reason: fmt.Sprintf("entry %d changes cache %q, which neither the snapshot nor the log before it defines (a snapshot or segment is missing?)", index, mu.Cache)}
			} else if aerr := r.apply(ctx, mu); aerr != nil {
				return 0, false, fmt.Errorf("persist: replay %s entry %d: %w", seg.path, index, aerr)
			} else {
				m.rec.LogEntries++
			}
		}
		if cerr == nil {
			continue
		}
		if !m.opts.Salvage {
			return 0, false, cerr
		}
		if terr := m.log.dropFrom(k, off, index, m.sv); terr != nil {
			return 0, false, fmt.Errorf("persist: salvage: %w (after %w)", terr, cerr)
		}
		m.salvaged(cerr)
		return index, true, nil
	}
}

// replayer applies a replay's mutations and remembers which caches it
// defined: a log entry of a cache defined by neither the snapshot nor the
// log before it is damage (a missing snapshot or segment).
type replayer struct {
	r       Restorer
	defined map[string]bool
}

func (r *replayer) apply(ctx context.Context, mu Mutation) error {
	if err := r.r.Apply(ctx, mu); err != nil {
		return err
	}
	if mu.Op == OpDefine {
		r.defined[mu.Cache] = true
	}
	return nil
}

// Run copies the journal's records of persistent caches into the log until
// ctx ends, fsyncing per durability and taking snapshots when the log grows.
// Call Replay or Resume first. Run returns only when ctx ends (nil once it
// logged and synced what the journal held, or the error that kept it from
// that).
//
// Run is the log writer's half of group commit (gather, below): the
// protocol, with the writers' half in package cache, is drawn in the
// package doc (# Group commit).
//
// A log that cannot be written (a full disk, an I/O error) does not stop
// Run. It marks the space failing at once (Cursor.SetFailing: Set
// and Del of persistent caches are refused with cache.ErrPersistFailing, and
// waiting Always writers return cache.ErrNotDurable), logs the error at
// ERROR, and lowers its read and logged positions to the last one it knows
// to be on disk (its last fsync). Then it retries, with a back-off doubling
// from Options.RetryMin to Options.RetryMax, to reopen the log (which cuts
// what a failed write left) and to log the journal from that position again
// (records are idempotent sets and deletes, so those logged twice replay to
// the same state), or, if the journal overwrote some of them meanwhile, to
// write a snapshot. Only once that is written and fsynced does it clear the
// failure: Sets are accepted again, and every change acknowledged before the
// failure (a Set that passed the check just before it) is in the log.
func (m *LogWriter) Run(ctx context.Context) error {
	p := m.p
	if p == nil {
		return fmt.Errorf("persist: %w: Run before Replay or Resume", ErrInvalidConfig)
	}
	defer p.Detach()
	rs := &runState{synced: p.Position(), lastSync: time.Now(), nextCheck: time.Now().Add(time.Second)}
	rs.pending = rs.synced
	// A predecessor that was failing left the space failing: this run
	// clears it once it has written and synced what the journal holds.
	rs.recovering = m.j.Stats().Failing != nil
	// What a predecessor (a cache manager process that died, maybe between a
	// write and its fdatasync) logged up to the resume position is in the
	// files but not known to be on disk: fsync it before anything is said
	// durable (the Always writers it left waiting are released here).
	m.mu.Lock()
	m.log.dirty = true
	err := m.syncLocked()
	m.mu.Unlock()
	if err != nil {
		if rerr := m.retry(ctx, rs, fmt.Errorf("persist: sync on resume: %w", err)); rerr != nil {
			return rerr
		}
	} else {
		p.Durable(p.Position())
	}
	for {
		err := m.run(ctx, rs)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			// Stopping: the log cannot take what the journal holds.
			m.opts.Logger.Error("persist: stopped with records the log could not take", "err", err, "dir", m.dir)
			return err
		}
		if rerr := m.retry(ctx, rs, err); rerr != nil {
			return rerr
		}
	}
}

// runState is Run's position between failures.
type runState struct {
	pending    uint64 // journal position up to which records are in the log
	synced     uint64 // journal position up to which records are fsynced (or belong to a Never cache)
	lastSync   time.Time
	nextCheck  time.Time
	always     int  // Always records read since the last fsync
	lastGroup  int  // Always records the last fsync carried
	needSecond bool // an EverySecond record waits for the next second's fsync
	recovering bool // the space is failing: clear it once caught up and synced
	lastErrno  syscall.Errno
}

// errnoOf returns err's errno, or 0.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	errors.As(err, &e)
	return e
}

// Back-off of Run's retries after a log error (Options.RetryMin, RetryMax).
const (
	defaultRetryMin = 50 * time.Millisecond
	defaultRetryMax = time.Second
)

// retry marks the space failing with cause, then reopens the log with
// back-off until it can (or ctx ends), and rewinds the journal reader to the
// last fsynced position: the next run logs from there and clears the failure
// once it has caught up.
func (m *LogWriter) retry(ctx context.Context, rs *runState, cause error) error {
	p := m.p
	// At ERROR before the space says failing; again only when the cause
	// changes (a retry that fails the same way every second is not news).
	if !rs.recovering || errnoOf(cause) != rs.lastErrno {
		m.opts.Logger.Error("persist: cannot write the log: Sets of persistent caches are refused until it can; retrying",
			"err", cause, "dir", m.dir)
	}
	rs.lastErrno = errnoOf(cause)
	p.SetFailing(cause)
	p.Rewind(rs.synced)
	rs.pending, rs.always, rs.lastGroup, rs.needSecond, rs.recovering = rs.synced, 0, 0, false, true
	back := backoff.Backoff{First: m.opts.RetryMin, Factor: 2, Max: m.opts.RetryMax}
	for {
		if xtime.SleepCtx(ctx, back.Next()) != nil {
			return fmt.Errorf("persist: stopped while the log could not be written: %w", cause)
		}
		err := m.reopen()
		if err == nil {
			return nil
		}
		if errnoOf(err) != rs.lastErrno {
			m.opts.Logger.Error("persist: the log still cannot be written", "err", err, "dir", m.dir)
			rs.lastErrno = errnoOf(err)
		}
		cause = err
		p.SetFailing(err) // the error /status shows is the latest
	}
}

// reopen closes the log and opens it again for appending, recovering it as
// Open does (its checkpoint, then cutting what a failed write left past the
// durable end), but never salvaging: damage before the durable end stays an
// error. The records logged since the last fsync are logged again by the
// caller. The directory lock stays held throughout.
func (m *LogWriter) reopen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log.close() // the error is the one that got us here, or a later one of the same file
	m.log.buf, m.log.pending = m.log.buf[:0], 0
	return m.open(filepath.Join(m.dir, "wal"), false)
}

// run is Run until ctx ends (nil) or the log fails (the error).
func (m *LogWriter) run(ctx context.Context, rs *runState) error {
	j, p := m.j, m.p
	read := func() (int, error) { return m.read(rs) }
	for {
		stopping := ctx.Err() != nil // then drain the journal once more and stop
		n, rerr := read()
		if rerr == nil && rs.always > 0 && rs.always < rs.lastGroup {
			rerr = m.gather(p, read, &rs.always, rs.lastGroup)
		}
		m.mu.Lock()
		err := m.writeBatchLocked()
		m.mu.Unlock()
		if err != nil {
			return err
		}
		rs.pending = p.Position() // records of other caches advance it too
		p.Logged(rs.pending)
		if errors.Is(rerr, ErrJournalGap) {
			m.opts.Logger.Warn("persist: the journal lost records before they were logged; taking a snapshot")
			if err := m.snapshot(ctx, j, true); err != nil {
				return err
			}
			rs.pending = p.Position()
			p.Logged(rs.pending)
			rs.synced, rs.lastSync, rs.always, rs.needSecond = rs.pending, time.Now(), 0, false
			p.Durable(rs.synced)
			continue
		} else if rerr != nil {
			return rerr
		}
		now := time.Now()
		if rs.recovering && n == 0 {
			// Caught up with the journal after a failure: once this is on
			// disk, accept changes again.
			if err := m.sync(); err != nil {
				return err
			}
			rs.synced, rs.lastSync, rs.always, rs.needSecond, rs.recovering = rs.pending, now, 0, false, false
			p.Durable(rs.synced)
			if p.SetFailing(nil) {
				m.opts.Logger.Info("persist: the log is written again: Sets of persistent caches are accepted", "dir", m.dir)
			}
		}
		if rs.pending > rs.synced {
			if rs.always > 0 || (rs.needSecond && now.Sub(rs.lastSync) >= time.Second) {
				if err := m.sync(); err != nil {
					return err
				}
				rs.lastSync, rs.needSecond = now, false
				rs.lastGroup, rs.always = rs.always, 0
			}
			if !rs.needSecond {
				// Everything read is either fsynced or belongs to a Never cache.
				rs.synced = rs.pending
				p.Durable(rs.synced)
			}
		}
		if now.After(rs.nextCheck) {
			rs.nextCheck = now.Add(time.Second)
			if m.shouldCompact(j) {
				if err := m.snapshot(ctx, j, false); err != nil {
					m.opts.Logger.Error("persist: snapshot failed", "err", err)
				}
			}
		}
		if stopping && n == 0 {
			if err := m.sync(); err != nil {
				return err
			}
			p.Durable(rs.pending)
			return nil
		}
		if n == 0 {
			p.Wait(10 * time.Millisecond)
		}
	}
}

// read copies up to 4096 journal records into the log's buffer (written by
// the next writeBatchLocked) and counts, in rs, the Always records read and
// whether an EverySecond one waits for its second.
func (m *LogWriter) read(rs *runState) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.logRec == nil {
		// Made once: a func passed through the Cursor interface escapes,
		// and a literal here would cost an allocation per batch.
		m.logRec = m.logRecord
	}
	m.rs = rs
	return m.p.Read(4096, m.logRec)
}

// logRecord appends one journal record to the log's buffer and counts it in
// m.rs (read's). Called with m.mu held.
func (m *LogWriter) logRecord(r Record) error {
	name, dur := m.info(r.Cache)
	key, val, exp, rdur := r.Key, r.Value, r.ExpireAt, uint8(0)
	switch r.Op {
	case OpDefine:
		d, _ := m.j.Define(r.Cache)
		key, val, exp, rdur = nil, d.Value, int64(d.Expire), uint8(d.Durability)
	case OpSetMeta:
		rdur = r.Flags
	}
	m.log.add(uint8(r.Op), rdur, name, key, val, exp)
	switch dur {
	case Always:
		m.rs.always++
	case EverySecond:
		m.rs.needSecond = true
	}
	return nil
}

// groupWait bounds how long a group commit waits for the Always writers of
// the previous one: well under an fsync (130-250 µs on the disks measured),
// well over a futex wake-up on a VM (20-50 µs).
const groupWait = 100 * time.Microsecond

// gather reads more records until *always reaches want or groupWait passes.
func (m *LogWriter) gather(p Cursor, read func() (int, error), always *int, want int) error {
	deadline := time.Now().Add(groupWait)
	for *always < want {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		if p.Tail() == p.Position() {
			p.Wait(left) // an Always writer wakes us as soon as its record is in
			continue
		}
		if _, err := read(); err != nil {
			return err
		}
	}
	return nil
}

// cacheInfo is what the log writer keeps of a cache: its name and resolved
// durability.
type cacheInfo struct {
	name  string
	dur   Durability
	known bool
}

// info returns the name and resolved durability of cache id.
func (m *LogWriter) info(id uint32) (string, Durability) {
	if int(id) >= len(m.caches) {
		m.caches = append(m.caches, make([]cacheInfo, int(id)+1-len(m.caches))...)
	}
	ci := &m.caches[id]
	if !ci.known {
		d, _ := m.j.Define(id)
		*ci = cacheInfo{name: d.Cache, dur: d.Durability, known: true}
		if ci.dur == DurabilityDefault {
			ci.dur = m.opts.Durability
		}
	}
	return ci.name, ci.dur
}

func (m *LogWriter) writeBatchLocked() error {
	n, bytes, err := m.log.flush()
	if err != nil {
		return err
	}
	m.sinceSnap += int64(bytes)
	if m.p != nil && n > 0 {
		m.p.CountLogged(n, bytes)
	}
	return nil
}

func (m *LogWriter) sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncLocked()
}

func (m *LogWriter) syncLocked() error {
	if beforeSync != nil && m.log.dirty {
		beforeSync() // written, not yet synced (a test hook: see hooks.go)
	}
	start := time.Now()
	if err := m.log.sync(); err != nil {
		return err
	}
	if m.p != nil {
		m.p.CountSync(time.Since(start))
	}
	if m.log.unsettled() {
		if m.settleT == nil {
			m.settleT = time.AfterFunc(settleAfter, m.settle)
		} else {
			m.settleT.Reset(settleAfter)
		}
	}
	return nil
}

// settle runs settleAfter after the last sync: it writes the checkpoint
// that names everything synced durable (see segLog.settle). Its fdatasync
// runs outside m.mu: under a flood of EverySecond writes a flush can take
// tens of ms, and Run would wait for it.
func (m *LogWriter) settle() {
	m.settling.Lock()
	defer m.settling.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	need, err := m.log.settleWrite()
	ck := m.log.ck
	m.mu.Unlock()
	if need && err == nil {
		err = ck.sync()
	}
	if err != nil {
		m.opts.Logger.Error("persist: checkpoint", "err", err)
	}
}

// shouldCompact reports whether the log outgrew the live data.
func (m *LogWriter) shouldCompact(j Journal) bool {
	m.mu.Lock()
	since := m.sinceSnap
	m.mu.Unlock()
	if since < m.opts.CompactMin {
		return false
	}
	return float64(since) > m.opts.CompactRatio*float64(j.LiveBytes())
}

// Snapshot writes a snapshot of sp's persistent caches now and drops the log
// entries it covers.
func (m *LogWriter) Snapshot(ctx context.Context, j Journal) error {
	return m.snapshot(ctx, j, false)
}

func (m *LogWriter) snapshot(ctx context.Context, j Journal, gap bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.writeBatchLocked(); err != nil {
		return err
	}
	if err := m.syncLocked(); err != nil {
		return err
	}
	// Everything up to last is in the log; the scan starts after, so it sees
	// every mutation logged up to last or a later one (which the log after
	// last replays), and every change that could not be journaled before
	// cover was made.
	last := m.log.lastIndex()
	cover := func() {}
	if m.p != nil {
		cover = m.p.CoverGaps()
	}
	sw, err := createSnapshot(m.snapshotPath(), last)
	if err != nil {
		return fmt.Errorf("persist: snapshot: %w", err)
	}
	if err := j.Scan(ctx, sw.add); err != nil {
		return sw.abort(err)
	}
	if err := sw.commit(); err != nil {
		return err
	}
	cover()
	if err := m.log.truncateFront(last + 1); err != nil {
		return fmt.Errorf("persist: truncate log front: %w", err)
	}
	m.sinceSnap = 0
	if m.p != nil {
		m.p.CountSnapshot(gap)
	}
	return nil
}

// Release gives the log writer role up without running (the master replays,
// then hands the role to a cache manager process, which Resumes).
func (m *LogWriter) Release() {
	if m.p != nil {
		m.p.Detach()
		m.j, m.p = nil, nil
	}
}

// Close syncs and closes the log and releases the data directory's lock.
func (m *LogWriter) Close() error {
	m.settling.Lock() // a settle under way ends before the log closes
	defer m.settling.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.settleT != nil {
		m.settleT.Stop()
	}
	err := m.log.close()
	if cerr := m.lock.Close(); err == nil {
		err = cerr
	}
	return err
}
