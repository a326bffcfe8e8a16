"""Go heap probes (daemon/trace/heap_trace.c, bpf/heap_trace.bpf.c) against real Go
programs, through the developer tool tests/tools/heap_dump (the module's
JSON live view, one line per interval; built here with the Makefile's own
flags) until `memdrift attach` wires it.

- Profile tier vs watch tier (every toolchain; plain, stripped, pie): on
  heapleak, the probes' in-use bytes per site equal heapprof's read of the
  runtime buckets taken right after (same heap_dump line), within two
  samples at the retaining site (justification at TIER_SAMPLES); the churn
  site holds no live sample; the oldest live sample at the retaining site is
  about as old as the attach; every probe stack that was checked matches the
  runtime bucket's stack; nothing dropped. By default one probe
  (mProf_Malloc) and the heap walk for frees (no freeSpecial probe; the walk
  must be available on every toolchain and flavor here); the `_free_probe`
  cases check the freeSpecial variant (plain builds) the same way.
- Trace tier (every toolchain): a generated program allocates a known mix
  between two runtime.ReadMemStats calls inside two quiet gaps; mallocgc
  counts over the gap-to-gap window equal the Mallocs delta and the bytes
  equal the TotalAlloc delta (tolerance at TRACE_*); the byte-sampled stacks
  put the biggest allocator on top with its bytes within 10%.
- MemProfileRate 0 (the same program: nothing references the profile): the
  profile tier says so plainly and points to the trace tier.
- Probe stacks through wrapper frames (every toolchain): with
  MemProfileRate 1, json.Marshal of maps allocates under
  encoding/json.mapEncoder.encode-fm, a method-value wrapper the runtime
  leaves out of its bucket stacks and the kernel's frame walk keeps; every
  bucket stack checked must still match.
"""

import json
import os
import signal
import subprocess
import time

import lib

RETAIN = "main.retainBlock"
CHURN = "main.churnGarbage"
# 16 MiB at 4 MiB/s: the probes are in well before most samples are taken.
HEAPLEAK_ARGS = ("-rate", 4096, "-cap", 16, "-churn", 4096)
# Both tiers count the same runtime samples; at heapleak's quiet point two
# runtime.GC() calls have swept and published everything, so the only
# difference left is the attach race: a sample (or a free) hit in the few
# milliseconds between the probes going live and the bucket baseline walk
# is counted twice. Two samples' worth at the site covers it.
TIER_SAMPLES = 2
# Trace window: the runtime allocates nothing by itself in the quiet gaps
# (the program sleeps) but timers or a forced GC might: 1% + 50 objects.
TRACE_ALLOCS_REL, TRACE_ALLOCS_ABS = 0.01, 50
# Bytes: the sizes are exact size classes (64, 4096) or whole pages (96 KiB),
# so TotalAlloc (slot sizes) equals requested bytes; tiny 8-byte objects
# pack two per 16-byte block, which TotalAlloc counts as 16: equal too, but
# for one partly used block. 1% covers stray runtime allocations.
TRACE_BYTES_REL = 0.01

ALLOCWIN_GO = r'''
package main

import (
	"encoding/json"
	"os"
	"runtime"
	"time"
)

var (
	sinkB []byte
	sinkP *int64
)

//go:noinline
func small() { sinkB = make([]byte, 64) }

//go:noinline
func tiny() { x := new(int64); *x = 1; sinkP = x }

//go:noinline
func mid() { sinkB = make([]byte, 4096) }

//go:noinline
func large() { sinkB = make([]byte, 96<<10) }

func main() {
	var m1, m2 runtime.MemStats
	runtime.ReadMemStats(&m1) // warm: the first call may set things up
	time.Sleep(2500 * time.Millisecond)
	t1 := float64(time.Now().UnixNano()) / 1e9
	runtime.ReadMemStats(&m1)
	for i := 0; i < 20000; i++ {
		small()
	}
	for i := 0; i < 20000; i++ {
		tiny()
	}
	for i := 0; i < 2000; i++ {
		mid()
	}
	for i := 0; i < 200; i++ {
		large()
	}
	runtime.ReadMemStats(&m2)
	t2 := float64(time.Now().UnixNano()) / 1e9
	time.Sleep(1500 * time.Millisecond)
	b, _ := json.Marshal(map[string]any{
		"t1": t1, "t2": t2, "mallocs": m2.Mallocs - m1.Mallocs,
		"total_alloc": m2.TotalAlloc - m1.TotalAlloc,
		"large_bytes": 200 * (96 << 10), "go": runtime.Version(),
	})
	os.WriteFile(os.Args[1]+".tmp", b, 0o644)
	os.Rename(os.Args[1]+".tmp", os.Args[1])
	time.Sleep(time.Hour) // select{} would be a deadlock: no other goroutine
}
'''


