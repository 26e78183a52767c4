package persist_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/persist"
)

// childLocker opens the data directory P_DIR, says so, and holds it until
// killed.
func childLocker() {
	m, err := persist.Open(os.Getenv("P_DIR"), persist.Options{})
	if err != nil {
		die("open: %v", err)
	}
	fmt.Println("open")
	_ = m
	select {}
}

// Two masters on one data directory: the second Open fails at once with
// ErrLocked naming the first one's pid; once that one is killed (-9), the
// directory opens.
func TestSecondOpenOfADirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	cmd := xtesting.Command(t, "plock", nil, "P_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	xtesting.Start(t, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "open\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	start := time.Now()
	_, err = persist.Open(dir, persist.Options{Logger: quiet()})
	if !errors.Is(err, persist.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("second Open = %v; want ErrLocked naming pid %d", err, cmd.Process.Pid)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("second Open took %v; want it to fail at once", d)
	}
	t.Logf("second Open: %v", err)
	// In one process too.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	m, err := persist.Open(dir, persist.Options{Logger: quiet()})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	if _, err := persist.Open(dir, persist.Options{Logger: quiet()}); !errors.Is(err, persist.ErrLocked) {
		t.Fatalf("second Open in the same process = %v; want ErrLocked", err)
	}
	m.Close()
	m, err = persist.Open(dir, persist.Options{Logger: quiet()})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	m.Close()
}

// A data directory that other users can write to is refused, naming the
// directory and its mode.
func TestWritableDataDirectoryIsRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o770, 0o702} {
		dir := filepath.Join(t.TempDir(), "data")
		os.Mkdir(dir, 0o700)
		os.Chmod(dir, mode)
		_, err := persist.Open(dir, persist.Options{Logger: quiet()})
		if !errors.Is(err, persist.ErrUnsafeDir) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), mode.String()[1:]) {
			t.Fatalf("Open of a directory with mode %v = %v; want ErrUnsafeDir naming it and its mode", mode, err)
		}
		// The wal subdirectory too.
		os.Chmod(dir, 0o700)
		os.Mkdir(filepath.Join(dir, "wal"), 0o700)
		os.Chmod(filepath.Join(dir, "wal"), mode)
		if _, err := persist.Open(dir, persist.Options{Logger: quiet()}); !errors.Is(err, persist.ErrUnsafeDir) {
			t.Fatalf("Open with a wal directory of mode %v = %v; want ErrUnsafeDir", mode, err)
		}
	}
}

// Links planted in the data directory, where a segment, the checkpoint, the
// snapshot or the lock file go, are refused; the files they point at are
// untouched.
func TestPlantedLinksAreRefused(t *testing.T) {
	for _, name := range []string{"wal/00000000000000000001", "wal/checkpoint", "snapshot", "lock"} {
		t.Run(strings.ReplaceAll(name, "/", "-"), func(t *testing.T) {
			dir := t.TempDir()
			writeKeys(t, dir, persist.Options{Logger: quiet()}, 10, true)
			foreign := filepath.Join(t.TempDir(), "someone-elses")
			content := bytes.Repeat([]byte("precious "), 1000)
			os.WriteFile(foreign, content, 0o600)
			os.Remove(filepath.Join(dir, name))
			if err := os.Symlink(foreign, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			m, err := persist.Open(dir, persist.Options{Logger: quiet(), Salvage: true})
			if err == nil {
				sp := space(t, 4<<20)
				err = m.Replay(bg, sp.Journal())
				if err == nil {
					c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
					c.Set(bg, "more", []byte("x"), cache.SetOptions{})
					m.Snapshot(bg, sp.Journal())
				}
				m.Close()
			}
			if !errors.Is(err, syscall.ELOOP) {
				t.Fatalf("start with %s a link = %v; want it refused (ELOOP)", name, err)
			}
			if b, _ := os.ReadFile(foreign); !bytes.Equal(b, content) {
				t.Fatalf("the link's target was changed (%d bytes)", len(b))
			}
		})
	}
}
