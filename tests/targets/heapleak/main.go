// heapleak: a Go test target with one allocation site that retains a known
// amount of heap and another that only churns garbage, so memdrift's heap
// profile (read from the runtime's buckets) can be compared with the
// target's own.
//
//	heapleak -truth FILE [-pprof FILE] [-rate 8192] [-cap 32] [-churn 8192]
//	         [-memprofilerate 0]
//
// retainBlock appends 64 KiB blocks to a global slice at -rate KiB/s until
// -cap MiB are held; churnGarbage allocates -churn KiB/s of 16 KiB blocks
// and drops them at once. The program imports runtime/pprof, so the linker
// keeps heap profiling on (MemProfileRate 512 KiB unless -memprofilerate).
//
// Once the cap is reached churn stops (the quiet point), the program runs
// two GCs and writes FILE (tmp + rename): its own heap profile grouped by
// allocation site (runtime.MemProfile scaled as runtime/pprof scales it),
// ReadMemStats numbers and MemProfileRate. With -pprof it also writes its
// own heap profile (pprof.WriteHeapProfile) for `go tool pprof -top`. On
// SIGUSR1 it rewrites both, without allocating in between, so a reader that
// looked at the process just before the signal saw the same buckets.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"
)

const blockSize = 64 << 10
const churnSize = 16 << 10

// Set by cgo_on.go in the cgo flavor.
var cgoCall func()

var (
	retained [][]byte
	sink     []byte
)

// retainBlock is the leak: every block it allocates stays reachable.
//
//go:noinline
func retainBlock() {
	b := make([]byte, blockSize)
	b[0] = 1
	retained = append(retained, b) // capacity reserved up front: no growslice here
}

// churnGarbage allocates a block and drops it at once (the global sink is
// overwritten by the next call), so its in-use bytes stay near zero.
//
//go:noinline
func churnGarbage() {
	b := make([]byte, churnSize)
	b[0] = 2
	sink = b
}

// Site is the target's own in-use heap at one allocation site: the first
// non-runtime frame of each profile stack, as runtime/pprof shows it.
type Site struct {
	Function     string `json:"function"`
	File         string `json:"file"`
	Line         int    `json:"line"`
	InuseBytes   int64  `json:"inuse_bytes"`
	InuseObjects int64  `json:"inuse_objects"`
	AllocBytes   int64  `json:"alloc_bytes"`
	AllocObjects int64  `json:"alloc_objects"`
}

type Truth struct {
	Pid            int              `json:"pid"`
	GoVersion      string           `json:"go_version"`
	Seq            int              `json:"seq"` // 0 at the first write, +1 per SIGUSR1
	MemProfileRate int              `json:"mem_profile_rate"`
	RetainedBytes  int64            `json:"retained_bytes"` // real bytes held by retainBlock
	Blocks         int              `json:"blocks"`
	ChurnedBytes   int64            `json:"churned_bytes"`
	Memstats       map[string]any   `json:"memstats"`
	Sites          []Site           `json:"sites"`       // sorted by inuse_bytes
	ByFunction     map[string]int64 `json:"by_function"` // inuse_bytes per site function
	Buckets        int              `json:"buckets"`
}

// scale is runtime/pprof's scaleHeapSample: a sampled (count, size) pair
// becomes an estimate of all allocations.
func scale(count, size, rate int64) (int64, int64) {
	if count == 0 || size == 0 {
		return 0, 0
	}
	if rate <= 1 {
		return count, size
	}
	avg := float64(size) / float64(count)
	s := 1 / (1 - math.Exp(-avg/float64(rate)))
	return int64(float64(count) * s), int64(float64(size) * s)
}

// siteOf returns the first frame outside the runtime, like runtime/pprof's
// heap writer hides runtime frames above the allocation site.
func siteOf(stk []uintptr) (fn, file string, line int) {
	frames := runtime.CallersFrames(stk)
	first := true
	for {
		f, more := frames.Next()
		if first {
			fn, file, line = f.Function, f.File, f.Line
			first = false
		}
		if !strings.HasPrefix(f.Function, "runtime.") &&
			!strings.HasPrefix(f.Function, "internal/runtime/") && f.Function != "" {
			return f.Function, f.File, f.Line
		}
		if !more {
			return
		}
	}
}