def build_dump():
    return lib.tool('heap_dump')


class Dump(lib.ToolLog):
    """A running heap_dump; its JSON lines read from its log file."""

    def __init__(self, t, pid, *args):
        super().__init__(t, 'heap_dump', [pid] + list(args))


def by_function(sites, key="inuse_bytes"):
    out = {}
    for s in sites:
        out[s["function"]] = out.get(s["function"], 0) + int(s[key] or 0)
    return out


def check_no_drops(stats):
    for k in ("pending_misses", "pending_full", "objects_full", "buckets_full",
              "profile_stack_errors", "trace_sites_full", "read_errors", "kernel_missed"):
        if stats.get(k):
            lib.fail("lost events: %s = %d (%s)" % (k, stats[k], stats))


def tier_cases():
    out = [(i, a + (False,)) for i, a in lib.target_cases(flavors=("plain", "stripped", "pie"))]
    # 1.26+: the heap walk with the Green Tea GC (default) and without it
    newer = [v for v in lib.versions() if int(v.split(".")[1]) >= 26]
    out += [(i, a + (False,)) for i, a in lib.target_cases(flavors=("nogreentea", "cgo"),
                                                           vers=newer)]
    out += [(i + "_free_probe", a + (True,)) for i, a in lib.target_cases(flavors=("plain",))]
    # the mProf_Free probe (used where the special layout is unknown): its
    # size comes from the bucket, as 1.27's mProf_Free(b) passes none
    out += [(i + "_mprof_free", a + ("mprof_free",))
            for i, a in lib.target_cases(flavors=("plain",), vers=lib.versions()[-3:])]
    return out


