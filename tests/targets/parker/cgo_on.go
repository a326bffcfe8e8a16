//go:build cgo

package main

// Only in the cgo flavor: makes the binary link libc for real, so memdrift
// classifies it as "go+cgo" and the runtime's cgo machinery is initialised.

/*
#include <stdlib.h>
static long parker_c_getpid(void) { return (long)abs(-1); }
*/
import "C"

func init() {
	cgoCalls = func() int64 { return int64(C.parker_c_getpid()) }
}
