"""Layouts read from the runtime's own code (daemon/binary/gobin_layout.c) for a Go
version newer than the offset table, stripped (no DWARF).

Two ways to be "newer than the table" with the toolchains installed here:
MEMDRIFT_TEST_NO_OFFSET_TABLE=1 (a test-only switch: the table is
withheld), and a copy of the target whose build info says go1.99 (what a
Go release memdrift has never seen looks like). Either way `snapshot
--json` of the stripped parker must equal the snapshot with the table
(sites, counts, wait reasons, heap figures, cgo calls) and the target's own
goroutine grouping, and stderr holds at most one line: the fields the code
did not give and what they disable, none of them a field the snapshot shows.
The same for `snapshot --heap` of the stripped heapleak (the heap profile's
bucket/memRecord layout from code) and, on 1.26+, the goroutines the
runtime marked leaked (_Gleaked from code) in the stripped goleak, and
test_attach's exact goroutine trace and test_heap_trace's tier agreement
(BPF probes and the span-special heap walk) run unchanged without the table.
"""

import os
import shutil

import lib
import test_goleak
from test_heap import heap_snapshot, start_heapleak
from test_snapshot import check_sites, snapshot

NO_TABLE = {"MEMDRIFT_TEST_NO_OFFSET_TABLE": "1"}
# What the plain snapshot reads; the code must give all of it.
SNAPSHOT_FIELDS = ("g.atomicstatus", "g.goid", "g.gopc", "g.startpc", "g.waitreason",
                   "g.waitsince", "g.stack", "m.alllink", "m.ncgocall", "gcControllerState",
                   "mstats.numgc", "waitReasonStrings")


def start(t, ver, path=None):
    lib.need_root()
    lib.need_memdrift()
    return t.start_target(path or lib.target(ver, "parker", "stripped"))


def warning_line(r, what):
    """At most one stderr line, naming what was not recovered; nothing the
    snapshot itself shows may be among it."""
    lines = [l for l in r.err.splitlines() if l.strip()]
    if not lines:
        return ""
    if len(lines) != 1 or "not recovered" not in lines[0]:
        lib.fail("%s: expected at most one line naming unrecovered fields, got %r"
                 % (what, r.err[:800]))
    for f in SNAPSHOT_FIELDS:
        if f in lines[0]:
            lib.fail("%s: %s not recovered from code: %s" % (what, f, lines[0]))
    return lines[0]


def blocked(snap):
    """Longest wait per site (from g.waitsince), by file:line and entry."""
    return {(s["file"], s["line"], s["start_function"]): s["max_blocked_seconds"]
            for s in snap["sites"]}


def check_states(snap, truth, what):
    """The wait reasons of every parked group equal the target's own."""
    got = lib.sites_by_line(snap["sites"])
    for s in truth["sites"]:
        if set(s["states"]) & {"syscall", "running", "runnable"}:
            continue
        g = got.get(lib.site_key(s["file"], s["line"]))
        if g is None or g["states"] != s["states"]:
            lib.fail("%ssite %s:%d states %s, target %s" % (what, s["file"], s["line"],
                                                          g and g["states"], s["states"]))


