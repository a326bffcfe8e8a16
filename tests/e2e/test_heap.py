"""Go heap profile read in place (`memdrift snapshot PID --json --heap` and
`memdrift snapshot PID --pprof DIR`) against the heapleak target.

The oracle is the target's own heap profile (tests/targets/heapleak writes
it): runtime.MemProfile scaled like runtime/pprof, grouped by the first
non-runtime frame, and its pprof.WriteHeapProfile output. Contract of
`snapshot --json --heap`: the snapshot object plus "heap_profile": up to 50
{function, file, line, inuse_bytes, inuse_objects, alloc_bytes,
alloc_objects} sorted by inuse_bytes; `--pprof DIR` writes DIR/heap.pb.gz.
"""

import os
import subprocess

import lib

HEAP_SITE_KEYS = ("function", "file", "line", "inuse_bytes", "inuse_objects",
                  "alloc_bytes", "alloc_objects")
RETAIN = "main.retainBlock"
CHURN = "main.churnGarbage"
CAP_MIB = 32
# 32 MiB at 16 MiB/s: the truth appears about 2 s after start.
HEAPLEAK_ARGS = ("-rate", 16384, "-cap", CAP_MIB, "-churn", 16384)


def start_heapleak(t, ver, flavor, *extra):
    lib.need_root()
    lib.need_memdrift()
    own = os.path.join(t.tmp, "own.pb.gz")
    tg = t.start_target(lib.target(ver, "heapleak", flavor), "-pprof", own,
                        *(HEAPLEAK_ARGS + extra))
    tg.own_pprof = own
    return tg


def heap_snapshot(t, tg):
    snap = t.memdrift("snapshot", tg.pid, "--json", "--heap").json()
    hp = snap.get("heap_profile")
    if not isinstance(hp, list):
        lib.fail("snapshot --heap: no heap_profile array (keys %s)" % sorted(snap))
    if len(hp) > 50:
        lib.fail("heap_profile has %d entries, contract says at most 50" % len(hp))
    for s in hp:
        lib.require_keys(s, HEAP_SITE_KEYS, "heap_profile[]")
    inuse = [int(s["inuse_bytes"]) for s in hp]
    assert inuse == sorted(inuse, reverse=True), "heap_profile not sorted by inuse_bytes"
    return snap, hp


def by_function(sites, key="inuse_bytes"):
    out = {}
    for s in sites:
        out[s["function"]] = out.get(s["function"], 0) + int(s[key])
    return out


def pprof_top(path, sample_index="inuse_space"):
    """(top flat function, its flat value text, whole output) of `go tool pprof -top`."""
    env = dict(os.environ, GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod",
               GOCACHE=os.path.join(lib.OUT, "gocache"), GOTELEMETRY="off")
    p = subprocess.run([lib.go_tool(), "tool", "pprof", "-top", "-sample_index=" + sample_index,
                        path], capture_output=True, timeout=120, env=env)
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        lib.fail("go tool pprof -top %s failed (rc %d): %s"
                 % (path, p.returncode, p.stderr.decode(errors="replace")[-600:]))
    lines = out.splitlines()
    for i, l in enumerate(lines):
        if l.split()[:2] == ["flat", "flat%"]:
            if i + 1 >= len(lines):
                lib.fail("go tool pprof -top %s: no rows: %r" % (path, out[:600]))
            row = lines[i + 1].split()
            return row[-1], row[0], out
    lib.fail("go tool pprof -top %s: no table: %r" % (path, out[:600]))


