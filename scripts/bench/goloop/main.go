// goloop: Go workloads for scripts/bench/probe-cost, each printing ns/op.
//
//	goloop alloc N      N heap allocations (one runtime.mallocgc each)
//	goloop go N         N `go` statements, each goroutine exits at once
//	goloop go N wait    same, after a line on stdin (lets a tracer attach)
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

var sink []byte

//go:noinline
func alloc() { sink = make([]byte, 16) }

//go:noinline
func body(wg *sync.WaitGroup) { wg.Done() }

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: goloop alloc|go N [wait]")
		os.Exit(2)
	}
	n, _ := strconv.Atoi(os.Args[2])
	if len(os.Args) > 3 && os.Args[3] == "wait" {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	t0 := time.Now()
	switch os.Args[1] {
	case "alloc":
		for i := 0; i < n; i++ {
			alloc()
		}
	case "go":
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go body(&wg)
		}
		wg.Wait()
	default:
		os.Exit(2)
	}
	fmt.Printf("%.1f\n", float64(time.Since(t0).Nanoseconds())/float64(n))
}
