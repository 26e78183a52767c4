package redistest_test

import (
	"testing"

	"github.com/cluster2/cluster2/internal/redistest"
)

func TestStartKillRestart(t *testing.T) {
	s := redistest.Start(t)
	if out, err := s.CLI("SET", "k", "v"); err != nil || out != "OK" {
		t.Fatalf("SET: %q %v", out, err)
	}
	if out, _ := s.CLI("GET", "k"); out != "v" {
		t.Fatalf("GET = %q, want v", out)
	}
	s.Kill()
	if _, err := s.CLI("PING"); err == nil {
		// redis-cli exits 0 with an error text on a refused connection in some
		// versions; the output says which.
		if out, _ := s.CLI("PING"); out == "PONG" {
			t.Fatal("PING answered after Kill")
		}
	}
	s.Restart()
	if out, _ := s.CLI("GET", "k"); out != "" {
		t.Fatalf("GET after restart = %q, want empty (no persistence)", out)
	}
	if out, _ := s.CLI("PING"); out != "PONG" {
		t.Fatalf("PING after restart = %q", out)
	}
}
