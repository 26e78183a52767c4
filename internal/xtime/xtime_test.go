package xtime_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtime"
)

// within fails the test when f does not return within a generous bound: the
// sleeps below that must end early are an hour long.
func within(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sleep did not end when told to stop")
	}
}

func TestSleepEnds(t *testing.T) {
	if !xtime.Sleep(nil, time.Millisecond) {
		t.Fatal("Sleep(nil, 1ms) = false, want true: a nil done never closes")
	}
	start := time.Now()
	if !xtime.Sleep(make(chan struct{}), 5*time.Millisecond) {
		t.Fatal("Sleep on an open channel = false, want true")
	}
	if el := time.Since(start); el < 5*time.Millisecond {
		t.Fatalf("Sleep(5ms) returned after %v", el)
	}
}

func TestSleepStops(t *testing.T) {
	done := make(chan struct{})
	close(done)
	within(t, func() {
		if xtime.Sleep(done, time.Hour) {
			t.Error("Sleep with done closed = true, want false")
		}
	})
	done = make(chan struct{})
	go func() { time.Sleep(time.Millisecond); close(done) }()
	within(t, func() {
		if xtime.Sleep(done, time.Hour) {
			t.Error("Sleep with done closed meanwhile = true, want false")
		}
	})
}

func TestSleepCtx(t *testing.T) {
	if err := xtime.SleepCtx(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("SleepCtx(Background, 1ms) = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	within(t, func() {
		if err := xtime.SleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Errorf("SleepCtx(cancelled) = %v, want context.Canceled", err)
		}
	})
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	within(t, func() {
		if err := xtime.SleepCtx(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("SleepCtx(1ms deadline, 1h) = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestBound(t *testing.T) {
	if d := xtime.Bound(context.Background(), time.Second); d != time.Second {
		t.Errorf("Bound without a deadline = %v, want 1s", d)
	}
	far, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if d := xtime.Bound(far, time.Second); d != time.Second {
		t.Errorf("Bound(1h deadline, 1s) = %v, want 1s", d)
	}
	near, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d := xtime.Bound(near, time.Hour); d <= 0 || d > time.Minute {
		t.Errorf("Bound(1m deadline, 1h) = %v, want in (0, 1m]", d)
	}
	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if d := xtime.Bound(past, time.Second); d != 0 {
		t.Errorf("Bound(past deadline) = %v, want 0", d)
	}
}
