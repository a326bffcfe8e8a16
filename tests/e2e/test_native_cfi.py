"""C stacks without frame pointers (bpf/native_trace_walk.bpf.h,
daemon/symbols/native_unwind.c) against tests/targets/cgonofp, whose C code is built
-O2 -fomit-frame-pointer and whose helper keeps a value in rbp across its
malloc call, through tests/tools/native_dump (the module's JSON live view;
attach's --json shows the same object).

- every toolchain: for each of the two leaking paths
  (main.leakKeep -> nofp_keep -> nofp_helper -> malloc and
  main.leakStash -> nofp_stash -> nofp_helper -> malloc) the C stack is
  complete from the allocator to the cgo wrapper, every frame past the
  allocator found by CFI, no walk stop, then runtime.cgocall and the Go
  caller with its file:line; outstanding bytes and blocks per path equal
  the target's truth exactly, twice (a second burst adds to both), and 0
  after the target frees everything.
- newest toolchain: native.pb.gz read by `go tool pprof -traces` shows the
  same stack and its unwind label; the control, the same target under
  --fp-stacks (the kernel's frame-pointer walk, what memdrift did before):
  same bytes per Go caller, but nofp_keep/nofp_stash and the cgo wrapper
  are not on its stacks.
"""

import os
import signal
import subprocess

import lib
from test_native import Dump, burst, site_line as src_line

SRC = os.path.join(lib.ROOT, "tests", "targets", "cgonofp", "main.go")
PATHS = {  # Go caller -> (SITE marker, C function A, truth key prefix)
    "main.leakKeep": ("keep", "nofp_keep", "keep"),
    "main.leakStash": ("stash", "nofp_stash", "stash"),
}
MALLOC = ("malloc", "__libc_malloc", "__GI___libc_malloc")


def site_line(marker):
    return src_line(marker, SRC)


def sites_of(view, go_fn):
    return [s for s in view["sites"] if s.get("go_function") == go_fn]


def describe(sites):
    return [(s["bytes"], s["count"], [(f["function"], f.get("unwind")) for f in s["frames"]],
             s.get("unwind_stop")) for s in sites[:6]]


def check_stack(s, go_fn, a_fn, line):
    """The frames of one site: allocator <- nofp_helper <- A <- cgo wrapper
    (all past the allocator by CFI) <- runtime.cgocall <- ... <- go_fn at
    main.go:line."""
    fr = s["frames"]
    names = [f["function"] for f in fr]
    want = "%s [regs] <- nofp_helper [cfi] <- %s [cfi] <- _cgo_*_Cfunc_%s [cfi]" % (
        MALLOC[0], a_fn, a_fn)
    ok = (len(fr) >= 6 and fr[0]["function"] in MALLOC and fr[0].get("unwind") == "regs"
          and fr[1]["function"] == "nofp_helper" and fr[2]["function"] == a_fn
          and fr[3]["function"].startswith("_cgo_")
          and fr[3]["function"].endswith("_Cfunc_" + a_fn)
          and all(f.get("unwind") == "cfi" for f in fr[1:4]))
    if not ok:
        lib.fail("C stack of %s: want %s, got %s" % (go_fn, want,
                 [(f["function"], f.get("unwind")) for f in fr[:8]]))
    if s.get("c_frames") != 4 or s.get("unwind_stop") is not None:
        lib.fail("%s: C side %s frames, stop %r: want 4 frames to the cgo boundary, no stop"
                 % (go_fn, s.get("c_frames"), s.get("unwind_stop")))
    if fr[4]["function"] != "runtime.cgocall":
        lib.fail("%s: frame after the cgo wrapper is %s, want runtime.cgocall" % (go_fn, names))
    gof = [f for f in fr[4:] if f["function"] == go_fn]
    if not gof or not gof[0].get("file", "").endswith("main.go") or gof[0].get("line") != line:
        lib.fail("%s: Go caller not at main.go:%d: %s" % (go_fn, line,
                 [(f["function"], f.get("file"), f.get("line")) for f in fr[4:]]))
    if s.get("go_function") != go_fn or s.get("go_line") != line:
        lib.fail("site names Go caller %s:%s, want %s:%d" % (s.get("go_function"),
                                                              s.get("go_line"), go_fn, line))


