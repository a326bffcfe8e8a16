//go:build cgo

// cgonofp: a cgo target whose C code is built -O2 -fomit-frame-pointer (as
// cgo and Debian build C by default), for memdrift's C stacks without
// frame pointers. Two leaking paths through C, each with its own Go caller:
//
//	main.leakKeep  -> C nofp_keep  -> nofp_helper -> malloc (kept; a temporary freed)
//	main.leakStash -> C nofp_stash -> nofp_helper -> malloc (kept)
//
//	cgonofp -truth FILE [-n CALLS] [-keep-size N] [-stash-size N]
//
// It writes FILE (tmp + rename) at start (seq 0), then waits. Each SIGUSR1
// makes -n calls on each path, goes quiet and rewrites FILE with the bytes
// and blocks each path keeps (seq + 1); SIGUSR2 frees them all.
package main

/*
#cgo CFLAGS: -O2 -fomit-frame-pointer
#include "nofp.h"
*/
import "C"

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

type Truth struct {
	Pid        int    `json:"pid"`
	GoVersion  string `json:"go_version"`
	Seq        int    `json:"seq"`
	KeepBytes  int64  `json:"keep_bytes"`
	KeepCount  int64  `json:"keep_count"`
	StashBytes int64  `json:"stash_bytes"`
	StashCount int64  `json:"stash_count"`
}

//go:noinline
func leakKeep(n int) {
	C.nofp_keep(C.size_t(n)) // SITE keep
}

//go:noinline
func leakStash(n int) {
	C.nofp_stash(C.size_t(n)) // SITE stash
}

func writeTruth(path string, t *Truth) {
	b, _ := json.Marshal(t)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "cgonofp:", err)
		os.Exit(1)
	}
	if err := os.Rename(tmp, path); err != nil {
		fmt.Fprintln(os.Stderr, "cgonofp:", err)
		os.Exit(1)
	}
}

func main() {
	truth := flag.String("truth", "", "write the truth JSON to this file")
	calls := flag.Int("n", 2000, "calls per path per SIGUSR1")
	keepSize := flag.Int("keep-size", 96, "bytes per block kept by nofp_keep")
	stashSize := flag.Int("stash-size", 200, "bytes per block kept by nofp_stash")
	flag.Parse()
	t := &Truth{Pid: os.Getpid(), GoVersion: runtime.Version()}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	if *truth != "" {
		writeTruth(*truth, t)
	}
	for sig := range sigs {
		if sig == syscall.SIGUSR2 {
			C.nofp_release()
			t.KeepBytes, t.KeepCount, t.StashBytes, t.StashCount = 0, 0, 0, 0
		} else {
			for i := 0; i < *calls; i++ {
				leakKeep(*keepSize)
				t.KeepBytes += int64(*keepSize)
				t.KeepCount++
				leakStash(*stashSize)
				t.StashBytes += int64(*stashSize)
				t.StashCount++
			}
		}
		t.Seq++
		if *truth != "" {
			writeTruth(*truth, t)
		}
	}
}
