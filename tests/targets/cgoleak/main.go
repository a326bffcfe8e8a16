//go:build !cgo

// cgoleak only means something with cgo (see leak_cgo.go); this build
// (CGO_ENABLED=0 flavors) just says so.
package main

import "fmt"

func main() {
	fmt.Println("cgoleak: built without cgo; nothing to do (use the -cgo flavor)")
}
