// parker: a Go test target that parks goroutines at known `go` statements in
// known states and then stays still, so memdrift's view can be compared with
// the target's own (runtime.NumGoroutine, ReadMemStats, goroutine stacks).
//
//	parker -truth FILE [-chan 7 -select 5 -sleep 3 -mutex 4 -io 2] [-many N] [-heap MB]
//
// When everything is parked it writes FILE (tmp + rename). On SIGUSR1 it
// rewrites it with fresh numbers. It never exits on its own and does not
// allocate while parked, so no GC runs between a snapshot and the truth.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Set by cgo_on.go in the cgo flavor; makes one real C call at start.
var cgoCalls func() int64

var (
	parked   int64 // goroutines that reached their parking point
	never    = make(chan int)
	never2   = make(chan int)
	mu       sync.Mutex
	retained [][]byte
	conns    []net.Conn
	listener net.Listener
)

//go:noinline
func parkChanRecv() {
	atomic.AddInt64(&parked, 1)
	<-never
}

//go:noinline
func parkSelect() {
	atomic.AddInt64(&parked, 1)
	select {
	case <-never:
	case <-never2:
	}
}

//go:noinline
func parkSleep() {
	atomic.AddInt64(&parked, 1)
	time.Sleep(time.Hour)
}

//go:noinline
func parkMutex() {
	atomic.AddInt64(&parked, 1)
	mu.Lock()
}

//go:noinline
func parkIO(c net.Conn) {
	var b [1]byte
	atomic.AddInt64(&parked, 1)
	c.Read(b[:])
}

//go:noinline
func parkMany() {
	atomic.AddInt64(&parked, 1)
	<-never
}

// One spawner per group, each with its single `go` statement: the creation
// sites (gopc) memdrift must report are these lines.

//go:noinline
func spawnChanRecv(n int) {
	for i := 0; i < n; i++ {
		go parkChanRecv() // SITE chanrecv
	}
}

//go:noinline
func spawnSelect(n int) {
	for i := 0; i < n; i++ {
		go parkSelect() // SITE select
	}
}

//go:noinline
func spawnSleep(n int) {
	for i := 0; i < n; i++ {
		go parkSleep() // SITE sleep
	}
}

//go:noinline
func spawnMutex(n int) {
	for i := 0; i < n; i++ {
		go parkMutex() // SITE mutex
	}
}

//go:noinline
func spawnIO(cs []net.Conn) {
	for _, c := range cs {
		go parkIO(c) // SITE io
	}
}

//go:noinline
func spawnMany(n int) {
	for i := 0; i < n; i++ {
		go parkMany() // SITE many
	}
}

// gor is one goroutine of a runtime.Stack(all) dump.
type gor struct {
	state   string // "chan receive", without ", N minutes"
	entry   string // bottom frame function
	creator string // "created by" function
	file    string
	line    int
}

// Site is one creation site in the truth file.
type Site struct {
	Function string         `json:"function"` // "created by" function (pprof)
	Entry    string         `json:"entry"`    // goroutine entry function
	File     string         `json:"file"`
	Line     int            `json:"line"`
	Count    int            `json:"count"`
	States   map[string]int `json:"states"`
}

type Truth struct {
	Pid          int            `json:"pid"`
	NumGoroutine int            `json:"numgoroutine"`
	GoVersion    string         `json:"go_version"`
	CgoCalls     int64          `json:"cgo_calls"` // runtime.NumCgoCall()
	Memstats     map[string]any `json:"memstats"`
	Sites        []Site         `json:"sites"`
	Entries      map[string]int `json:"entries"`
	Groups       map[string]int `json:"groups"` // requested count per group
	Seq          int            `json:"seq"`    // 0 at start, +1 per SIGUSR1
	Unparsed     int            `json:"unparsed"`
}

// allStacks returns the text of runtime.Stack(all) (what
// pprof.Lookup("goroutine").WriteTo(w, 2) prints), growing the buffer.
func allStacks() []byte {
	size := runtime.NumGoroutine()*1024 + (1 << 20)
	for {
		buf := make([]byte, size)
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		size *= 2
	}
}

