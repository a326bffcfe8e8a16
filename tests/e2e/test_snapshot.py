"""`memdrift snapshot PID` and `memdrift ps` against the parker target.

The oracle is the target's own view (tests/targets/parker writes it):
runtime.NumGoroutine(), ReadMemStats, NumCgoCall and its goroutine stack
dump grouped by "created by" site. Contract of `snapshot --json`: one object
with pid, go_version, goroutines, sites [{function, file, line, count,
states {wait reason: count}}], heap {live_bytes, marked_bytes, goal_bytes,
gc_cycles, total_alloc_bytes}, cgo_calls, offsets_source ("dwarf"|"table").
"""

import json
import os
import shutil
import time

import lib

SNAP_KEYS = ("pid", "go_version", "goroutines", "sites", "heap", "cgo_calls",
             "offsets_source")
HEAP_KEYS = ("live_bytes", "marked_bytes", "goal_bytes", "gc_cycles", "total_alloc_bytes")
SITE_KEYS = ("function", "file", "line", "count", "states")
PS_KEYS = ("pid", "comm", "kind", "go_version", "offsets_source", "container_id")


def snapshot(t, tg, *extra, timeout=30.0):
    snap = t.memdrift("snapshot", tg.pid, "--json", *extra, timeout=timeout).json()
    lib.require_keys(snap, SNAP_KEYS, "snapshot")
    lib.require_keys(snap["heap"], HEAP_KEYS, "snapshot.heap")
    if not isinstance(snap["sites"], list):
        lib.fail("snapshot.sites is not an array")
    for s in snap["sites"]:
        lib.require_keys(s, SITE_KEYS, "snapshot.sites[]")
    return snap


def start_parker(t, ver, flavor, *args):
    lib.need_root()
    lib.need_memdrift()
    return t.start_target(lib.target(ver, "parker", flavor), *args)


def check_sites(snap, truth, what=""):
    """Every site of the target's own grouping is in memdrift's sites with
    exactly the same count, at the same file:line, under the same function
    (pprof's 'created by' function; the entry function is also accepted)."""
    got = lib.sites_by_line(snap["sites"])
    for s in truth["sites"]:
        k = lib.site_key(s["file"], s["line"])
        g = got.get(k)
        if g is None:
            lib.fail("%ssite %s:%d (%s, %d goroutines) missing from memdrift's sites %s"
                     % (what, k[0], k[1], s["function"], s["count"],
                        sorted("%s:%d" % kk for kk in got)[:20]))
        if g["count"] != s["count"]:
            lib.fail("%ssite %s:%d (%s): memdrift counts %d, target %d"
                     % (what, k[0], k[1], s["function"], g["count"], s["count"]))
        if s["function"] not in g["functions"] and s.get("entry") not in g["functions"]:
            lib.fail("%ssite %s:%d: memdrift function %s, target created by %s (entry %s)"
                     % (what, k[0], k[1], sorted(map(str, g["functions"])), s["function"],
                        s.get("entry")))
    return got


@lib.cases(lib.target_cases)
def test_header(t, ver, flavor):
    tg = start_parker(t, ver, flavor)
    snap = snapshot(t, tg)
    truth = tg.fresh_truth()
    assert snap["pid"] == tg.pid, "pid %r, want %d" % (snap["pid"], tg.pid)
    gv = str(snap["go_version"])
    if not (gv == truth["go_version"] or truth["go_version"].startswith(gv + ".")
            or gv.startswith(truth["go_version"])):
        lib.fail("go_version %r, target says %r" % (gv, truth["go_version"]))
    want_src = "table" if flavor == "stripped" else "dwarf"
    assert snap["offsets_source"] == want_src, \
        "offsets_source %r for a %s build, want %r" % (snap["offsets_source"], flavor, want_src)
    assert snap["cgo_calls"] == truth["cgo_calls"], \
        "cgo_calls %r, target's runtime.NumCgoCall() %d" % (snap["cgo_calls"], truth["cgo_calls"])
    if flavor == "cgo":
        assert snap["cgo_calls"] >= 1, "cgo build made a C call, cgo_calls %r" % snap["cgo_calls"]


