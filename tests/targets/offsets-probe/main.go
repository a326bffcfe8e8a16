// offsets-probe: the smallest program whose DWARF describes the runtime
// structures memdrift reads; scripts/gen-go-offsets builds it with every
// installed toolchain and reads the layout back with our DWARF reader.
package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
)

func main() {
	done := make(chan struct{})
	go func() { <-done }()
	_ = pprof.Lookup("heap").WriteTo(io.Discard, 0)
	close(done)
	fmt.Println(runtime.NumGoroutine() > 0)
}
