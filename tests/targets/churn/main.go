// churn: a Go test target that starts and ends goroutines at three known
// `go` statements at known rates, alternating busy and quiet phases.
//
//	site A  short-lived (returns after a little work)
//	site B  lives about -b-life (200 ms)
//	site C  leaks: blocks forever on a channel receive
//
//	churn -truth FILE [-rate-a 500 -rate-b 100 -rate-c 10] [-phase 2s]
//	      [-duration 0] [-check]
//
// Every goroutine keeps its site's counters (created, exited, live) with
// atomics in its own body. During each quiet phase (no spawning, all A and B
// goroutines finished) churn writes FILE (tmp + rename) with the per-site
// counts, runtime.NumGoroutine() and "quiet": true; at the start of each
// busy phase it rewrites it with "quiet": false. -check verifies the
// invariants at every quiet phase and exits 1 on the first inconsistency
// (so tests show that an observer did not harm the target); with -duration
// it exits 0 after that long, otherwise it runs until killed.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Set by cgo_on.go in the cgo flavor.
var cgoCall func()

type counters struct {
	spawned int64 // `go` statements executed (spawner side)
	created int64 // bodies that started
	exited  int64 // bodies that returned
	live    int64 // started and not yet returned
}

var (
	siteA, siteB, siteC counters
	never               = make(chan struct{})
	gate                = make(chan struct{}) // closed once the site lines are known
	bLife               time.Duration
	leakBytes           int
	sink                int64
)

//go:noinline
func bodyA(n int) {
	atomic.AddInt64(&siteA.created, 1)
	atomic.AddInt64(&siteA.live, 1)
	defer func() {
		atomic.AddInt64(&siteA.live, -1)
		atomic.AddInt64(&siteA.exited, 1)
	}()
	<-gate
	s := 0
	for i := 0; i < n; i++ {
		s += i * i
	}
	b := make([]byte, 256)
	b[0] = byte(s)
	atomic.AddInt64(&sink, int64(b[0]))
}

//go:noinline
func bodyB() {
	atomic.AddInt64(&siteB.created, 1)
	atomic.AddInt64(&siteB.live, 1)
	defer func() {
		atomic.AddInt64(&siteB.live, -1)
		atomic.AddInt64(&siteB.exited, 1)
	}()
	<-gate
	time.Sleep(bLife)
}

//go:noinline
func bodyC() {
	atomic.AddInt64(&siteC.created, 1)
	atomic.AddInt64(&siteC.live, 1)
	buf := make([]byte, leakBytes)
	<-never // never closed: this goroutine leaks
	runtime.KeepAlive(buf)
	atomic.AddInt64(&siteC.live, -1)
	atomic.AddInt64(&siteC.exited, 1)
}

// One spawner per site, each with its single `go` statement.

//go:noinline
func spawnA(n int) {
	for i := 0; i < n; i++ {
		atomic.AddInt64(&siteA.spawned, 1)
		go bodyA(1000) // SITE A
	}
}

//go:noinline
func spawnB(n int) {
	for i := 0; i < n; i++ {
		atomic.AddInt64(&siteB.spawned, 1)
		go bodyB() // SITE B
	}
}

//go:noinline
func spawnC(n int) {
	for i := 0; i < n; i++ {
		atomic.AddInt64(&siteC.spawned, 1)
		go bodyC() // SITE C
	}
}

type SiteCount struct {
	Spawned int64 `json:"spawned"`
	Created int64 `json:"created"`
	Exited  int64 `json:"exited"`
	Live    int64 `json:"live"`
}

func snap(c *counters) SiteCount {
	return SiteCount{atomic.LoadInt64(&c.spawned), atomic.LoadInt64(&c.created),
		atomic.LoadInt64(&c.exited), atomic.LoadInt64(&c.live)}
}

// Site is one creation site from the runtime's own goroutine dump.
type Site struct {
	Function string         `json:"function"`
	File     string         `json:"file"`
	Line     int            `json:"line"`
	Count    int            `json:"count"`
	States   map[string]int `json:"states"`
}

type Truth struct {
	Pid          int                  `json:"pid"`
	GoVersion    string               `json:"go_version"`
	Quiet        bool                 `json:"quiet"`
	Seq          int                  `json:"seq"`        // phase number
	QuietUntil   int64                `json:"quiet_until"` // unix ms; 0 when busy
	NumGoroutine int                  `json:"numgoroutine"`
	Baseline     int                  `json:"baseline"` // goroutines that are not churn's
	Counts       map[string]SiteCount `json:"counts"`  // "A", "B", "C"
	SiteLines    map[string]int       `json:"site_lines"`
	Sites        []Site               `json:"sites,omitempty"` // quiet phases only
	Memstats     map[string]uint64    `json:"memstats"`
	Errors       []string             `json:"errors"`
}