@lib.cases(tier_cases)
@lib.timeout(90)
def test_tiers_agree(t, ver, flavor, free_probe):
    lib.need_root_bpf()
    build_dump()  # before the target: the probes must be in early
    tg = t.start_target(lib.target(ver, "heapleak", flavor), *HEAPLEAK_ARGS, wait=False)
    mprof_free = free_probe == "mprof_free"
    d = Dump(t, tg.pid, "-i", "250", "-w", "-n", "50", "-v",
             *(["--mprof-free"] if mprof_free else ["--free-probe"] if free_probe else []))
    names = {p["name"]: p for p in d.ready["probes"]}
    # mProf_Malloc probed in its body after stkbucket (bucket and object in
    # one hit) on every toolchain here: no setprofilebucket probe needed.
    if "runtime.setprofilebucket" in names:
        lib.fail("mProf_Malloc body not recognised, three probes planned: %s" % sorted(names))
    want = ["runtime.mProf_Malloc"] + (["runtime.mProf_Free"] if mprof_free else
                                       ["runtime.freeSpecial"] if free_probe else [])
    if sorted(names) != sorted(want):
        lib.fail("probes %s, want %s" % (sorted(names), want))
    for n in want:
        if not names[n]["emulated"]:
            lib.fail("%s probed on a single-stepped instruction: %s" % (n, names[n]))
    truth = tg.wait_truth(timeout=60)
    wall = os.path.getmtime(tg.truth_path)
    o = d.wait(lambda o: "heap_profile" in o and o["ts"] > wall + 0.3, 20,
               "a view after the target's quiet point")
    prof = o["heap_trace"]["profile"]
    assert prof["state"] == "on", prof
    mine = by_function(prof["sites"])
    watch = by_function(o["heap_profile"])
    if RETAIN not in mine:
        lib.fail("probe tier lacks %s: %s" % (RETAIN, mine))
    site = [s for s in prof["sites"] if s["function"] == RETAIN][0]
    per_sample = site["inuse_bytes"] / max(1, site["live_samples"])
    for fn in set(mine) | set(watch):
        if abs(mine.get(fn, 0) - watch.get(fn, 0)) > TIER_SAMPLES * per_sample:
            lib.fail("in-use at %s: probes %d B, runtime buckets %d B (tolerance %d samples "
                     "of %.0f B)\nprobes %s\nbuckets %s" % (fn, mine.get(fn, 0), watch.get(fn, 0),
                                                           TIER_SAMPLES, per_sample, mine, watch))
    lib.within(mine[RETAIN], truth["by_function"][RETAIN], 0.20,
               "in-use at %s vs the target's own profile" % RETAIN)
    churn = [s for s in prof["sites"] if s["function"] == CHURN]
    if churn and churn[0]["live_samples"]:
        lib.fail("churn site keeps %d live samples after two GCs" % churn[0]["live_samples"])
    st = o["heap_trace"]["stats"]
    if mprof_free:
        # bucket counts only, no object ages: churn freed to the byte, and
        # each free counted at the bucket's object size (1.27 passes none)
        if not churn or not churn[0]["freed_samples"]:
            lib.fail("no churn frees seen through mProf_Free: %s" % churn)
        c = churn[0]
        freed_each = c["freed_bytes"] / c["freed_samples"]
        object_size = c["alloc_bytes"] / max(1, c["alloc_objects"])
        if abs(freed_each - object_size) > 0.01 * object_size:
            lib.fail("mProf_Free counted %.0f B per freed sample at %s, objects are %.0f B"
                     % (freed_each, CHURN, object_size))
        if c["inuse_bytes"] != watch.get(CHURN, 0):
            lib.fail("churn in use %d B from mProf_Free, buckets %d B"
                     % (c["inuse_bytes"], watch.get(CHURN, 0)))
        check_no_drops(st)
        if st["frees_from"] != "probe" or not st["mprof_free_hits"]:
            lib.fail("frees not from the mProf_Free probe: %s" % st)
        t.note("%s probes %.2f MiB, buckets %.2f MiB, target %.2f MiB; %d mProf_Free hits, "
               "%.0f B per churn free = object size %.0f B"
               % (RETAIN, mine[RETAIN] / 2**20, watch.get(RETAIN, 0) / 2**20,
                  truth["by_function"][RETAIN] / 2**20, st["mprof_free_hits"], freed_each,
                  object_size))
        d.stop()
        return
    # Sample ages: retained samples taken since attach; the oldest about as
    # old as the attach (the first retained sample follows within ~0.5 s).
    attach_age = prof["attach_age_s"]
    age = site["oldest_sample_age_s"]
    if site["live_samples_since_attach"] < site["live_samples"] * 0.6:
        lib.fail("only %d of %d live samples at %s seen since attach"
                 % (site["live_samples_since_attach"], site["live_samples"], RETAIN))
    if age is None or not (attach_age - 2.0 <= age <= attach_age + 0.05):
        lib.fail("oldest live sample at %s is %s s old; attached %.2f s ago"
                 % (RETAIN, age, attach_age))
    check_no_drops(st)
    if st["frees_from"] != ("probe" if free_probe else "heap_walk"):
        lib.fail("frees from %s: %s" % (st["frees_from"], st))
    if not free_probe:
        w = st["heap_walk"]
        if w["failures"] or w["rejected"] or w["read_errors"] or w["truncated"] or w["walks"] < 5:
            lib.fail("heap walk not clean: %s" % w)
        # the walk sees every live sample: the site counts add up to it
        if w["live_samples"] != sum(s["live_samples"] for s in prof["sites"]):
            lib.fail("walk found %d live samples, sites hold %d"
                     % (w["live_samples"], sum(s["live_samples"] for s in prof["sites"])))
    # The probe's own frame walk is a cross-check of the bucket stacks (the
    # numbers come from the buckets): every one checked must match.
    if st["stacks_checked"] < 2 or st["stacks_matched"] != st["stacks_checked"]:
        lib.fail("probe stacks vs runtime bucket stacks: %d of %d match: %s"
                 % (st["stacks_matched"], st["stacks_checked"],
                    "\n".join(l for l in d.text().splitlines() if not l.startswith("{"))))
    if st["sampled_object_frees"] == 0:
        lib.fail("no sampled object seen dying (%s) though churn was swept: %s"
                 % ("freeSpecial" if free_probe else "heap walk", st))
    t.note("%s probes %.2f MiB, buckets %.2f MiB, target %.2f MiB; oldest sample %.1fs "
           "(attach %.1fs); stacks %d/%d" % (RETAIN, mine[RETAIN] / 2**20, watch.get(RETAIN, 0) / 2**20,
                               truth["by_function"][RETAIN] / 2**20, age, attach_age,
                               st["stacks_matched"], st["stacks_checked"]))
    d.stop()


