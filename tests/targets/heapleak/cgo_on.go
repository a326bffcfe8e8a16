//go:build cgo

package main

// Only in the cgo flavor: makes the binary link libc for real, so memdrift
// classifies it as "go+cgo".

/*
#include <stdlib.h>
static long heapleak_c_abs(void) { return (long)abs(-1); }
*/
import "C"

func init() {
	cgoCall = func() { C.heapleak_c_abs() }
}