def check_view(v, tr, what):
    for go_fn, (marker, a_fn, key) in PATHS.items():
        ss = sites_of(v, go_fn)
        if not ss:
            lib.fail("%s: no site with Go caller %s: %s" % (what, go_fn, describe(v["sites"])))
        for s in ss:
            check_stack(s, go_fn, a_fn, site_line(marker))
        got_b, got_n = sum(s["bytes"] for s in ss), sum(s["count"] for s in ss)
        if got_b != tr[key + "_bytes"] or got_n != tr[key + "_count"]:
            lib.fail("%s: %s outstanding %d B in %d blocks, the target keeps %d B in %d"
                     % (what, go_fn, got_b, got_n, tr[key + "_bytes"], tr[key + "_count"]))
    st = v["stats"]
    for k in ("allocs_map_full", "pending_map_full", "kernel_missed", "stacks_full"):
        if st[k]:
            lib.fail("%s: lost: %s = %d" % (what, k, st[k]))


def cases():
    return lib.target_cases(flavors=("cgo",))


@lib.cases(cases)
@lib.timeout(120)
def test_native_cfi(t, ver, flavor):
    lib.need_root_bpf()
    tg = t.start_target(lib.target(ver, "cgonofp", flavor), "-n", 1500)
    d = Dump(t, tg.pid, "-p", t.tmp)
    for seq in (1, 2):
        tr, wall = burst(tg, seq)
        v = d.view_after(wall)
        check_view(v, tr, "%s burst %d" % (ver, seq))
    st = v["stats"]
    t.note("%s: keep %d B / stash %d B exact; %d stack copies (%d lost)"
           % (ver, tr["keep_bytes"], tr["stash_bytes"], st["stacks_new"],
              st["stack_events_lost"]))
    tr, wall = burst(tg, 3, signal.SIGUSR2)
    v = d.view_after(wall)
    left = sum(s["bytes"] for fn in PATHS for s in sites_of(v, fn))
    if left:
        lib.fail("after nofp_release, %d bytes remain at the two paths" % left)
    d.stop()


@lib.timeout(120)
def test_native_cfi_pprof_and_fp_control(t):
    lib.need_root_bpf()
    ver = lib.versions()[-1]
    path = lib.target(ver, "cgonofp", "cgo")
    tg = t.start_target(path, "-n", 1000)
    d = Dump(t, tg.pid, "-p", t.tmp)
    tr, wall = burst(tg, 1)
    v = d.view_after(wall)
    check_view(v, tr, ver)
    d.stop()
    pb = os.path.join(t.tmp, "native.pb.gz")
    p = subprocess.run([lib.go_tool(), "tool", "pprof", "-traces", pb], capture_output=True,
                       text=True, timeout=120)
    if p.returncode:
        lib.fail("go tool pprof -traces: %s" % p.stderr[-400:])
    for go_fn, (_, a_fn, _) in PATHS.items():
        tr_blocks = [b for b in p.stdout.split("-----------+") if go_fn in b]
        if not tr_blocks or not any(
                "nofp_helper" in b and a_fn in b and "unwind:  regs,cfi,cfi,cfi" in b
                for b in tr_blocks):
            lib.fail("native.pb.gz: no %s trace through nofp_helper and %s with its unwind "
                     "label: %s" % (go_fn, a_fn, p.stdout[-1500:]))

    # control: the kernel's frame-pointer stacks lose A and the cgo wrapper
    # (one tool at a time: ToolLog's log file is per tool name)
    tg2 = t.start_target(path, "-n", 1000)
    dfp = Dump(t, tg2.pid, "--fp-stacks")
    tr2, wall = burst(tg2, 1)
    v = dfp.view_after(wall)
    for go_fn, (_, a_fn, key) in PATHS.items():
        ss = sites_of(v, go_fn)
        if sum(s["bytes"] for s in ss) != tr2[key + "_bytes"]:
            lib.fail("fp control: %s bytes %d != truth %d" % (go_fn, sum(s["bytes"] for s in ss),
                                                            tr2[key + "_bytes"]))
        names = {f["function"] for s in ss for f in s["frames"]}
        if a_fn in names or any(n.startswith("_cgo_") for n in names):
            lib.fail("fp control: the frame-pointer stack of %s has %s or the cgo wrapper (the "
                     "test would not show what CFI adds): %s" % (go_fn, a_fn, describe(ss)))
        if any(f.get("unwind") == "cfi" for s in ss for f in s["frames"]):
            lib.fail("fp control: a frame tagged cfi under --fp-stacks")
    t.note("fp-only stacks of %s: %s" % (ver, [[f["function"] for f in s["frames"][:4]]
                                               for fn in PATHS for s in sites_of(v, fn)]))
    dfp.stop()