// sites groups runtime.Stack(all) by the "created by" function and the
// file:line under it (what pprof's goroutine profile shows with debug=2).
func sites() []Site {
	size := runtime.NumGoroutine()*1024 + (1 << 20)
	var dump []byte
	for {
		buf := make([]byte, size)
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			dump = buf[:n]
			break
		}
		size *= 2
	}
	type key struct {
		fn, file string
		line     int
	}
	idx := map[key]int{}
	var out []Site
	for _, block := range bytes.Split(dump, []byte("\n\n")) {
		lines := strings.Split(strings.TrimSpace(string(block)), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		state := ""
		h := lines[0]
		if i, j := strings.Index(h, "["), strings.LastIndex(h, "]"); i >= 0 && j > i {
			state = h[i+1 : j]
			if k := strings.Index(state, ","); k >= 0 {
				state = state[:k]
			}
		}
		for i := 1; i+1 < len(lines); i++ {
			if !strings.HasPrefix(lines[i], "created by ") {
				continue
			}
			f := strings.Fields(strings.TrimPrefix(lines[i], "created by "))
			loc := strings.TrimSpace(lines[i+1])
			if k := strings.Index(loc, " "); k >= 0 {
				loc = loc[:k]
			}
			k := strings.LastIndex(loc, ":")
			if len(f) == 0 || k < 0 {
				break
			}
			line, _ := strconv.Atoi(loc[k+1:])
			kk := key{f[0], loc[:k], line}
			n, ok := idx[kk]
			if !ok {
				n = len(out)
				idx[kk] = n
				out = append(out, Site{Function: kk.fn, File: kk.file, Line: line,
					States: map[string]int{}})
			}
			out[n].Count++
			out[n].States[state]++
			break
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Count > out[b].Count })
	return out
}

// check returns the invariant violations visible at a quiet point.
func check(t *Truth) []string {
	var errs []string
	for name, c := range t.Counts {
		if c.Created != c.Spawned {
			errs = append(errs, fmt.Sprintf("site %s: created %d != spawned %d", name, c.Created, c.Spawned))
		}
		if c.Created-c.Exited != c.Live {
			errs = append(errs, fmt.Sprintf("site %s: created %d - exited %d != live %d", name, c.Created, c.Exited, c.Live))
		}
		if name != "C" && c.Live != 0 {
			errs = append(errs, fmt.Sprintf("site %s: %d live in a quiet phase", name, c.Live))
		}
	}
	if c := t.Counts["C"]; c.Exited != 0 {
		errs = append(errs, fmt.Sprintf("site C: %d leaked goroutines exited", c.Exited))
	}
	want := t.Baseline + int(t.Counts["C"].Live)
	if t.NumGoroutine != want {
		errs = append(errs, fmt.Sprintf("NumGoroutine %d != baseline %d + leaked %d", t.NumGoroutine, t.Baseline, t.Counts["C"].Live))
	}
	for _, s := range t.Sites {
		if s.Line == siteLines["C"] && strings.HasSuffix(s.Function, "spawnC") && int64(s.Count) != t.Counts["C"].Live {
			errs = append(errs, fmt.Sprintf("runtime shows %d goroutines at site C, counters say %d", s.Count, t.Counts["C"].Live))
		}
	}
	return errs
}

var siteLines = map[string]int{}

// findSiteLines learns the line of each `go` statement from the runtime
// itself (a spawned goroutine's creation PC), so the truth never depends on
// a hand-maintained line number.
func findSiteLines() {
	for _, name := range []string{"A", "B", "C"} {
		siteLines[name] = 0
	}
	for _, s := range sites() {
		switch {
		case strings.HasSuffix(s.Function, ".spawnA"):
			siteLines["A"] = s.Line
		case strings.HasSuffix(s.Function, ".spawnB"):
			siteLines["B"] = s.Line
		case strings.HasSuffix(s.Function, ".spawnC"):
			siteLines["C"] = s.Line
		}
	}
}

