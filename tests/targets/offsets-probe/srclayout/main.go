// srclayout GOROOT: computes the runtime struct layout of a Go release from
// its source tree alone (go/types with the gc amd64 sizes), for releases whose
// toolchain is not installable here (1.17, 1.18, 1.20). It prints the same
// lines as offsets-dump (field/waitconst/waitstr) so scripts/gen-go-offsets
// can diff the two on every installed toolchain: agreement there is what
// makes the source-derived entries trustworthy.
package main

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"io/fs"
	"io/ioutil"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

var sizes = types.SizesFor("gc", "amd64")

func structOf(pkg *types.Package, name string) *types.Struct {
	obj := pkg.Scope().Lookup(name)
	if obj == nil {
		return nil
	}
	st, _ := obj.Type().Underlying().(*types.Struct)
	return st
}

func fieldOffset(st *types.Struct, name string) int64 {
	if st == nil {
		return -1
	}
	var fields []*types.Var
	for i := 0; i < st.NumFields(); i++ {
		fields = append(fields, st.Field(i))
	}
	offs := sizes.Offsetsof(fields)
	for i, f := range fields {
		if f.Name() == name {
			return offs[i]
		}
	}
	return -1
}

func sizeOf(st *types.Struct) int64 {
	if st == nil {
		return -1
	}
	return sizes.Sizeof(st)
}

func constInt(pkg *types.Package, name string) int64 {
	c, ok := pkg.Scope().Lookup(name).(*types.Const)
	if !ok {
		return -1
	}
	v, _ := constant.Int64Val(c.Val())
	return v
}

// cmd/dist writes runtime/internal/sys/zversion.go when it builds a
// toolchain; a bare source checkout (1.17, 1.18) lacks it. Serve a stand-in
// with the amd64/linux value instead of touching the tree.
const zversion = "package sys\n\nconst StackGuardMultiplierDefault = 1\n"

func addGeneratedFiles(goroot string) {
	sysDir := filepath.Join(goroot, "src/runtime/internal/sys")
	stub := filepath.Join(sysDir, "zversion.go")
	if _, err := os.Stat(sysDir); err != nil {
		return
	}
	if _, err := os.Stat(stub); err == nil {
		return
	}
	build.Default.ReadDir = func(dir string) ([]fs.FileInfo, error) {
		infos, err := ioutil.ReadDir(dir)
		if err == nil && filepath.Clean(dir) == sysDir {
			infos = append(infos, stubInfo{})
		}
		return infos, err
	}
	build.Default.OpenFile = func(path string) (io.ReadCloser, error) {
		if filepath.Clean(path) == stub {
			return ioutil.NopCloser(strings.NewReader(zversion)), nil
		}
		return os.Open(path)
	}
}

// The GOEXPERIMENT build tags a release's toolchain sets by default, read
// from the baseline goexperiment.Flags literal in its internal/buildcfg/exp.go.
// They select files that change layouts (go1.22's heapArena lost its pointer
// bitmap under goexperiment.allocheaders), so the tags of the Go that built
// srclayout must not stand in for them. The non-constant values there are
// conditions true on linux/amd64; an unknown one stops the run.
func defaultExperimentTags(goroot string) ([]string, error) {
	path := filepath.Join(goroot, "src/internal/buildcfg/exp.go")
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return nil, err
	}
	amd64True := map[string]bool{"true": true, "regabiSupported": true, "haveXchg8": true, "dwarf5Supported": true}
	var tags []string
	found := false
	ast.Inspect(file, func(node ast.Node) bool {
		lit, ok := node.(*ast.CompositeLit)
		if !ok || found {
			return !found
		}
		sel, ok := lit.Type.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Flags" {
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "goexperiment" {
			return true
		}
		found = true
		for _, elt := range lit.Elts {
			kv, ok1 := elt.(*ast.KeyValueExpr)
			key, ok2 := kv.Key.(*ast.Ident)
			if !ok1 || !ok2 {
				err = fmt.Errorf("%s: unexpected baseline element", path)
				return false
			}
			val, ok := kv.Value.(*ast.Ident)
			if !ok || (val.Name != "false" && !amd64True[val.Name]) {
				err = fmt.Errorf("%s: baseline %s has an unknown value", path, key.Name)
				return false
			}
			if val.Name != "false" {
				tags = append(tags, "goexperiment."+strings.ToLower(key.Name))
			}
		}
		return false
	})
	if err == nil && !found {
		err = fmt.Errorf("%s: no baseline goexperiment.Flags", path)
	}
	return tags, err
}

type stubInfo struct{}