@lib.cases(lib.target_cases)
def test_sites(t, ver, flavor):
    tg = start_parker(t, ver, flavor)
    truth = tg.read_truth()
    snap = snapshot(t, tg)
    n, want = snap["goroutines"], truth["numgoroutine"]
    assert abs(n - want) <= 2, "goroutines %r, target's NumGoroutine %d (±2)" % (n, want)
    check_sites(snap, truth)
    # The sum over sites is the goroutine total (minus main, which has no site).
    total = sum(int(s["count"]) for s in snap["sites"])
    assert abs(total - want) <= 2, \
        "sum of site counts %d, target's NumGoroutine %d (±2)" % (total, want)


@lib.cases(lib.target_cases)
def test_states(t, ver, flavor):
    """Wait reasons of the parked groups, with the runtime's own names (1.19
    calls a blocked Mutex.Lock "semacquire", 1.20+ "sync.Mutex.Lock")."""
    tg = start_parker(t, ver, flavor)
    truth = tg.read_truth()
    snap = snapshot(t, tg)
    got = lib.sites_by_line(snap["sites"])
    minor = int(truth["go_version"].split(".")[1])
    expect = {
        "main.spawnChanRecv": "chan receive",
        "main.spawnSelect": "select",
        "main.spawnSleep": "sleep",
        "main.spawnMutex": "semacquire" if minor < 20 else "sync.Mutex.Lock",
        "main.spawnIO": "IO wait",
    }
    seen = set()
    for s in truth["sites"]:
        if s["function"] not in expect:
            continue
        seen.add(s["function"])
        reason = expect[s["function"]]
        assert s["states"] == {reason: s["count"]}, \
            "target itself shows %s for %s (parker not parked?)" % (s["states"], s["function"])
        g = got.get(lib.site_key(s["file"], s["line"]))
        assert g is not None, "site of %s missing" % s["function"]
        assert g["states"] == s["states"], "%s (line %d): memdrift states %s, want %s" % (
            s["function"], s["line"], g["states"], s["states"])
    assert seen == set(expect), "target truth lacks groups %s" % (set(expect) - seen)


@lib.cases(lib.target_cases)
def test_heap(t, ver, flavor):
    tg = start_parker(t, ver, flavor, "-heap", 32)
    # A GC between the snapshot and the fresh truth (the runtime forces one
    # every 2 minutes) would make them disagree: try again once.
    for attempt in range(3):
        snap = snapshot(t, tg)
        truth = tg.fresh_truth()
        if snap["heap"]["gc_cycles"] == truth["memstats"]["numgc"]:
            break
    h, ms = snap["heap"], truth["memstats"]
    assert h["gc_cycles"] == ms["numgc"], \
        "heap.gc_cycles %r, target's NumGC %d" % (h["gc_cycles"], ms["numgc"])
    lib.within(h["live_bytes"], ms["heap_alloc"], 0.10, "heap.live_bytes vs HeapAlloc")
    lib.within(h["total_alloc_bytes"], ms["total_alloc"], 0.10,
               "heap.total_alloc_bytes vs TotalAlloc")
    lib.within(h["goal_bytes"], ms["next_gc"], 0.10, "heap.goal_bytes vs NextGC")
    assert 0 < h["marked_bytes"] <= 1.1 * ms["heap_alloc"], \
        "heap.marked_bytes %r not in (0, 1.1 x HeapAlloc %d]" % (h["marked_bytes"],
                                                               ms["heap_alloc"])
    assert h["marked_bytes"] >= 32 << 20, \
        "heap.marked_bytes %r below the 32 MiB the target retains" % h["marked_bytes"]
    t.note("live %.1f MiB, HeapAlloc %.1f MiB" % (h["live_bytes"] / 2**20,
                                                   ms["heap_alloc"] / 2**20))


def _many_cases():
    vs = lib.versions()
    return [("%s_plain" % v, (v, "plain")) for v in vs] + \
           [("%s_stripped" % vs[-1], (vs[-1], "stripped"))]