// parseStacks splits a dump into goroutines. Format per goroutine:
//
//	goroutine 18 [chan receive, 2 minutes]:
//	main.parkChanRecv()
//		/path/main.go:57 +0x2c
//	created by main.spawnChanRecv in goroutine 1     (1.21+: " in goroutine N")
//		/path/main.go:101 +0x25
func parseStacks(dump []byte) (gs []gor, unparsed int) {
	for _, block := range bytes.Split(dump, []byte("\n\n")) {
		lines := strings.Split(strings.TrimSpace(string(block)), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		var g gor
		h := lines[0]
		if i, j := strings.Index(h, "["), strings.LastIndex(h, "]"); i >= 0 && j > i {
			g.state = h[i+1 : j]
			if k := strings.Index(g.state, ","); k >= 0 {
				g.state = g.state[:k]
			}
		}
		created := -1
		for i := 1; i < len(lines); i++ {
			if strings.HasPrefix(lines[i], "created by ") {
				created = i
				break
			}
		}
		if created < 0 {
			// main goroutine, or a dump truncated in the middle
			continue
		}
		f := strings.Fields(strings.TrimPrefix(lines[created], "created by "))
		if len(f) == 0 || created+1 >= len(lines) {
			unparsed++
			continue
		}
		g.creator = f[0]
		loc := strings.TrimSpace(lines[created+1])
		if k := strings.Index(loc, " "); k >= 0 {
			loc = loc[:k]
		}
		k := strings.LastIndex(loc, ":")
		if k < 0 {
			unparsed++
			continue
		}
		g.file = loc[:k]
		g.line, _ = strconv.Atoi(loc[k+1:])
		// Entry function: the last frame (function line) above "created by".
		for i := created - 2; i >= 1; i-- {
			if !strings.HasPrefix(lines[i], "\t") {
				fn := lines[i]
				if p := strings.LastIndex(fn, "("); p > 0 {
					fn = fn[:p]
				}
				g.entry = fn
				break
			}
		}
		gs = append(gs, g)
	}
	return gs, unparsed
}

func group(gs []gor) ([]Site, map[string]int) {
	type key struct {
		fn, file string
		line     int
	}
	idx := map[key]int{}
	var sites []Site
	entries := map[string]int{}
	for _, g := range gs {
		k := key{g.creator, g.file, g.line}
		i, ok := idx[k]
		if !ok {
			i = len(sites)
			idx[k] = i
			sites = append(sites, Site{Function: g.creator, Entry: g.entry,
				File: g.file, Line: g.line, States: map[string]int{}})
		}
		sites[i].Count++
		sites[i].States[g.state]++
		entries[g.entry]++
	}
	sort.Slice(sites, func(a, b int) bool { return sites[a].Count > sites[b].Count })
	return sites, entries
}

func writeTruth(path string, t *Truth) error {
	var ms runtime.MemStats
	// Memory numbers first: nothing below may shift them before they are read.
	runtime.ReadMemStats(&ms)
	t.NumGoroutine = runtime.NumGoroutine()
	t.CgoCalls = runtime.NumCgoCall()
	t.Memstats = map[string]any{
		"numgc":       ms.NumGC,
		"heap_alloc":  ms.HeapAlloc,
		"total_alloc": ms.TotalAlloc,
		"heap_inuse":  ms.HeapInuse,
		"next_gc":     ms.NextGC,
		"mallocs":     ms.Mallocs,
		"frees":       ms.Frees,
	}
	gs, unparsed := parseStacks(allStacks())
	t.Sites, t.Entries = group(gs)
	t.Unparsed = unparsed
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	gs = nil
	// Collect the garbage of this report (the stack dump can be tens of
	// MiB) before the file appears: a GC it would trigger must not land
	// between the caller's next snapshot and the next truth.
	runtime.GC()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// settled reports whether every goroutine we created is blocked (none
// runnable, running or in a syscall).
func settled() bool {
	gs, _ := parseStacks(allStacks())
	for _, g := range gs {
		if !strings.HasPrefix(g.creator, "main.spawn") {
			continue
		}
		switch g.state {
		case "runnable", "running", "syscall":
			return false
		}
	}
	return true
}

func main() {
	truth := flag.String("truth", "", "write the truth JSON to this file")
	nChan := flag.Int("chan", 7, "goroutines blocked on channel receive")
	nSelect := flag.Int("select", 5, "goroutines blocked in select")
	nSleep := flag.Int("sleep", 3, "goroutines in time.Sleep(1h)")
	nMutex := flag.Int("mutex", 4, "goroutines blocked on sync.Mutex.Lock")
	nIO := flag.Int("io", 2, "goroutines blocked reading a loopback TCP conn")
	many := flag.Int("many", 0, "extra goroutines blocked on channel receive")
	heapMB := flag.Int("heap", 8, "MiB of heap to retain")
	flag.Parse()

	if cgoCalls != nil {
		cgoCalls()
	}

	// Retain heap in 64 KiB pieces, touched so they are really resident.
	for i := 0; i < *heapMB*16; i++ {
		b := make([]byte, 64<<10)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		retained = append(retained, b)
	}

	var err error
	listener, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "parker:", err)
		os.Exit(1)
	}
	var ioConns []net.Conn
	for i := 0; i < *nIO; i++ {
		c, err := net.Dial("tcp", listener.Addr().String())
		if err != nil {
			fmt.Fprintln(os.Stderr, "parker:", err)
			os.Exit(1)
		}
		s, err := listener.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "parker:", err)
			os.Exit(1)
		}
		conns = append(conns, c, s)
		ioConns = append(ioConns, c)
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1)

	mu.Lock() // held forever: parkMutex goroutines wait on it
	spawnChanRecv(*nChan)
	spawnSelect(*nSelect)
	spawnSleep(*nSleep)
	spawnMutex(*nMutex)
	spawnIO(ioConns)
	spawnMany(*many)

	want := int64(*nChan + *nSelect + *nSleep + *nMutex + *nIO + *many)
	for atomic.LoadInt64(&parked) < want {
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 400 && !settled(); i++ {
		time.Sleep(10 * time.Millisecond)
	}

	t := &Truth{Pid: os.Getpid(), GoVersion: runtime.Version(),
		Groups: map[string]int{"chanrecv": *nChan, "select": *nSelect,
			"sleep": *nSleep, "mutex": *nMutex, "io": *nIO, "many": *many}}
	if *truth != "" {
		runtime.GC()
		if err := writeTruth(*truth, t); err != nil {
			fmt.Fprintln(os.Stderr, "parker:", err)
			os.Exit(1)
		}
	}
	for range sigs {
		t.Seq++
		if *truth != "" {
			if err := writeTruth(*truth, t); err != nil {
				fmt.Fprintln(os.Stderr, "parker:", err)
			}
		}
	}
}