func writeTruth(path string, t *Truth) error {
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

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "churn: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	truth := flag.String("truth", "", "write the truth JSON to this file")
	rateA := flag.Float64("rate-a", 500, "site A goroutines per second (short-lived)")
	rateB := flag.Float64("rate-b", 100, "site B goroutines per second (live -b-life)")
	rateC := flag.Float64("rate-c", 10, "site C goroutines per second (leak)")
	flag.DurationVar(&bLife, "b-life", 200*time.Millisecond, "lifetime of a site B goroutine")
	flag.IntVar(&leakBytes, "leak-bytes", 1024, "heap bytes each leaked goroutine retains")
	phase := flag.Duration("phase", 2*time.Second, "length of each busy and each quiet phase")
	duration := flag.Duration("duration", 0, "exit after this long (0: run until killed)")
	checkMode := flag.Bool("check", false, "verify invariants each quiet phase; exit 1 on any violation")
	flag.Parse()
	if *phase < 500*time.Millisecond || *phase <= bLife {
		fail("-phase must be at least 500ms and longer than -b-life")
	}

	if cgoCall != nil {
		cgoCall()
	}
	start := time.Now()
	// One goroutine per site first, so the site lines are known.
	spawnA(1)
	spawnB(1)
	spawnC(1)
	for atomic.LoadInt64(&siteA.created) < 1 || atomic.LoadInt64(&siteB.created) < 1 ||
		atomic.LoadInt64(&siteC.created) < 1 {
		time.Sleep(time.Millisecond)
	}
	findSiteLines()
	close(gate)

	t := &Truth{Pid: os.Getpid(), GoVersion: runtime.Version(), SiteLines: siteLines,
		Errors: []string{}}
	baseline := -1
	const tick = 10 * time.Millisecond
	var accA, accB, accC float64

	for seq := 0; ; seq++ {
		// Busy phase.
		t.Seq = seq
		t.Quiet = false
		t.QuietUntil = 0
		t.Sites = nil
		if *truth != "" && seq > 0 {
			fill(t, baseline)
			if err := writeTruth(*truth, t); err != nil {
				fail("%v", err)
			}
		}
		busyEnd := time.Now().Add(*phase)
		for time.Now().Before(busyEnd) {
			sec := tick.Seconds()
			accA += *rateA * sec
			accB += *rateB * sec
			accC += *rateC * sec
			spawnA(int(accA))
			spawnB(int(accB))
			spawnC(int(accC))
			accA -= float64(int(accA))
			accB -= float64(int(accB))
			accC -= float64(int(accC))
			time.Sleep(tick)
		}

		// Quiet phase: drain A and B, then publish.
		quietEnd := time.Now().Add(*phase)
		drainBy := time.Now().Add(bLife + 2*time.Second)
		for {
			a, b, c := snap(&siteA), snap(&siteB), snap(&siteC)
			if a.Exited == a.Spawned && b.Exited == b.Spawned && c.Created == c.Spawned {
				break
			}
			if time.Now().After(drainBy) {
				fail("goroutines did not finish: A %+v B %+v C %+v", a, b, c)
			}
			time.Sleep(time.Millisecond)
		}
		// Goroutines that returned may still be on their way out of the
		// runtime (goexit, where memdrift sees them die); give them a
		// moment to leave NumGoroutine. Before the baseline is known (the
		// first quiet point) that is NumGoroutine unchanged for 40 ms: on a
		// loaded machine a returned goroutine can wait that long for a CPU.
		for i, prev, same := 0, -1, 0; i < 200; i++ {
			n := runtime.NumGoroutine()
			if baseline >= 0 && n == baseline+int(atomic.LoadInt64(&siteC.live)) {
				break
			}
			if n == prev {
				same++
			} else {
				prev, same = n, 0
			}
			if baseline < 0 && same >= 20 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if baseline < 0 {
			// First quiet point: whatever is not a leaked C goroutine is
			// churn's fixed set (main, signal handling, timers...).
			baseline = runtime.NumGoroutine() - int(atomic.LoadInt64(&siteC.live))
		}
		t.Quiet = true
		t.QuietUntil = quietEnd.UnixMilli()
		fill(t, baseline)
		t.Sites = sites()
		errs := check(t)
		t.Errors = append(t.Errors, errs...)
		if *truth != "" {
			if err := writeTruth(*truth, t); err != nil {
				fail("%v", err)
			}
		}
		if *checkMode && len(errs) > 0 {
			fail("%s", strings.Join(errs, "; "))
		}
		if *duration > 0 && time.Since(start) >= *duration {
			if *checkMode {
				c := snap(&siteC)
				fmt.Printf("churn: ok: %d phases, A %d B %d C %d goroutines\n", seq+1,
					snap(&siteA).Created, snap(&siteB).Created, c.Created)
			}
			os.Exit(0)
		}
		time.Sleep(time.Until(quietEnd))
	}
}

func fill(t *Truth, baseline int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.NumGoroutine = runtime.NumGoroutine()
	t.Baseline = baseline
	t.Counts = map[string]SiteCount{"A": snap(&siteA), "B": snap(&siteB), "C": snap(&siteC)}
	t.Memstats = map[string]uint64{"numgc": uint64(ms.NumGC), "heap_alloc": ms.HeapAlloc,
		"total_alloc": ms.TotalAlloc}
}
