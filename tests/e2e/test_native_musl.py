"""A musl-linked cgo program, seen by every command through the one
classifier (daemon/discover/classify.c): tests/targets/cgoleak in flavor
`musl` (its build.env: cgo with CC=musl-gcc from Debian's musl-tools; Go
links it dynamically, DT_NEEDED "libc.so", and the process maps
/usr/lib/x86_64-linux-musl/libc.so through the /lib/ld-musl-x86_64.so.1
symlink).

- `memdrift ps --json` classifies it go+cgo;
- `memdrift attach --trace --json` (every set that applies) traces its C
  allocations in musl's allocator: at a quiet point after a burst, the
  leaking C.CString site (Go caller main.leakOne at leak_cgo.go's SITE leak
  line) holds exactly the bytes and blocks the target's truth says, the
  correct site (C.CString + C.free) none; after the target frees them
  (SIGUSR2), nothing is left there. cgo calls are counted.
"""

import json
import os
import shutil
import signal
import time

import lib
from test_native import by_go_line, site_line

def musl_cases():
    # tests/targets/cgoleak/build.env builds the musl flavor from Go 1.26
    vs = [v for v in lib.versions() if int(v.split(".")[1]) >= 26]
    return lib.target_cases(flavors=("musl",), vers=vs)


def objects(log):
    out = []
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def wait_object(proc, log, pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for o in reversed(objects(log)):
            if pred(o):
                return o
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(log, errors="replace") as f:
        lib.fail("attach: no object for %s (rc %s): %s" % (what, proc.poll(), f.read()[-800:]))


@lib.cases(musl_cases)
@lib.timeout(120)
def test_musl_cgo(t, ver, flavor):
    lib.need_root_bpf()
    if not shutil.which("musl-gcc"):
        lib.skip_or_fail("musl-tools (musl-gcc) not installed: no musl target")
    leak_line, ok_line = site_line("leak"), site_line("ok")
    tg = t.start_target(lib.target(ver, "cgoleak", flavor), "-rate", 262144, "-size", 128,
                        "-burst", 1.5)
    rows = [r for r in t.memdrift("ps", "--json").json() if r["pid"] == tg.pid]
    if not rows or rows[0]["kind"] != "go+cgo":
        lib.fail("ps --json: musl cgo target classified %r, want go+cgo" % rows)

    proc, log = t.spawn([lib.MEMDRIFT, "attach", str(tg.pid), "--trace", "--json",
                         "--interval", "250ms"], log_name="attach.%d.log" % tg.pid)
    first = wait_object(proc, log, lambda o: "native" in o, 30, "the first interval")
    libc = first["native"]["libc"]
    if not libc.endswith("-linux-musl/libc.so"):
        lib.fail("attach traced libc %r, want musl's /usr/lib/x86_64-linux-musl/libc.so" % libc)

    os.kill(tg.pid, signal.SIGUSR1)
    tr = tg.wait_truth(lambda tr: tr.get("seq", -1) >= 1, timeout=60)
    wall = os.path.getmtime(tg.truth_path)
    v = wait_object(proc, log, lambda o: "native" in o and o["ts"] > wall + 0.3, 20,
                    "a view after the quiet point")["native"]
    leak = by_go_line(v, leak_line)
    if not leak:
        lib.fail("no site with the Go caller at leak_cgo.go:%d; sites: %s"
                 % (leak_line, [(s["bytes"], s.get("go_function"), s.get("go_line"))
                                for s in v["sites"][:8]]))
    got = sum(s["bytes"] for s in leak)
    blocks = sum(s["count"] for s in leak)
    if (got, blocks) != (tr["leaked_bytes"], tr["leaked_count"]):
        lib.fail("leak site: memdrift %d B in %d blocks, the target leaked %d B in %d"
                 % (got, blocks, tr["leaked_bytes"], tr["leaked_count"]))
    if not all(s.get("go_function") == "main.leakOne" for s in leak):
        lib.fail("leak site's Go caller is %s, want main.leakOne"
                 % [s.get("go_function") for s in leak])
    ok_bytes = sum(s["bytes"] for s in by_go_line(v, ok_line))
    if ok_bytes:
        lib.fail("correct site (C.CString + C.free) shows %d bytes outstanding" % ok_bytes)
    if v["cgo"]["calls"] < 2 * tr["leaked_count"]:
        lib.fail("cgo calls %d < 2 x %d C.CString calls" % (v["cgo"]["calls"], tr["leaked_count"]))

    os.kill(tg.pid, signal.SIGUSR2)  # frees everything at SITE release
    tg.wait_truth(lambda tr: tr.get("seq", -1) >= 2, timeout=60)
    wall = os.path.getmtime(tg.truth_path)
    v = wait_object(proc, log, lambda o: "native" in o and o["ts"] > wall + 0.3, 20,
                    "a view after the release")["native"]
    left = sum(s["bytes"] for s in by_go_line(v, leak_line))
    if left:
        lib.fail("after C.free of every leaked string, %d bytes remain at the leak site" % left)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=30)
    if rc != 0:
        lib.fail("attach exited %s after SIGINT" % rc)
    t.note("%s musl: leaked %d B in %d blocks = memdrift; libc %s"
           % (ver, tr["leaked_bytes"], tr["leaked_count"], libc))
