package shm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/shm/shmtest"
	"golang.org/x/sys/unix"
)

// childResumeBefore joins the arena (fd 3), takes the guarded lock, writes
// half of a guarded write, then replaces its own image (execve of the test
// binary as "resumeafter"), handing over its slot and token.
func childResumeBefore() {
	_, g, p := openInherited()
	if _, err := g.lock.Lock(context.Background(), p); err != nil {
		os.Exit(3)
	}
	g.a.Store(7) // half a write: b stays behind
	g.heldBy.Store(uint64(p.Pid()))
	if _, err := unix.FcntlInt(3, unix.F_SETFD, 0); err != nil { // fd 3 survives the execve
		os.Exit(4)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, xtesting.EnvChild+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, xtesting.EnvChild+"=resumeafter",
		"RESUME_SLOT="+strconv.Itoa(p.Slot()), "RESUME_TOKEN="+strconv.FormatUint(uint64(p.Token()), 10))
	err := syscall.Exec(os.Args[0], os.Args, env)
	fmt.Fprintln(os.Stderr, "child: exec:", err)
	os.Exit(5)
}

// childResumeAfter is the next image: it maps the arena again, resumes its
// slot with its token, and takes the lock its previous image held: it must
// be told it recovered an abandoned lock (no thread of the previous image
// survived), and it repairs the half-done write.
func childResumeAfter() {
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		os.Exit(10)
	}
	slot, _ := strconv.Atoi(os.Getenv("RESUME_SLOT"))
	tok, _ := strconv.ParseUint(os.Getenv("RESUME_TOKEN"), 10, 32)
	if _, err := a.Resume(slot, uint32(tok)+1); !errors.Is(err, shm.ErrSlotBusy) { // another token: refused
		os.Exit(11)
	}
	p, err := a.Resume(slot, uint32(tok))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: resume:", err)
		os.Exit(12)
	}
	if _, err := a.Resume(slot, uint32(tok)); err == nil { // once per mapping
		os.Exit(13)
	}
	g := guardedRegion(nil, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recovered, err := g.lock.Lock(ctx, p)
	if err != nil {
		os.Exit(14)
	}
	if recovered && g.a.Load() != g.b.Load() {
		g.b.Store(g.a.Load()) // roll the half-done write forward
		g.repairs.Add(1)
	}
	if recovered {
		g.recoveries.Add(1)
	}
	if uint64(p.Pid()) != g.heldBy.Load() {
		os.Exit(15) // not the same process
	}
	g.lock.Unlock(p)
	p.Leave()
}

// TestResumeAfterExecve: a member that replaces its own image (execve)
// while holding a lock resumes its slot with its token in the next image
// (same pid: to every other process it never left), and the lock its
// previous image held is handed to it as abandoned, so the half-done write
// is repaired. A wrong token and a second Resume are refused.
func TestResumeAfterExecve(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	g := guardedRegion(t, a)
	c := spawn(t, a, "resumebefore")
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("the child (both images): %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not finish within 30 s")
	}
	if g.recoveries.Load() != 1 || g.repairs.Load() != 1 || g.a.Load() != 7 || g.b.Load() != 7 {
		t.Fatalf("recoveries %d repairs %d a %d b %d; want the lock recovered once and the write rolled forward to 7",
			g.recoveries.Load(), g.repairs.Load(), g.a.Load(), g.b.Load())
	}
	if slotOf(a, c.cmd.Process.Pid) >= 0 {
		t.Error("the child's slot is still held after it left")
	}
	// Here, a mapping that joined already cannot resume.
	self, err := a.Self()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resume(self.Slot(), self.Token()); !errors.Is(err, shm.ErrInvalidConfig) {
		t.Errorf("Resume on a joined mapping: %v; want ErrInvalidConfig", err)
	}
}
