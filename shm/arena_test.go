package shm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/shm/shmtest"
	"golang.org/x/sys/unix"
)

// reopen maps a's memfd a second time through a duplicated descriptor, as a
// child process would through an inherited one.
func reopen(t *testing.T, a *shm.Arena) (*shm.Arena, error) {
	t.Helper()
	fd, err := unix.Dup(int(a.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := shm.Open(os.NewFile(uintptr(fd), "dup"))
	if b != nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, err
}

func TestCreateOpenSharesMemory(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	off, created, err := a.Region(context.Background(), "data", 4096, nil)
	if err != nil || !created {
		t.Fatalf("Region = %d, %v, %v; want a new region", off, created, err)
	}
	b, err := reopen(t, a)
	if err != nil {
		t.Fatal(err)
	}
	off2, created2, err := b.Region(context.Background(), "data", 4096, nil)
	if err != nil || created2 || off2 != off {
		t.Fatalf("second Region = %d, %v, %v; want %d, existing", off2, created2, err, off)
	}
	copy(a.Bytes(off, 5), "hello")
	if got := string(b.Bytes(off, 5)); got != "hello" {
		t.Fatalf("read through second mapping = %q; want %q", got, "hello")
	}
	if b.CreatorPid() != os.Getpid() || b.Size() != 1<<20 {
		t.Fatalf("CreatorPid, Size = %d, %d", b.CreatorPid(), b.Size())
	}
}

func TestOpenRejectsForeignAndOldArenas(t *testing.T) {
	t.Run("foreign", func(t *testing.T) {
		fd, err := unix.MemfdCreate("foreign", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "foreign")
		if err := f.Truncate(1 << 16); err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("not an arena at all"), 0)
		_, err = shm.Open(f)
		if !errors.Is(err, shm.ErrBadMagic) {
			t.Fatalf("Open(foreign) = %v; want ErrBadMagic", err)
		}
	})
	t.Run("tiny", func(t *testing.T) {
		fd, _ := unix.MemfdCreate("tiny", unix.MFD_CLOEXEC)
		f := os.NewFile(uintptr(fd), "tiny")
		f.Truncate(100)
		if _, err := shm.Open(f); !errors.Is(err, shm.ErrBadMagic) {
			t.Fatalf("Open(tiny) = %v; want ErrBadMagic", err)
		}
	})
	t.Run("older layout", func(t *testing.T) {
		a := shmtest.NewArena(t, 1<<20)
		binary.LittleEndian.PutUint32(a.Bytes(8, 4), shm.LayoutVersion-1)
		if _, err := reopen(t, a); !errors.Is(err, shm.ErrLayoutVersion) {
			t.Fatalf("Open(older) = %v; want ErrLayoutVersion", err)
		}
	})
	t.Run("size mismatch", func(t *testing.T) {
		a := shmtest.NewArena(t, 1<<20)
		binary.LittleEndian.PutUint64(a.Bytes(16, 8), 1<<30)
		if _, err := reopen(t, a); !errors.Is(err, shm.ErrCorrupt) {
			t.Fatalf("Open(size mismatch) = %v; want ErrCorrupt", err)
		}
	})
	t.Run("region outside", func(t *testing.T) {
		a := shmtest.NewArena(t, 1<<20)
		off, _, err := a.Region(context.Background(), "r", 64, nil)
		if err != nil {
			t.Fatal(err)
		}
		// regions[0].off lives at header offset 128+24.
		binary.LittleEndian.PutUint64(a.Bytes(128+24, 8), 1<<40)
		if _, err := reopen(t, a); !errors.Is(err, shm.ErrCorrupt) {
			t.Fatalf("Open(bad region) = %v; want ErrCorrupt", err)
		}
		binary.LittleEndian.PutUint64(a.Bytes(128+24, 8), uint64(off))
	})
}

func TestArenaFull(t *testing.T) {
	a := shmtest.NewArena(t, 256<<10)
	ctx := context.Background()
	free := a.Free()
	if _, err := a.Alloc(ctx, free+1); !errors.Is(err, shm.ErrArenaFull) {
		t.Fatalf("Alloc(free+1) = %v; want ErrArenaFull", err)
	}
	if a.Free() != free {
		t.Fatalf("a failed Alloc changed Free from %d to %d", free, a.Free())
	}
	off, err := a.Alloc(ctx, free)
	if err != nil {
		t.Fatalf("Alloc(free) = %v", err)
	}
	if off%shm.CacheLine != 0 {
		t.Fatalf("Alloc returned unaligned offset %d", off)
	}
	if _, _, err := a.Region(ctx, "late", 64, nil); !errors.Is(err, shm.ErrArenaFull) {
		t.Fatalf("Region on a full arena = %v; want ErrArenaFull", err)
	}
}

func TestRegionRules(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	ctx := context.Background()
	inits := 0
	init := func(off shm.Off) error { inits++; a.Bytes(off, 1)[0] = 7; return nil }
	off, _, err := a.Region(ctx, "r", 128, init)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Region(ctx, "r", 128, init); err != nil || inits != 1 || a.Bytes(off, 1)[0] != 7 {
		t.Fatalf("Region twice: err %v, init ran %d times; want once", err, inits)
	}
	if _, _, err := a.Region(ctx, "r", 256, nil); !errors.Is(err, shm.ErrRegionMismatch) {
		t.Fatalf("Region with another size = %v; want ErrRegionMismatch", err)
	}
	if _, _, err := a.Region(ctx, "a-name-longer-than-24-bytes", 64, nil); !errors.Is(err, shm.ErrInvalidConfig) {
		t.Fatalf("Region with a long name = %v; want ErrInvalidConfig", err)
	}
	failing := errors.New("boom")
	if _, _, err := a.Region(ctx, "failed", 64, func(shm.Off) error { return failing }); !errors.Is(err, failing) {
		t.Fatalf("Region with failing init = %v; want boom", err)
	}
	if _, created, err := a.Region(ctx, "failed", 64, nil); err != nil || !created {
		t.Fatalf("a failed init published its region: created=%v err=%v", created, err)
	}
}

func TestCreateOptions(t *testing.T) {
	for _, o := range []shm.Options{{Size: 1024}, {Slots: 1}, {Slots: 100000}, {Size: 64 << 10, Slots: 4000}} {
		if a, err := shm.Create(o); !errors.Is(err, shm.ErrInvalidConfig) {
			if a != nil {
				a.Close()
			}
			t.Errorf("Create(%+v) = %v; want ErrInvalidConfig", o, err)
		}
	}
}

func TestJoinAndReleaseSlots(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	self, err := a.Self()
	if err != nil || self.Slot() != 0 {
		t.Fatalf("creator's Self = slot %v, %v; want slot 0", self, err)
	}
	p, err := a.Join(7)
	if err != nil {
		t.Fatal(err)
	}
	if p.Token() == self.Token() || p.Slot() == 0 {
		t.Fatalf("second Join reused slot %d or token %d", p.Slot(), p.Token())
	}
	if !a.Alive(p.Token()) {
		t.Fatal("Alive(own token) = false")
	}
	if err := a.ReleaseSlot(p.Slot()); !errors.Is(err, shm.ErrSlotBusy) {
		t.Fatalf("ReleaseSlot of a live process = %v; want ErrSlotBusy", err)
	}
	if _, err := a.JoinSlot(p.Slot(), 0); !errors.Is(err, shm.ErrSlotBusy) {
		t.Fatalf("JoinSlot of a live slot = %v; want ErrSlotBusy", err)
	}
	p.Leave()
	if a.Alive(p.Token()) {
		t.Fatal("Alive after Leave = true")
	}
	q, err := a.JoinSlot(p.Slot(), 0)
	if err != nil || q.Token() == p.Token() {
		t.Fatalf("JoinSlot after Leave = %v, token %d (old %d)", err, q.Token(), p.Token())
	}
	// Fill the table: the last Join fails with ErrNoSlot.
	for {
		if _, err := a.Join(0); err != nil {
			if !errors.Is(err, shm.ErrNoSlot) {
				t.Fatalf("Join on a full table = %v; want ErrNoSlot", err)
			}
			break
		}
	}
	if n := len(a.Slots()); n != a.SlotCount() {
		t.Fatalf("Slots() lists %d; want %d", n, a.SlotCount())
	}
}