@lib.cases(_many_cases)
@lib.timeout(180)
def test_many_goroutines(t, ver, flavor):
    """100,000 goroutines: the issue asks for a snapshot in under 1 s; assert
    under 2 s to tolerate CI noise and print the measured time."""
    tg = start_parker(t, ver, flavor, "-many", 100000)
    truth = tg.read_truth()
    r = t.memdrift("snapshot", tg.pid, "--json", timeout=60)
    snap = r.json()
    t.note("snapshot of %d goroutines in %.3fs" % (truth["numgoroutine"], r.elapsed))
    assert abs(snap["goroutines"] - truth["numgoroutine"]) <= 2, \
        "goroutines %r, target's NumGoroutine %d" % (snap["goroutines"], truth["numgoroutine"])
    check_sites(snap, truth)
    assert r.elapsed < 2.0, "snapshot of 100,000 goroutines took %.2fs (limit 2 s, goal 1 s)" \
        % r.elapsed


def test_text_output(t):
    """Without --json: readable text that names the sites by file:line."""
    vs = lib.versions()
    tg = start_parker(t, vs[-1], "plain")
    truth = tg.read_truth()
    r = t.memdrift("snapshot", tg.pid)
    assert r.rc == 0, r.describe()
    assert r.out.strip(), "no output"
    try:
        json.loads(r.out)
        lib.fail("text output is JSON")
    except ValueError:
        pass
    for s in truth["sites"]:
        if s["function"] == "main.spawnChanRecv":
            loc = "%s:%d" % (os.path.basename(s["file"]), s["line"])
            assert loc in r.out, "text output does not mention %s: %r" % (loc, r.out[:800])
    assert str(tg.pid) in r.out, "text output does not mention the pid"


def test_ps(t):
    lib.need_root()
    vs = lib.versions()
    want = {}  # pid -> (kind, truth, flavor)
    for ver, flavor in ((vs[0], "plain"), (vs[-1], "cgo"), (vs[len(vs) // 2], "stripped"),
                        (vs[-1], "pie")):
        tg = start_parker(t, ver, flavor)
        want[tg.pid] = ("go+cgo" if flavor == "cgo" else "go", tg.read_truth(), flavor,
                        os.path.basename(lib.target(ver, "parker", flavor)))
    sleeper, _ = t.spawn(["sleep", "1000"])
    java = None
    if shutil.which("java"):
        src = os.path.join(t.tmp, "Idle.java")
        with open(src, "w") as f:
            f.write("public class Idle { public static void main(String[] a) throws Exception"
                    " { Thread.sleep(1000000); } }\n")
        java, _ = t.spawn(["java", "-Xmx32m", src])
        # The launcher maps libjvm.so early; compiling the source takes longer.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/maps" % java.pid) as f:
                    if "libjvm.so" in f.read():
                        break
            except OSError:
                break
            time.sleep(0.1)
    time.sleep(0.2)
    r = t.memdrift("ps", "--json")
    procs = r.json()
    assert isinstance(procs, list), "ps --json is not an array"
    by_pid = {}
    for p in procs:
        lib.require_keys(p, PS_KEYS, "ps entry")
        by_pid[p["pid"]] = p
    for pid, (kind, truth, flavor, exe) in want.items():
        p = by_pid.get(pid)
        assert p is not None, "parker %s (pid %d) not in ps output" % (flavor, pid)
        assert p["kind"] == kind, "pid %d (%s): kind %r, want %r" % (pid, flavor, p["kind"], kind)
        gv = str(p["go_version"])
        assert gv and (truth["go_version"].startswith(gv) or gv.startswith(truth["go_version"])), \
            "pid %d: go_version %r, target %r" % (pid, gv, truth["go_version"])
        src = "table" if flavor == "stripped" else "dwarf"
        assert p["offsets_source"] == src, "pid %d (%s): offsets_source %r, want %r" % (
            pid, flavor, p["offsets_source"], src)
        assert p["comm"] == exe[:15], "pid %d: comm %r, want %r" % (pid, p["comm"], exe[:15])
        assert p["container_id"] in (None, ""), \
            "pid %d runs on the host, container_id %r" % (pid, p["container_id"])
    if sleeper.pid in by_pid:
        assert by_pid[sleeper.pid]["kind"] == "native", \
            "sleep: kind %r, want native" % by_pid[sleeper.pid]["kind"]
    if java is not None and java.poll() is None:
        # java's main pid is the JVM itself (the launcher execs nothing).
        assert java.pid in by_pid, "java (pid %d) not in ps output" % java.pid
        assert by_pid[java.pid]["kind"] == "jvm", "java: kind %r, want jvm" % \
            by_pid[java.pid]["kind"]
    t.note("%d processes listed" % len(procs))