@lib.cases(lib.target_cases)
def test_heap_inuse(t, ver, flavor):
    """In-use bytes at the retaining site within ±20% of the target's own
    heap profile at the same moment; the churn site near zero in use."""
    tg = start_heapleak(t, ver, flavor)
    # A GC between memdrift's look and the target's own profile (the runtime
    # forces one every 2 minutes) moves the buckets: retry then.
    for attempt in range(3):
        snap, hp = heap_snapshot(t, tg)
        truth = tg.fresh_truth()
        if snap["heap"]["gc_cycles"] == truth["memstats"]["numgc"]:
            break
    assert truth["mem_profile_rate"] > 0, "target has heap profiling off"
    mine = by_function(hp)
    own = truth["by_function"]
    assert own.get(RETAIN, 0) > 0, "target's own profile lacks %s: %s" % (RETAIN, own)
    if RETAIN not in mine:
        lib.fail("memdrift's heap_profile lacks %s; has %s" % (RETAIN, sorted(mine)[:20]))
    lib.within(mine[RETAIN], own[RETAIN], 0.20, "in-use bytes at %s" % RETAIN)
    top = hp[0]
    assert top["function"] == RETAIN, "memdrift's top in-use site is %s, want %s" % (
        top["function"], RETAIN)
    want = [s for s in truth["sites"] if s["function"] == RETAIN][0]
    assert lib.site_key(top["file"], top["line"]) == lib.site_key(want["file"], want["line"]), \
        "%s at %s:%s, target says %s:%s" % (RETAIN, top["file"], top["line"], want["file"],
                                            want["line"])
    # The churn site was sampled (so it can be told apart) but holds nothing.
    churn = [s for s in hp if s["function"] == CHURN]
    allocs = by_function(hp, "alloc_bytes")
    assert churn, "churn site %s not in memdrift's heap_profile (%s)" % (CHURN, sorted(mine))
    churn_inuse = mine.get(CHURN, 0)
    assert churn_inuse <= max(0.02 * mine[RETAIN], 1 << 20), \
        "churn site holds %d in-use bytes (retaining site %d): should be near zero" % (
            churn_inuse, mine[RETAIN])
    assert allocs[CHURN] > 4 << 20, \
        "churn site allocated only %d bytes by memdrift's count" % allocs[CHURN]
    t.note("%s memdrift %.1f MiB, target %.1f MiB (real %d MiB); churn in-use %d B"
           % (RETAIN, mine[RETAIN] / 2**20, own[RETAIN] / 2**20, CAP_MIB, churn_inuse))


@lib.cases(lib.target_cases)
def test_heap_pprof(t, ver, flavor):
    """memdrift's heap.pb.gz parses with `go tool pprof` and names the same
    top in-use function as the target's own heap profile."""
    tg = start_heapleak(t, ver, flavor)
    out = os.path.join(t.tmp, "pprof-out")
    os.makedirs(out)
    r = t.memdrift("snapshot", tg.pid, "--pprof", out)
    assert r.rc == 0, r.describe()
    path = os.path.join(out, "heap.pb.gz")
    assert os.path.exists(path), "no %s after snapshot --pprof (dir has %s)" % (
        path, os.listdir(out))
    tg.fresh_truth()  # rewrites the target's own profile at the same moment
    mine_fn, mine_flat, mine_out = pprof_top(path)
    own_fn, own_flat, _ = pprof_top(tg.own_pprof)
    assert mine_fn == own_fn, "go tool pprof -top: memdrift's top is %s (%s), target's %s (%s)" \
        "\n%s" % (mine_fn, mine_flat, own_fn, own_flat, mine_out)
    assert own_fn == RETAIN, "target's own top in-use function is %s" % own_fn
    for st in ("alloc_objects", "alloc_space", "inuse_objects"):
        pprof_top(path, st)  # every sample type is there
    assert "Type: inuse_space" in mine_out, "default sample type is not inuse_space"
    t.note("top %s: memdrift %s, target %s" % (mine_fn, mine_flat, own_flat))


def test_heap_profiling_off(t):
    """parker never references runtime.MemProfile, so its linker turned heap
    profiling off: memdrift must say so plainly, not print an empty profile."""
    lib.need_root()
    lib.need_memdrift()
    vs = lib.versions()
    tg = t.start_target(lib.target(vs[-1], "parker", "plain"))
    r = t.memdrift("snapshot", tg.pid, "--json", "--heap")
    if r.rc == 0:
        snap = r.json()
        msg = str(snap.get("heap_profile_error", ""))
        assert "MemProfileRate=0" in msg, \
            "profiling off in the target but heap_profile_error is %r (heap_profile %r)" % (
                msg, snap.get("heap_profile"))
        assert not snap.get("heap_profile"), "profile rows while profiling is off"
    else:
        line = lib.one_error_line(r, "snapshot --heap on a MemProfileRate=0 target")
        assert "MemProfileRate=0" in line, line
