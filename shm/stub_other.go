//go:build !linux

package shm

import (
	"os"
	"sync/atomic"
	"time"
)

func createMapping(string, int64) (*os.File, []byte, error) { return nil, nil, ErrNotSupported }
func mapFile(*os.File) ([]byte, error)                      { return nil, ErrNotSupported }
func unmap([]byte) error                                    { return ErrNotSupported }
func processAlive(int, uint64) bool                         { return false }
func selfStartTime() uint64                                 { return 0 }
func slotAlive(int, uint64, int64) bool                     { return false }
func bootNanos() int64                                      { return 0 }

// FutexWait returns ErrNotSupported on this platform.
func FutexWait(*atomic.Uint32, uint32, time.Duration) error { return ErrNotSupported }

// FutexWake returns ErrNotSupported on this platform.
func FutexWake(*atomic.Uint32, int) (int, error) { return 0, ErrNotSupported }

// ProcessAlive returns false on this platform.
func ProcessAlive(int, uint64) bool { return false }

// ProcessStartTime returns ErrNotSupported on this platform.
func ProcessStartTime(int) (uint64, error) { return 0, ErrNotSupported }