def same_snapshot(t, tg, env_b, what, attempts=4):
    """Snapshots with the table (a) and without (b), back to back; retried
    when a GC ran in between (the heap figures then move legitimately)."""
    for _ in range(attempts):
        a = snapshot(t, tg)
        rb = t.memdrift("snapshot", tg.pid, "--json", env=env_b)
        b = rb.json()
        a2 = snapshot(t, tg)
        if a["heap"]["gc_cycles"] == b["heap"]["gc_cycles"] == a2["heap"]["gc_cycles"]:
            break
    line = warning_line(rb, what)
    assert b["offsets_source"] == "code", \
        "%s: offsets_source %r, want 'code'" % (what, b["offsets_source"])
    # "code" as well when this build has no row for the version yet: the
    # comparison is then with the target's own truth only (check_states).
    assert a["offsets_source"] in ("table", "code"), \
        "with the table: offsets_source %r" % a["offsets_source"]
    assert b["goroutines"] == a["goroutines"], \
        "%s: goroutines %d, with the table %d" % (what, b["goroutines"], a["goroutines"])
    sa, sb = lib.sites_by_line(a["sites"]), lib.sites_by_line(b["sites"])
    assert sa == sb, "%s: sites differ:\n with table %s\n from code  %s" % (what, sa, sb)
    assert b["cgo_calls"] == a["cgo_calls"], \
        "%s: cgo_calls %r, with the table %r" % (what, b["cgo_calls"], a["cgo_calls"])
    for k, sb_ in blocked(b).items():
        lo, hi = blocked(a).get(k, -1), blocked(a2).get(k, -1)
        if not lo <= sb_ <= hi:
            lib.fail("%s: site %s blocked %ss, with the table %ss then %ss"
                     % (what, k, sb_, lo, hi))
    ha, hb, ha2 = a["heap"], b["heap"], a2["heap"]
    for k in sorted(ha):
        lo, hi = min(ha[k], ha2[k]), max(ha[k], ha2[k])
        if not lo <= hb[k] <= hi:
            lib.fail("%s: heap.%s %r, with the table %r then %r" % (what, k, hb[k], ha[k], ha2[k]))
    t.note("%d goroutines in %d sites, heap live %.1f MiB, same without the table%s%s"
           % (b["goroutines"], len(sb), hb["live_bytes"] / 2**20,
              "" if a["offsets_source"] == "table" else " (no row here: vs truth only)",
              "; stderr: " + line[line.find("): ") + 3:][:90] if line else ""))
    return b


@lib.cases(lambda: lib.target_cases(flavors=("stripped",)))
def test_table_withheld(t, ver, flavor):
    tg = start(t, ver)
    b = same_snapshot(t, tg, NO_TABLE, "table withheld")
    truth = tg.fresh_truth()
    check_sites(b, truth, "table withheld: ")
    check_states(b, truth, "table withheld: ")


def patch_version(src, dst, minor=99, hide=None):
    """Copy src with its build info's version "go1.NN..." made "go1.<minor>..."
    (same length; the runtime's own runtime.Version() is not touched) and,
    if hide names a function, its pclntab name changed in the last letter
    (memdrift then cannot find it; the program runs as before)."""
    data = bytearray(open(src, "rb").read())
    if hide:
        name = b"\x00" + hide.encode() + b"\x00"
        if data.count(name) != 1:
            lib.fail("%s: %r %d times in the binary" % (src, hide, data.count(name)))
        at = data.find(name) + len(name) - 2
        data[at] = ord("X")
    at = data.find(b"\xff Go buildinf:")
    while at >= 0 and at % 16:
        at = data.find(b"\xff Go buildinf:", at + 1)
    if at < 0 or not data[at + 15] & 2:
        lib.fail("%s: no inline Go build info header" % src)
    n = data[at + 32]
    v = data[at + 33:at + 33 + n].decode()
    if not v.startswith("go1."):
        lib.fail("%s: unexpected version %r" % (src, v))
    rest = v[4:].lstrip("0123456789")
    nv = ("go1.%d%s" % (minor, rest))[:n].ljust(n, "0")
    data[at + 33:at + 33 + n] = nv.encode()
    with open(dst, "wb") as f:
        f.write(data)
    shutil.copymode(src, dst)
    return v, nv


