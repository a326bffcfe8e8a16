//go:build cgo

package main

/*
#include <stdlib.h>
#include <string.h>

// A C library that keeps what it is given (the leak) ...
static char *keep_copy(const char *s) { return strdup(s); }
// ... and one that balances its allocations.
static size_t checksum_and_free(char *p) { size_t n = strlen(p); free(p); return n; }
*/
import "C"

import "strings"

var payload = strings.Repeat("x", 64<<10-1)

//go:noinline
func leakCString(n int) {
	s := payload[:n-1]
	C.CString(s) // never freed: the classic cgo leak
	nativeLeaked.Add(int64(n))
}

//go:noinline
func balancedCString(n int) {
	p := C.CString(payload[:n-1])
	C.checksum_and_free(p)
}

func init() {
	nativeLeak = func(n int) {
		leakCString(n)
		balancedCString(n)
	}
	_ = C.keep_copy
}