func (stubInfo) Name() string       { return "zversion.go" }
func (stubInfo) Size() int64        { return int64(len(zversion)) }
func (stubInfo) Mode() fs.FileMode  { return 0o644 }
func (stubInfo) ModTime() time.Time { return time.Time{} }
func (stubInfo) IsDir() bool        { return false }
func (stubInfo) Sys() interface{}   { return nil }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: srclayout GOROOT")
		os.Exit(2)
	}
	goroot := os.Args[1]
	build.Default.GOROOT = goroot
	build.Default.GOOS = "linux"
	build.Default.GOARCH = "amd64"
	build.Default.CgoEnabled = false
	build.Default.Compiler = "gc"
	tags, err := defaultExperimentTags(goroot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "srclayout:", err)
		os.Exit(1)
	}
	build.Default.ToolTags = append(tags, "amd64.v1")
	addGeneratedFiles(goroot)
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "source", nil).(types.ImporterFrom)
	pkg, err := imp.ImportFrom("runtime", filepath.Join(goroot, "src"), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "srclayout:", err)
		os.Exit(1)
	}

	g := structOf(pkg, "g")
	stack := structOf(pkg, "stack")
	m := structOf(pkg, "m")
	gc := structOf(pkg, "gcControllerState")
	ms := structOf(pkg, "mstats")
	bucket := structOf(pkg, "bucket")
	memRecord := structOf(pkg, "memRecord")
	mheap := structOf(pkg, "mheap")
	heapArena := structOf(pkg, "heapArena")
	mspan := structOf(pkg, "mspan")
	memRecordCycle := structOf(pkg, "memRecordCycle")
	special := structOf(pkg, "special")
	specialprofile := structOf(pkg, "specialprofile")
	allArenas := fieldOffset(mheap, "allArenas")
	if allArenas < 0 {
		allArenas = fieldOffset(mheap, "heapArenas") // its name from 1.25
	}
	gStack := fieldOffset(g, "stack")
	type row struct {
		name string
		v    int64
	}
	rows := []row{
		{"g_size", sizeOf(g)},
		{"g_stack_lo", gStack + fieldOffset(stack, "lo")},
		{"g_stack_hi", gStack + fieldOffset(stack, "hi")},
		{"g_m", fieldOffset(g, "m")},
		{"g_atomicstatus", fieldOffset(g, "atomicstatus")},
		{"g_goid", fieldOffset(g, "goid")},
		{"g_waitsince", fieldOffset(g, "waitsince")},
		{"g_waitreason", fieldOffset(g, "waitreason")},
		{"g_parent_goid", fieldOffset(g, "parentGoid")},
		{"g_gopc", fieldOffset(g, "gopc")},
		{"g_startpc", fieldOffset(g, "startpc")},
		{"m_alllink", fieldOffset(m, "alllink")},
		{"m_ncgocall", fieldOffset(m, "ncgocall")},
		{"m_procid", fieldOffset(m, "procid")},
		{"m_curg", fieldOffset(m, "curg")},
		{"gc_heap_live", fieldOffset(gc, "heapLive")},
		{"gc_heap_marked", fieldOffset(gc, "heapMarked")},
		{"gc_heap_goal", fieldOffset(gc, "heapGoal")},
		{"gc_percent_heap_goal", fieldOffset(gc, "gcPercentHeapGoal")},
		{"gc_memory_limit", fieldOffset(gc, "memoryLimit")},
		{"gc_total_alloc", fieldOffset(gc, "totalAlloc")},
		{"gc_total_free", fieldOffset(gc, "totalFree")},
		{"ms_numgc", fieldOffset(ms, "numgc")},
		{"ms_last_gc_nanotime", fieldOffset(ms, "last_gc_nanotime")},
		{"bucket_header_size", sizeOf(bucket)},
		{"bucket_allnext", fieldOffset(bucket, "allnext")},
		{"bucket_nstk", fieldOffset(bucket, "nstk")},
		{"bucket_size", fieldOffset(bucket, "size")},
		{"memrecord_size", sizeOf(memRecord)},
		{"memrecord_cycle_size", sizeOf(memRecordCycle)},
		{"mheap_arenas", fieldOffset(mheap, "arenas")},
		{"mheap_all_arenas", allArenas},
		{"heaparena_spans", fieldOffset(heapArena, "spans")},
		{"heaparena_page_specials", fieldOffset(heapArena, "pageSpecials")},
		{"mspan_start_addr", fieldOffset(mspan, "startAddr")},
		{"mspan_npages", fieldOffset(mspan, "npages")},
		{"mspan_specials", fieldOffset(mspan, "specials")},
		{"special_kind", fieldOffset(special, "kind")},
		{"specialprofile_b", fieldOffset(specialprofile, "b")},
		{"status_dead", constInt(pkg, "_Gdead")},
		{"status_scan_bit", constInt(pkg, "_Gscan")},
		{"status_leaked", constInt(pkg, "_Gleaked")},
		{"kind_special_profile", constInt(pkg, "_KindSpecialProfile")},
	}
	for _, r := range rows {
		fmt.Printf("field %s %d\n", r.name, r.v)
	}

	// waitReason constants, in value order as the DWARF dump lists them.
	type wc struct {
		v    int64
		name string
	}
	var consts []wc
	for _, name := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok || len(name) < 10 || name[:10] != "waitReason" {
			continue
		}
		v, _ := constant.Int64Val(c.Val())
		consts = append(consts, wc{v, name})
	}
	sort.Slice(consts, func(i, j int) bool { return consts[i].v < consts[j].v })
	for _, c := range consts {
		fmt.Printf("waitconst %d %s\n", c.v, c.name)
	}

	// runtime.waitReasonStrings is a keyed [...]string literal in runtime2.go.
	file, err := parser.ParseFile(fset, filepath.Join(goroot, "src/runtime/runtime2.go"), nil, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "srclayout:", err)
		os.Exit(1)
	}
	texts := map[int64]string{}
	n := int64(0)
	ast.Inspect(file, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "waitReasonStrings" || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.CompositeLit)
		if !ok {
			return false
		}
		for _, elt := range lit.Elts {
			kv, ok := elt.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, ok1 := kv.Key.(*ast.Ident)
			val, ok2 := kv.Value.(*ast.BasicLit)
			if !ok1 || !ok2 {
				continue
			}
			idx := constInt(pkg, key.Name)
			s, err := strconv.Unquote(val.Value)
			if idx < 0 || err != nil {
				continue
			}
			texts[idx] = s
			if idx+1 > n {
				n = idx + 1
			}
		}
		return false
	})
	if n == 0 {
		fmt.Fprintln(os.Stderr, "srclayout: runtime.waitReasonStrings not found")
		os.Exit(1)
	}
	for i := int64(0); i < n; i++ {
		fmt.Printf("waitstr %d %s\n", i, texts[i])
	}
}