@lib.cases(lambda: lib.target_cases(flavors=("stripped",)))
def test_newer_than_table(t, ver, flavor):
    """A stripped build that says go1.99: no table row, no DWARF, no switch."""
    src = lib.target(ver, "parker", "stripped")
    dst = os.path.join(t.tmp, "parker-go199")
    old, new = patch_version(src, dst)
    tg = start(t, ver, dst)
    r = t.memdrift("snapshot", tg.pid, "--json")
    snap = r.json()
    line = warning_line(r, new)
    assert str(snap["go_version"]).startswith("go1.99"), "go_version %r" % snap["go_version"]
    assert snap["offsets_source"] == "code", "offsets_source %r" % snap["offsets_source"]
    assert not line or "go1.99" in line, "the warning does not name the version: %r" % line
    truth = tg.fresh_truth()
    check_sites(snap, truth, "%s as %s: " % (old, new))
    check_states(snap, truth, "%s as %s: " % (old, new))
    n, want = snap["goroutines"], truth["numgoroutine"]
    assert abs(n - want) <= 2, "goroutines %r, target's NumGoroutine %d (±2)" % (n, want)
    assert snap["heap"]["gc_cycles"] == truth["memstats"]["numgc"] or \
        snap["heap"]["gc_cycles"] + 1 == truth["memstats"]["numgc"], \
        "gc_cycles %r, target's NumGC %d" % (snap["heap"]["gc_cycles"], truth["memstats"]["numgc"])
    lib.within(snap["heap"]["total_alloc_bytes"], truth["memstats"]["total_alloc"], 0.10,
               "heap.total_alloc_bytes vs TotalAlloc")
    t.note("%s read as %s: %d goroutines, sites equal the target's; %s"
           % (old, new, n, line[line.find("): ") + 3:][:100]))


@lib.cases(lambda: lib.target_cases(flavors=("stripped",)))
def test_heap_profile_withheld(t, ver, flavor):
    """`snapshot --heap` (runtime.mbuckets: bucket and memRecord layouts
    from code) equals the one with the table, at heapleak's quiet point."""
    tg = start_heapleak(t, ver, flavor)
    for _ in range(4):
        a = heap_snapshot(t, tg)[0]
        rb = t.memdrift("snapshot", tg.pid, "--json", "--heap", env=NO_TABLE)
        b = rb.json()
        a2 = heap_snapshot(t, tg)[0]
        if a["heap"]["gc_cycles"] == b["heap"]["gc_cycles"] == a2["heap"]["gc_cycles"]:
            break
    line = warning_line(rb, "table withheld, --heap")
    assert b["offsets_source"] == "code", "offsets_source %r" % b["offsets_source"]
    if a["heap_profile"] != a2["heap_profile"]:
        lib.skip_or_fail("heap profile changed between two snapshots with the table")
    assert b["heap_profile"] == a["heap_profile"], \
        "heap profile without the table:\n%s\nwith it:\n%s" % (b["heap_profile"][:5],
                                                               a["heap_profile"][:5])
    inuse = sum(s["inuse_bytes"] for s in b["heap_profile"])
    t.note("%d heap sites, %.1f MiB in use, same without the table; stderr: %s"
           % (len(b["heap_profile"]), inuse / 2**20, line[line.find("): ") + 3:][:80] or "-"))


@lib.cases(lambda: lib.target_cases(flavors=("stripped",), vers=test_goleak.leak_versions()))
def test_leaked_withheld(t, ver, flavor):
    """_Gleaked from code (findGoroutineLeaks): after the target's own
    goroutineleak profile was requested, memdrift without the table counts
    the same leaked goroutines as the profile and as with the table."""
    lib.need_root()
    lib.need_memdrift()
    tg = t.start_target(lib.target(ver, "goleak", flavor), test_goleak.LEAKS)
    truth = tg.read_truth()
    total = test_goleak.request_leak_profile(truth)
    a = test_goleak.snapshot(t, tg)
    rb = t.memdrift("snapshot", tg.pid, "--json", env=NO_TABLE)
    b = rb.json()
    warning_line(rb, "table withheld, goleak")
    assert b["offsets_source"] == "code", "offsets_source %r" % b["offsets_source"]
    assert b["goroutines_leaked"] == a["goroutines_leaked"] == total, \
        "leaked: %d without the table, %d with, the runtime's profile %d" \
        % (b["goroutines_leaked"], a["goroutines_leaked"], total)
    leak = test_goleak.site(b, "main.leakOne")
    assert leak["leaked"] == test_goleak.LEAKS and \
        leak["states"].get("chan receive") == test_goleak.LEAKS, "main.leakOne %r" % leak
    t.note("profile total %d = leaked %d without the table" % (total, b["goroutines_leaked"]))


