//go:build linux

package shm

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestArenaHugePages: where the kernel gives a memfd huge pages on advice
// (shmem_enabled "advise", "within_size" or "always"), the arena's mapping
// in its creator and in a process that opens it holds some huge pages. With
// "never" (most distributions' default) it skips, naming the setting.
func TestArenaHugePages(t *testing.T) {
	const knob = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
	b, _ := os.ReadFile(knob)
	mode := strings.TrimSpace(string(b))
	if !shmemHugeOnAdvice() {
		t.Skipf("%s is %q: the arena has small pages (echo advise > %s gives it huge ones)", knob, mode, knob)
	}
	a, err := Create(Options{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if kb := pmdMappedKB(t, a.mem); kb == 0 {
		t.Errorf("shmem_enabled %q: the creator's mapping has no huge page", mode)
	}
	mem, err := mapFile(a.File())
	if err != nil {
		t.Fatal(err)
	}
	defer unmap(mem)
	for i := 0; i < len(mem); i += 4096 { // fault the pages in
		pageSink += mem[i]
	}
	if kb := pmdMappedKB(t, mem); kb == 0 {
		t.Errorf("shmem_enabled %q: an opener's mapping has no huge page", mode)
	}
}

// pageSink keeps TestArenaHugePages's reads from being optimized away.
var pageSink byte

// pmdMappedKB returns the kB of mem's mapping that /proc/self/smaps says
// are mapped by huge pages (ShmemPmdMapped or FilePmdMapped).
func pmdMappedKB(t *testing.T, mem []byte) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&mem[0])))
	in, kb := false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasPrefix(line, start)
			continue
		}
		if !in {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(line, "ShmemPmdMapped: %d kB", &n); err == nil {
			kb += n
		} else if _, err := fmt.Sscanf(line, "FilePmdMapped: %d kB", &n); err == nil {
			kb += n
		}
	}
	return kb
}
