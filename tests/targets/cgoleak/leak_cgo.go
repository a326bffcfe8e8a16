//go:build cgo

// cgoleak: a cgo target with one leaking C.CString site and one correct
// site (C.CString + C.free), for memdrift's C memory tracing.
//
//	cgoleak -truth FILE [-rate BYTES_PER_S] [-size N] [-burst SEC]
//
// It writes FILE (tmp + rename) at start (seq 0, nothing leaked), then
// waits. Each SIGUSR1 runs one burst: for -burst seconds it leaks -rate
// bytes/s in C strings of -size bytes (NUL included) at the line marked
// SITE leak, and makes as many allocate-and-free calls at SITE ok; then it
// goes quiet (no allocation of its own) and rewrites FILE with the truth:
// bytes and blocks leaked so far (seq + 1). SIGUSR2 frees everything leaked
// so far (at SITE release) and rewrites FILE.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

type Truth struct {
	Pid         int    `json:"pid"`
	GoVersion   string `json:"go_version"`
	Seq         int    `json:"seq"`
	LeakedBytes int64  `json:"leaked_bytes"`
	LeakedCount int64  `json:"leaked_count"`
	OkCalls     int64  `json:"ok_calls"`
	Size        int    `json:"size"`
	CgoCalls    int64  `json:"cgo_calls"`
}

var leaked []*C.char

//go:noinline
func leakOne(s string) *C.char {
	return C.CString(s) // SITE leak
}

//go:noinline
func okOne(s string) {
	p := C.CString(s) // SITE ok
	C.free(unsafe.Pointer(p))
}

//go:noinline
func releaseAll() {
	for _, p := range leaked {
		C.free(unsafe.Pointer(p)) // SITE release
	}
	leaked = leaked[:0]
}

func writeTruth(path string, t *Truth) {
	t.CgoCalls = runtime.NumCgoCall()
	b, _ := json.Marshal(t)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "cgoleak:", err)
		os.Exit(1)
	}
	if err := os.Rename(tmp, path); err != nil {
		fmt.Fprintln(os.Stderr, "cgoleak:", err)
		os.Exit(1)
	}
}

func main() {
	truth := flag.String("truth", "", "write the truth JSON to this file")
	rate := flag.Int("rate", 256<<10, "bytes leaked per second during a burst")
	size := flag.Int("size", 128, "bytes per leaked C string (NUL included)")
	burst := flag.Float64("burst", 2, "seconds per burst")
	flag.Parse()
	if *size < 2 {
		*size = 2
	}
	s := strings.Repeat("x", *size-1)
	leaked = make([]*C.char, 0, 1<<20)
	t := &Truth{Pid: os.Getpid(), GoVersion: runtime.Version(), Size: *size}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	if *truth != "" {
		writeTruth(*truth, t)
	}
	const tick = 10 * time.Millisecond
	perTick := float64(*rate) * tick.Seconds() / float64(*size)
	for sig := range sigs {
		if sig == syscall.SIGUSR2 {
			releaseAll()
			t.LeakedBytes, t.LeakedCount = 0, 0
		} else {
			start := time.Now()
			owed := 0.0
			for time.Since(start).Seconds() < *burst {
				owed += perTick
				for ; owed >= 1; owed-- {
					leaked = append(leaked, leakOne(s))
					t.LeakedBytes += int64(*size)
					t.LeakedCount++
					okOne(s)
					t.OkCalls++
				}
				time.Sleep(tick)
			}
		}
		t.Seq++
		if *truth != "" {
			writeTruth(*truth, t)
		}
	}
}
