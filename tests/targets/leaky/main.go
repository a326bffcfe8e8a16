// leaky: a small service that leaks on purpose, for `make demo` and the
// daemon's scenario tests. Each leak has its own rate flag (0 = off) so the
// same program is also the negative control (steady GC sawtooth, goroutine
// bursts that drain).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	goroutineLeakRate = flag.Int("goroutine-leak-rate", 0, "goroutines per second that block forever")
	heapLeakRate      = flag.Int("heap-leak-rate", 0, "bytes per second retained in a global cache")
	heapPlateau       = flag.Int("heap-plateau", 0, "stop retaining after this many bytes (0 = never)")
	nativeLeakRate    = flag.Int("native-leak-rate", 0, "bytes per second of C memory never freed (cgo builds)")
	churnRate         = flag.Int("churn-rate", 2000, "short-lived goroutines per second (bursts that drain)")
	garbageRate       = flag.Int("garbage-rate", 8<<20, "bytes per second of garbage (GC sawtooth)")
	truthPath         = flag.String("truth", "", "write the program's own numbers here every second")
	duration          = flag.Duration("duration", 0, "exit after this long (0 = run until killed)")
)

var (
	leakedGoroutines atomic.Int64
	retained         atomic.Int64
	cache            [][]byte
	cacheMu          sync.Mutex
	never            = make(chan struct{})
	sink             []byte
	nativeLeaked     atomic.Int64
	nativeLeak       func(n int) // set by the cgo build
)

//go:noinline
func handleRequest(id int) {
	// The leak: a reply channel nobody ever writes to.
	go waitForReply(id)
}

//go:noinline
func waitForReply(id int) {
	leakedGoroutines.Add(1)
	<-never
	_ = id
}

//go:noinline
func remember(n int) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	cacheMu.Lock()
	cache = append(cache, b)
	cacheMu.Unlock()
	retained.Add(int64(n))
}

//go:noinline
func burst(wg *sync.WaitGroup) {
	defer wg.Done()
	time.Sleep(20 * time.Millisecond)
}

//go:noinline
func garbage(n int) {
	sink = make([]byte, n)
}

func every(rate int, chunk int, f func(int)) {
	if rate <= 0 {
		return
	}
	// f(chunk) calls per second so that chunk*calls = rate.
	calls := rate / chunk
	if calls < 1 {
		calls, chunk = 1, rate
	}
	tick := time.NewTicker(time.Second / time.Duration(calls))
	go func() {
		for range tick.C {
			f(chunk)
		}
	}()
}

func writeTruth() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t := map[string]any{
		"pid":               os.Getpid(),
		"leaked_goroutines": leakedGoroutines.Load(),
		"numgoroutine":      runtime.NumGoroutine(),
		"retained_bytes":    retained.Load(),
		"native_leaked":     nativeLeaked.Load(),
		"heap_alloc":        ms.HeapAlloc,
		"numgc":             ms.NumGC,
	}
	b, _ := json.Marshal(t)
	tmp := *truthPath + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		os.Rename(tmp, *truthPath)
	}
}

func main() {
	flag.Parse()
	// Like any service that links net/http/pprof: keeps the runtime's heap
	// profiling on (the linker turns it off when nothing reads it).
	runtime.MemProfile(nil, true)
	id := 0
	every(*goroutineLeakRate, 1, func(int) { id++; handleRequest(id) })
	every(*heapLeakRate, 64<<10, func(n int) {
		if *heapPlateau > 0 && retained.Load() >= int64(*heapPlateau) {
			return
		}
		remember(n)
	})
	if nativeLeak != nil {
		every(*nativeLeakRate, 64<<10, nativeLeak)
	} else if *nativeLeakRate > 0 {
		fmt.Fprintln(os.Stderr, "leaky: -native-leak-rate needs a cgo build")
		os.Exit(2)
	}
	every(*garbageRate, 256<<10, garbage)
	// Bursts of short-lived goroutines every 500 ms that all drain.
	if *churnRate > 0 {
		go func() {
			for range time.Tick(500 * time.Millisecond) {
				var wg sync.WaitGroup
				for i := 0; i < *churnRate/2; i++ {
					wg.Add(1)
					go burst(&wg)
				}
				wg.Wait()
			}
		}()
	}
	if *truthPath != "" {
		go func() {
			for range time.Tick(time.Second) {
				writeTruth()
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	if *duration > 0 {
		select {
		case <-sig:
		case <-time.After(*duration):
		}
	} else {
		<-sig
	}
}
