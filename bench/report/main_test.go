package main

import (
	"strings"
	"testing"
)

// TestMergeHandKeepsHandSections: a section of the previous file that the
// report does not write survives a regeneration, after the section it
// followed (at the end if that one is gone), and a section the report writes
// is replaced, not doubled.
func TestMergeHandKeepsHandSections(t *testing.T) {
	old := "# Benchmarks\n\nold intro\n\n## A\n\nold A\n\n## Hand 1\n\nby hand 1\n\n## B\n\nold B\n\n## Gone\n\nold gone\n\n## Hand 2\n\nby hand 2\n"
	gen := "# Benchmarks\n\nnew intro\n\n## A\n\nnew A\n\n## B\n\nnew B\n\n## C\n\nnew C\n"
	got := mergeHand(gen, old)
	want := "# Benchmarks\n\nnew intro\n\n## A\n\nnew A\n\n## Hand 1\n\nby hand 1\n\n## B\n\nnew B\n\n## Gone\n\nold gone\n\n## Hand 2\n\nby hand 2\n\n## C\n\nnew C\n"
	// "Gone" is not written any more: it is kept like a hand-written section
	// (a person removes it), anchored after B, as is Hand 2.
	if got != want {
		t.Errorf("mergeHand:\n%s\nwant:\n%s", got, want)
	}
	if again := mergeHand(gen, got); again != got {
		t.Errorf("a second regeneration changed the file:\n%s", again)
	}
	for _, s := range []string{"old A", "old B", "old intro"} {
		if strings.Contains(got, s) {
			t.Errorf("the generated section's old text %q survived", s)
		}
	}
}