func ownProfile(rate int64) ([]Site, int) {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		n, ok = runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
	}
	type key struct {
		fn, file string
		line     int
	}
	idx := map[key]int{}
	var sites []Site
	for i := range recs {
		r := &recs[i]
		fn, file, line := siteOf(r.Stack())
		k := key{fn, file, line}
		j, ok := idx[k]
		if !ok {
			j = len(sites)
			idx[k] = j
			sites = append(sites, Site{Function: fn, File: file, Line: line})
		}
		ao, ab := scale(r.AllocObjects, r.AllocBytes, rate)
		io, ib := scale(r.InUseObjects(), r.InUseBytes(), rate)
		sites[j].AllocObjects += ao
		sites[j].AllocBytes += ab
		sites[j].InuseObjects += io
		sites[j].InuseBytes += ib
	}
	sort.Slice(sites, func(a, b int) bool { return sites[a].InuseBytes > sites[b].InuseBytes })
	return sites, len(recs)
}

func writeTruth(path, pprofPath string, t *Truth) error {
	var ms runtime.MemStats
	// The profile first: runtime.MemProfile is what the reader compares with,
	// and nothing below runs a GC before it is taken.
	t.MemProfileRate = runtime.MemProfileRate
	t.Sites, t.Buckets = ownProfile(int64(runtime.MemProfileRate))
	runtime.ReadMemStats(&ms)
	t.Memstats = map[string]any{
		"numgc":       ms.NumGC,
		"heap_alloc":  ms.HeapAlloc,
		"total_alloc": ms.TotalAlloc,
		"heap_inuse":  ms.HeapInuse,
		"next_gc":     ms.NextGC,
		"mallocs":     ms.Mallocs,
		"frees":       ms.Frees,
	}
	t.ByFunction = map[string]int64{}
	for _, s := range t.Sites {
		t.ByFunction[s.Function] += s.InuseBytes
	}
	if pprofPath != "" {
		f, err := os.Create(pprofPath + ".tmp")
		if err != nil {
			return err
		}
		err = pprof.WriteHeapProfile(f)
		f.Close()
		if err != nil {
			return err
		}
		if err := os.Rename(pprofPath+".tmp", pprofPath); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func main() {
	truth := flag.String("truth", "", "write the truth JSON to this file at the quiet point")
	pprofOut := flag.String("pprof", "", "also write the target's own heap profile here")
	rateKiB := flag.Int("rate", 8192, "KiB/s retained by retainBlock")
	capMiB := flag.Int("cap", 32, "MiB retained in all")
	churnKiB := flag.Int("churn", 8192, "KiB/s of garbage from churnGarbage until the cap")
	mpr := flag.Int("memprofilerate", 0, "set runtime.MemProfileRate (0: keep the default)")
	flag.Parse()

	if *mpr > 0 {
		runtime.MemProfileRate = *mpr
	}
	if cgoCall != nil {
		cgoCall()
	}
	blocks := *capMiB * (1 << 20) / blockSize
	retained = make([][]byte, 0, blocks)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1)

	// 100 ticks per second; each tick retains and churns its share, carrying
	// fractions over so the long-run rates are exact.
	const tick = 10 * time.Millisecond
	var churned int64
	retainDebt, churnDebt := 0.0, 0.0
	for len(retained) < blocks {
		retainDebt += float64(*rateKiB) * 1024 * tick.Seconds() / blockSize
		churnDebt += float64(*churnKiB) * 1024 * tick.Seconds() / churnSize
		for ; retainDebt >= 1 && len(retained) < blocks; retainDebt-- {
			retainBlock()
		}
		for ; churnDebt >= 1; churnDebt-- {
			churnGarbage()
			churned += churnSize
		}
		time.Sleep(tick)
	}
	sink = nil
	// Two cycles: the first frees the last churn, the second publishes those
	// frees in the profile (it lags one GC cycle behind).
	runtime.GC()
	runtime.GC()

	t := &Truth{Pid: os.Getpid(), GoVersion: runtime.Version(),
		RetainedBytes: int64(len(retained)) * blockSize, Blocks: len(retained),
		ChurnedBytes: churned}
	if *truth != "" {
		if err := writeTruth(*truth, *pprofOut, t); err != nil {
			fmt.Fprintln(os.Stderr, "heapleak:", err)
			os.Exit(1)
		}
	}
	for range sigs {
		t.Seq++
		if *truth != "" {
			if err := writeTruth(*truth, *pprofOut, t); err != nil {
				fmt.Fprintln(os.Stderr, "heapleak:", err)
			}
		}
	}
}
