// goleak: goroutines blocked forever on channels that nothing else can
// reach (the Go runtime's own leak detector, 1.26+, proves them leaked once
// someone requests its goroutineleak profile), beside goroutines blocked on
// a channel main still holds (not leaked), and net/http/pprof on loopback.
//
//	goleak -truth FILE N    leaks N goroutines in main.leakOne
//
// The truth file: {"pid", "go_version", "port", "leaked_created", "kept"}.
package main

import (
	"encoding/json"
	"flag"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"time"
)

//go:noinline
func leakOne() {
	ch := make(chan int) // unreachable once leakOne returns
	go func() { <-ch }()
}

//go:noinline
func keepOne(keep chan int) {
	go func() { <-keep }()
}

func main() {
	truth := flag.String("truth", "", "truth file")
	flag.Parse()
	n, _ := strconv.Atoi(flag.Arg(0))
	for i := 0; i < n; i++ {
		leakOne()
	}
	keep := make(chan int)
	const kept = 5
	for i := 0; i < kept; i++ {
		keepOne(keep)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(ln, nil)
	out, _ := json.Marshal(map[string]interface{}{
		"pid": os.Getpid(), "go_version": runtime.Version(),
		"port": ln.Addr().(*net.TCPAddr).Port, "leaked_created": n, "kept": kept,
	})
	if err := os.WriteFile(*truth+".tmp", out, 0o644); err != nil {
		panic(err)
	}
	os.Rename(*truth+".tmp", *truth)
	for {
		time.Sleep(time.Hour)
		keep <- 1 // keep stays reachable from main's stack
	}
}
