//go:build cgo

package main

// Only in the cgo flavor: one real C call so the binary links libc.

/*
#include <stdlib.h>
static int churn_c_abs(int v) { return abs(v); }
*/
import "C"

func init() {
	cgoCall = func() { C.churn_c_abs(-1) }
}