def go_env():
    return dict(os.environ, GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod",
                GOCACHE=os.path.join(lib.OUT, "gocache"), GOTELEMETRY="off", CGO_ENABLED="0")


def build_go(t, ver, name, source):
    gobin = "/usr/lib/go-%s/bin/go" % ver[len("go"):]
    if not os.access(gobin, os.X_OK):
        lib.skip_or_fail("no toolchain %s" % gobin)
    src = os.path.join(t.tmp, name)
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "main.go"), "w") as f:
        f.write(source)
    with open(os.path.join(src, "go.mod"), "w") as f:
        f.write("module %s\n\ngo 1.19\n" % name)
    out = os.path.join(t.tmp, "%s-%s" % (name, ver))
    p = subprocess.run([gobin, "build", "-o", out, "."], cwd=src, env=go_env(),
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        lib.fail("building %s with %s: %s" % (name, ver, p.stderr[-600:]))
    return out


def build_allocwin(t, ver):
    return build_go(t, ver, "allocwin", ALLOCWIN_GO)


def wait_exec(proc, exe):
    """spawn returns at fork: wait for the exec."""
    deadline = time.monotonic() + 10
    while True:
        try:
            if os.readlink("/proc/%d/exe" % proc.pid) == os.path.realpath(exe):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            lib.fail("%s did not start" % exe)
        time.sleep(0.01)


def trace_cases():
    return [(v, (v,)) for v in lib.versions()]


@lib.cases(trace_cases)
@lib.timeout(90)
def test_trace_window(t, ver):
    lib.need_root_bpf()
    build_dump()
    exe = build_allocwin(t, ver)
    res = os.path.join(t.tmp, "window.json")
    proc, _ = t.spawn([exe, res], log_name="allocwin.log")
    wait_exec(proc, exe)
    d = Dump(t, proc.pid, "-i", "200", "--trace", "-s", 65536, "-n", "10")
    if d.ready["profile_state"] != 2 or "MemProfileRate=0" not in d.ready["message"] or \
            "--trace heap" not in d.ready["message"]:
        lib.fail("MemProfileRate 0 not reported plainly: %s" % d.ready)
    deadline = time.monotonic() + 30
    while not os.path.exists(res):
        if time.monotonic() > deadline or proc.poll() is not None:
            lib.fail("allocation program wrote no window: rc %s" % proc.poll())
        time.sleep(0.05)
    with open(res) as f:
        w = json.load(f)
    lines = [o for o in d.lines() if "heap_trace" in o and "trace" in o["heap_trace"]
             and "allocs" in o["heap_trace"]["trace"]]
    before = [o for o in lines if w["t1"] - 1.2 < o["ts"] < w["t1"] - 0.05]
    after = [o for o in lines if w["t2"] + 0.05 < o["ts"] < w["t2"] + 1.2]
    if d.ready["ts"] > w["t1"] - 0.3 or not before or not after:
        lib.fail("no views in the quiet gaps (ready %.2f, window %.2f-%.2f, %d views)"
                 % (d.ready["ts"], w["t1"], w["t2"], len(lines)))
    a, b = before[-1]["heap_trace"]["trace"], after[0]["heap_trace"]["trace"]
    allocs, nbytes = b["allocs"] - a["allocs"], b["bytes"] - a["bytes"]
    if abs(allocs - w["mallocs"]) > TRACE_ALLOCS_REL * w["mallocs"] + TRACE_ALLOCS_ABS:
        lib.fail("mallocgc calls %d vs MemStats.Mallocs delta %d" % (allocs, w["mallocs"]))
    lib.within(nbytes, w["total_alloc"], TRACE_BYTES_REL, "bytes vs MemStats.TotalAlloc delta")
    hist = {h["min"]: h["count"] for h in b["size_histogram"]}
    for lo, n in ((64, 20000), (8, 20000), (4096, 2000), (65536, 200)):
        if hist.get(lo, 0) < n:
            lib.fail("size histogram [%d, %d): %d < %d" % (lo, 2 * lo, hist.get(lo, 0), n))
    top = b["sites"][0]
    if top["function"] != "main.large":
        lib.fail("top byte-sampled site is %s, want main.large: %s"
                 % (top["function"], [(s["function"], s["samples"]) for s in b["sites"]]))
    lib.within(top["est_bytes"], w["large_bytes"], 0.10, "sampled bytes at main.large")
    check_no_drops(after[0]["heap_trace"]["stats"])
    t.note("%s mallocgc %d vs Mallocs %d; bytes %d vs TotalAlloc %d; main.large ~%d B"
           % (ver, allocs, w["mallocs"], nbytes, w["total_alloc"], top["est_bytes"]))
    d.stop()
    # Profile tier alone on a MemProfileRate 0 target: one plain error.
    p = subprocess.run([build_dump(), str(proc.pid), "-d", "0.1"], capture_output=True,
                       text=True, timeout=30)
    if p.returncode == 0 or "MemProfileRate=0" not in p.stderr or "--trace heap" not in p.stderr:
        lib.fail("profile tier on a MemProfileRate 0 target: rc %d, stderr %r"
                 % (p.returncode, p.stderr))


WRAPPERS_GO = r'''
package main

import (
	"encoding/json"
	"os"
	"runtime"
	"time"
)

var sink [][]byte

func main() {
	runtime.MemProfileRate = 1 // every allocation a sample: every stack checked
	for {
		if _, err := os.Stat(os.Args[1]); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 200; i++ {
		b, _ := json.Marshal(map[string]any{"a": i, "b": []int{1, 2}, "c": map[string]int{"x": i}})
		sink = append(sink, b)
	}
	os.WriteFile(os.Args[2], []byte("done"), 0o644)
	time.Sleep(time.Hour)
}
'''


@lib.cases(trace_cases)
@lib.timeout(90)
def test_stacks_through_wrappers(t, ver):
    lib.need_root_bpf()
    build_dump()
    exe = build_go(t, ver, "wrappers", WRAPPERS_GO)
    go, done = os.path.join(t.tmp, "go"), os.path.join(t.tmp, "done")
    proc, _ = t.spawn([exe, go, done], log_name="wrappers.log")
    wait_exec(proc, exe)
    d = Dump(t, proc.pid, "-i", "250", "-v")
    with open(go, "w"):
        pass
    deadline = time.monotonic() + 30
    while not os.path.exists(done):
        if time.monotonic() > deadline or proc.poll() is not None:
            lib.fail("the json program did not finish: rc %s" % proc.poll())
        time.sleep(0.05)
    t0 = time.time()
    o = d.wait(lambda o: "heap_trace" in o and o["ts"] > t0 + 0.3, 20, "a view after the run")
    st = o["heap_trace"]["stats"]
    sites = {s["function"] for s in o["heap_trace"]["profile"]["sites"]}
    if not any(f.startswith("encoding/json.") or f.startswith("bytes.") for f in sites):
        lib.fail("no encoding/json allocation site among %s" % sorted(sites))
    if st["stacks_checked"] < 10 or st["stacks_matched"] != st["stacks_checked"]:
        lib.fail("probe stacks vs runtime bucket stacks: %d of %d match:\n%s"
                 % (st["stacks_matched"], st["stacks_checked"],
                    "\n".join(l for l in d.text().splitlines() if not l.startswith("{"))[-3000:]))
    # a bucket whose frame walk keeps failing (a stack-map hash collision)
    # is given up after HT_STACK_TRIES (3) walks, not walked at every sample
    if st["profile_stack_errors"] > 3 * st["buckets"]:
        lib.fail("%d failed frame walks for %d buckets" % (st["profile_stack_errors"], st["buckets"]))
    t.note("%s: %d/%d bucket stacks match; %d failed walks, %d samples" % (
        ver, st["stacks_matched"], st["stacks_checked"], st["profile_stack_errors"],
        st["mprof_malloc_hits"]))
    d.stop()