@lib.cases(lambda: lib.target_cases(flavors=("stripped",)))
def test_field_not_recovered(t, ver, flavor):
    """go1.99 with runtime.execute unnamed: g.waitsince and g.stack.lo come
    from nowhere else. One line names them and what is lost; the rest of the
    snapshot still equals the target's own view, and wait times are 0."""
    src = lib.target(ver, "parker", "stripped")
    dst = os.path.join(t.tmp, "parker-go199-noexecute")
    old, new = patch_version(src, dst, hide="runtime.execute")
    tg = start(t, ver, dst)
    r = t.memdrift("snapshot", tg.pid, "--json")
    snap = r.json()
    lines = [l for l in r.err.splitlines() if l.strip()]
    want = ("g.waitsince not recovered: wait durations disabled",
            "g.stack.lo not recovered: stack sizes disabled", "go1.99")
    if len(lines) != 1 or not all(w in lines[0] for w in want):
        lib.fail("expected one line naming g.waitsince and g.stack.lo and what they disable, "
                 "got %r" % r.err[:600])
    assert snap["offsets_source"] == "code", "offsets_source %r" % snap["offsets_source"]
    truth = tg.fresh_truth()
    check_sites(snap, truth, "%s as %s without runtime.execute: " % (old, new))
    check_states(snap, truth, "%s as %s without runtime.execute: " % (old, new))
    waits = sorted(set(s["max_blocked_seconds"] for s in snap["sites"]))
    assert waits == [0], "wait times without g.waitsince: %r" % waits
    t.note(lines[0][lines[0].find("): ") + 3:][:120])


@lib.cases(lambda: lib.target_cases(flavors=("stripped",), vers=lib.versions()[-1:]))
def test_goroutines_unreadable(t, ver, flavor):
    """go1.99 with runtime.newproc1 unnamed: g.goid, g.gopc and g.startpc come
    from nowhere else, so the goroutine list cannot be read: refused in one
    line naming the field, exit status 1, nothing on stdout."""
    src = lib.target(ver, "parker", "stripped")
    dst = os.path.join(t.tmp, "parker-go199-nonewproc1")
    patch_version(src, dst, hide="runtime.newproc1")
    tg = start(t, ver, dst)
    r = t.memdrift("snapshot", tg.pid, "--json")
    line = lib.one_error_line(r, "snapshot of a go1.99 binary without newproc1")
    assert "g.goid could not be recovered" in line and "go1.99" in line, line
    t.note(line[:160])


def withheld(t, fn, *args):
    """Runs another module's test with the table withheld for every memdrift
    process and tool it starts (they inherit the environment)."""
    os.environ.update(NO_TABLE)
    try:
        fn(t, *args)
    finally:
        for k in NO_TABLE:
            os.environ.pop(k, None)


@lib.cases(lambda: lib.target_cases(flavors=("stripped",)))
@lib.timeout(90)
def test_attach_exact_withheld(t, ver, flavor):
    """`attach --trace goroutines` (the BPF programs get g.goid, g.gopc and
    g.startpc from code): live goroutines per site equal to the churn
    target's own counters at every quiet point, as test_attach checks."""
    import test_attach
    withheld(t, test_attach.test_trace_exact, ver, flavor)


@lib.cases(lambda: lib.target_cases(flavors=("stripped",)))
@lib.timeout(90)
def test_heap_tiers_withheld(t, ver, flavor):
    """The heap profile tier with the heap walk (bucket, memRecord, mheap,
    heapArena, mspan and special layouts from code) agrees with the watch
    tier and the runtime's buckets, as test_heap_trace checks."""
    import test_heap_trace
    withheld(t, test_heap_trace.test_tiers_agree, ver, flavor, False)
