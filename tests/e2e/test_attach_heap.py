"""`memdrift attach PID --trace heap --json --pprof DIR` end to end: the
probe tier's in-use bytes at the retaining site agree with the target's own
heap profile, the trace tier sees the allocations, and the pprof files are
ones `go tool pprof` reads, naming the top allocator."""

import json
import os
import subprocess

import lib
from test_heap import CHURN, RETAIN, start_heapleak


@lib.timeout(120)
def test_attach_trace_heap(t):
    lib.need_root_bpf()
    ver = lib.versions()[-1]
    tg = start_heapleak(t, ver, "plain")
    truth = tg.wait_truth(lambda x: x.get("sites"))
    prof = os.path.join(t.tmp, "prof")
    os.mkdir(prof)
    r = t.memdrift("attach", tg.pid, "--trace", "heap", "--json", "--interval", "1s",
                   "--duration", "3s", "--pprof", prof, timeout=60)
    if r.rc != 0:
        lib.fail("attach --trace heap: %s" % r.describe())
    lines = [json.loads(l) for l in r.out.splitlines() if l.startswith("{")]
    if not lines:
        lib.fail("attach --trace heap printed no JSON lines: %s" % r.describe())
    last = lines[-1]
    ht = last.get("heap_trace")
    if not ht:
        lib.fail("no heap_trace object in the final JSON line: keys %s" % sorted(last))
    if ht["profile"]["state"] != "on":
        lib.fail("profile tier state %r: %s" % (ht["profile"]["state"], ht["profile"]))
    probe = sum(int(s["inuse_bytes"]) for s in ht["profile"]["sites"]
                if s["function"] == RETAIN)
    own = sum(int(s["inuse_bytes"]) for s in truth["sites"] if s["function"] == RETAIN)
    lib.within(probe, own, 0.20, "probe-tier in-use at %s vs the target's own profile" % RETAIN)
    churn = sum(int(s["inuse_bytes"]) for s in ht["profile"]["sites"]
                if s["function"] == CHURN)
    if churn > 0.05 * own:
        lib.fail("churn site holds %d bytes in use (retaining site %d)" % (churn, own))
    # the target is quiet at its truth point (it stops allocating at its
    # cap): the trace tier is on but has little to count here; its accuracy
    # against ReadMemStats is pinned in test_heap_trace
    if "allocs" not in ht["trace"] or "size_histogram" not in ht["trace"]:
        lib.fail("trace tier block incomplete: %s" % ht["trace"])
    # the watch tier's view in the same line agrees with the probes
    watch = sum(int(s["inuse_bytes"]) for s in last.get("heap_sites", []) if s["function"] == RETAIN)
    lib.within(probe, watch, 0.20, "probe tier vs watch tier at %s" % RETAIN)
    for name in ("heap.pb.gz", "heap_alloc.pb.gz", "goroutine.pb.gz"):
        path = os.path.join(prof, name)
        if not os.path.exists(path):
            lib.fail("--pprof wrote no %s (dir has %s)" % (name, os.listdir(prof)))
    top = subprocess.run([lib.go_tool(), "tool", "pprof", "-top", "-sample_index=inuse_space",
                          os.path.join(prof, "heap.pb.gz")],
                         capture_output=True, text=True, timeout=60)
    if top.returncode != 0 or RETAIN not in top.stdout:
        lib.fail("go tool pprof -top heap.pb.gz does not name %s: %s %s"
                 % (RETAIN, top.stdout[-600:], top.stderr[-300:]))
    t.note("probe tier %d B, target %d B at %s" % (probe, own, RETAIN))
