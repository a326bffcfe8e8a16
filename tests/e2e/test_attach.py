"""`memdrift attach PID [--trace]` and `memdrift ps --probes` against churn.

The oracle is churn's own truth file (tests/targets/churn): per-site counters
kept by the goroutines themselves, runtime.NumGoroutine() and the runtime's
goroutine dump, published during quiet phases (nothing spawning, A and B
drained). memdrift is attached mid-run, during a busy phase, so the attach
window (probes first, snapshot second) is exercised; at every quiet point
its per-site live counts must equal the truth exactly. churn runs with
-check, so it exits 1 if the observer ever disturbed it.
"""

import json
import os
import signal
import struct
import subprocess
import time

import lib

ATTACH_KEYS = ("ts", "pid", "goroutines", "sites", "lost_events")
SITE_KEYS = ("function", "file", "line", "live", "created", "exited")
OUR_PROG_PREFIXES = ("gr_birth", "gr_death")


def json_lines(path):
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass  # a line still being written
    except OSError:
        pass
    return out


def start_churn(t, ver, flavor, *extra):
    lib.need_root_bpf()
    lib.need_memdrift()
    tg = t.start_target(lib.target(ver, "churn", flavor), "-check", "-phase", "1s", *extra)
    return tg


def wait_busy(tg, timeout=30.0):
    """Until churn is in a busy phase (spawning): attach lands mid-run."""
    return tg.wait_truth(lambda tr: not tr["quiet"] and tr["seq"] >= 1, timeout)


def spawn_attach(t, tg, *args, env=None):
    proc, log = t.spawn([lib.MEMDRIFT, "attach", str(tg.pid)] + [str(a) for a in args],
                        log_name="attach.%d.log" % tg.pid,
                        env=dict(os.environ, **env) if env else None)
    return proc, log


def wait_lines(proc, log, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = json_lines(log)
        if len(lines) >= n:
            return lines
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(log, errors="replace") as f:
        lib.fail("memdrift attach produced %d JSON lines (rc %s): %s"
                 % (len(json_lines(log)), proc.poll(), f.read()[-800:]))


def site_live(line, truth_line, fn_suffix):
    total = 0
    found = False
    for s in line["sites"]:
        if s["line"] == truth_line and s["function"].endswith(fn_suffix):
            total += s["live"]
            found = True
    return total if found else None


def quiet_points(t, tg, proc, log, npoints, what):
    """At npoints quiet phases: memdrift's line written inside the phase (after
    the truth) against the truth. Returns the number of points compared."""
    seen = set()
    compared = 0
    deadline = time.monotonic() + 30 + 4 * npoints
    while compared < npoints:
        if time.monotonic() > deadline:
            lib.fail("%s: only %d of %d quiet points compared" % (what, compared, npoints))
        if proc.poll() is not None:
            lib.fail("%s: memdrift exited early (rc %s): %s" % (what, proc.returncode,
                                                                open(log).read()[-600:]))
        if not tg.alive():
            lib.fail("%s: churn exited (rc %s): %s" % (what, tg.proc.returncode, tg.log_tail()))
        try:
            tr = tg.read_truth()
            written = os.stat(tg.truth_path).st_mtime
        except (OSError, ValueError):
            time.sleep(0.02)
            continue
        if not tr["quiet"] or tr["seq"] in seen:
            time.sleep(0.02)
            continue
        if tr["errors"]:
            lib.fail("%s: churn's own check failed: %s" % (what, tr["errors"]))
        quiet_until = tr["quiet_until"] / 1000.0
        # A line sampled strictly inside the quiet phase, after the truth, and
        # 0.3 s past it (churn -phase 1s): nothing is spawned in a quiet phase, so
        # every line then must be exact, and the comparison does not hang on
        # the 20 ms after the truth (once, with image builds loading both
        # CPUs beside the suite, a line that soon still held one goroutine
        # the target had counted out).
        after = min(written + 0.3, (written + quiet_until) / 2)
        line = None
        while time.time() < quiet_until - 0.05:
            cand = [l for l in json_lines(log) if after < l["ts"] < quiet_until - 0.02]
            if cand:
                line = cand[-1]
                break
            time.sleep(0.05)
        seen.add(tr["seq"])
        if line is None:
            continue  # too close to the phase end; take the next one
        lib.require_keys(line, ATTACH_KEYS, "attach line")
        for s in line["sites"]:
            lib.require_keys(s, SITE_KEYS, "attach line sites[]")
        if line["lost_events"] != 0:
            lib.fail("%s: lost_events %s" % (what, line["lost_events"]))
        for name, suffix in (("A", ".spawnA"), ("B", ".spawnB"), ("C", ".spawnC")):
            want = tr["counts"][name]["live"]
            got = site_live(line, tr["site_lines"][name], suffix)
            if got is None and want == 0:
                got = 0  # a site that never ran since attach and has none alive
            if got != want:
                lib.fail("%s: quiet point %d: site %s (%s line %d): memdrift live %s, "
                         "target %d; memdrift sites %s"
                         % (what, tr["seq"], name, suffix, tr["site_lines"][name], got, want,
                            [(s["function"], s["line"], s["live"]) for s in line["sites"]]))
        if line["goroutines"] != tr["numgoroutine"]:
            lib.fail("%s: quiet point %d: memdrift %d goroutines, NumGoroutine %d"
                     % (what, tr["seq"], line["goroutines"], tr["numgoroutine"]))
        compared += 1
        t.note("q%d C=%d" % (tr["seq"], tr["counts"]["C"]["live"]))
    return compared


def exact_cases():
    """Every toolchain plain and stripped; pie and cgo with the two newest."""
    return (lib.target_cases(flavors=("plain", "stripped")) +
            lib.target_cases(flavors=("pie", "cgo"), vers=lib.versions()[-2:]))


@lib.cases(exact_cases)
@lib.timeout(90)
def test_trace_exact(t, ver, flavor):
    tg = start_churn(t, ver, flavor)
    wait_busy(tg)
    proc, log = spawn_attach(t, tg, "--trace", "goroutines", "--json", "--interval", "200ms")
    wait_lines(proc, log, 1)
    quiet_points(t, tg, proc, log, 3, "%s %s" % (ver, flavor))
    last = json_lines(log)[-1]
    if last.get("mode") != "trace":
        lib.fail("attach --trace did not run in trace mode: %r" % last.get("mode"))
    probes = last.get("probes", {})
    if probes.get("births", 0) == 0 or probes.get("deaths", 0) == 0:
        lib.fail("probes saw no births/deaths: %r" % probes)
    t.note("births %d deaths %d corrections %d" % (probes["births"], probes["deaths"],
                                                  probes.get("window_corrections", 0)))
    # Ctrl-C: final report, exit 0, probes gone; churn unharmed.
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=10)
    if proc.returncode != 0:
        lib.fail("attach exited %d after SIGINT" % proc.returncode)
    if not any(l.get("final") for l in json_lines(log)):
        lib.fail("no final report after SIGINT")
    tr = tg.wait_truth(lambda tr: tr["quiet"], timeout=10)
    if tr["errors"] or not tg.alive():
        lib.fail("churn disturbed: %s %s" % (tr["errors"], tg.log_tail()))


@lib.cases(lambda: lib.target_cases(flavors=("plain",), vers=lib.versions()[::len(lib.versions()) - 1 or 1]))
@lib.timeout(90)
def test_trace_exact_high_rate(t, ver, flavor):
    """Thousands of births and deaths per second while the attach window is
    open: the window corrections are exercised, and still exact."""
    tg = start_churn(t, ver, flavor, "-rate-a", "20000", "-rate-b", "3000", "-rate-c", "50")
    wait_busy(tg)
    # Hold the window open 300 ms on each side of the snapshot.
    proc, log = spawn_attach(t, tg, "--trace", "--json", "--interval", "200ms",
                             env={"MEMDRIFT_TEST_WINDOW_MS": "300"})
    wait_lines(proc, log, 1)
    quiet_points(t, tg, proc, log, 2, "high rate %s" % ver)
    probes = json_lines(log)[-1].get("probes", {})
    if probes.get("window_corrections", 0) == 0:
        lib.fail("the attach window saw no birth or death to reconcile: %r" % probes)
    t.note("births %d corrections %d" % (probes.get("births", 0),
                                         probes.get("window_corrections", 0)))


@lib.cases(lambda: lib.target_cases(flavors=("plain",), vers=lib.versions()[-1:]))
@lib.timeout(60)
def test_watch_mode(t, ver, flavor):
    """Without --trace: snapshot-based sites, no probes, same live counts."""
    tg = start_churn(t, ver, flavor)
    wait_busy(tg)
    proc, log = spawn_attach(t, tg, "--json", "--interval", "200ms")
    wait_lines(proc, log, 1)
    quiet_points(t, tg, proc, log, 2, "watch %s" % ver)
    if json_lines(log)[-1].get("mode") != "watch":
        lib.fail("attach without --trace is not in watch mode")


def elf_vaddr(path, file_offset):
    """Link-time address of a file offset (ELF64 program headers)."""
    with open(path, "rb") as f:
        hdr = f.read(64)
        phoff, = struct.unpack_from("<Q", hdr, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", ph, i * phentsize)
        if p_type == 1 and p_offset <= file_offset < p_offset + p_filesz:
            return file_offset - p_offset + p_vaddr
    lib.fail("offset %#x not in a PT_LOAD of %s" % (file_offset, path))


def read_mem(pid, addr, n):
    with open("/proc/%d/mem" % pid, "rb") as f:
        f.seek(addr)
        return f.read(n)


def trampoline_range(pid):
    """The [uprobes-trampoline] mapping of pid, or None."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            if line.rstrip().endswith("[uprobes-trampoline]"):
                lo, hi = line.split()[0].split("-")
                return int(lo, 16), int(hi, 16)
    return None


def probe_in_place(pid, addr):
    """A uprobe is an int3 at addr, or, once hit (Linux 6.18+ optimizes a
    uprobe on a 5-byte nop), a `call` into the process's
    [uprobes-trampoline] mapping."""
    code = read_mem(pid, addr, 5)
    if code[:1] == b"\xcc":
        return True
    tramp = trampoline_range(pid)
    if code[:1] != b"\xe8" or not tramp:
        return False
    target = addr + 5 + int.from_bytes(code[1:5], "little", signed=True)
    return tramp[0] <= target < tramp[1]


def our_progs():
    """IDs of our goroutine BPF programs currently loaded."""
    r = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    if r.returncode != 0:
        lib.skip_or_fail("bpftool prog show failed: %s" % r.stderr.strip())
    return {p["id"] for p in json.loads(r.stdout or "[]") if p.get("name", "").startswith(OUR_PROG_PREFIXES)}


@lib.cases(lambda: lib.target_cases(flavors=("plain",), vers=lib.versions()[-1:]))
@lib.timeout(60)
def test_kill9_leaves_nothing(t, ver, flavor):
    tg = start_churn(t, ver, flavor)
    path = lib.target(ver, "churn", flavor)
    probes = t.memdrift("ps", "--probes", tg.pid, "--json").json()
    goexit = [p for p in probes if p["function"] == "runtime.goexit1"][0]
    births = [p for p in probes if "births" in p["role"]]
    if goexit["offset"] != 4 or not goexit["emulated"] or goexit["stack_check"] != "jbe":
        lib.fail("goexit1 placement: %r" % goexit)
    # newproc.func1: the emulated nop/call after newproc1 returns, g in a register
    if not births or not all(p["emulated"] for p in births) or \
            births[0]["function"] != "runtime.newproc.func1":
        lib.fail("birth probes not on an emulated instruction in newproc.func1: %r" % births)
    # the heap profile tier as attach plans it: one probe, in mProf_Malloc's
    # body (frees from the heap walk, no free probe)
    heap = [p for p in probes if p["role"].startswith("sampled heap")]
    if [p["function"] for p in heap] != ["runtime.mProf_Malloc"] or not heap[0]["emulated"] \
            or heap[0]["offset"] <= 0:
        lib.fail("heap profile probes: %r" % heap)
    addrs = [elf_vaddr(path, p["file_offset"]) for p in [goexit] + births]
    before = [read_mem(tg.pid, a, 5) for a in addrs]
    if any(probe_in_place(tg.pid, a) for a in addrs):
        lib.fail("a uprobe already at a probe address before attaching")

    progs_before = our_progs()
    proc, log = spawn_attach(t, tg, "--trace", "--json", "--interval", "200ms")
    wait_lines(proc, log, 1)
    # a busy phase hits the probes: on 6.18 the kernel then rewrites the
    # one on a 5-byte nop into a call (both forms are checked, and both
    # must be undone)
    seq = tg.read_truth()["seq"]
    tg.wait_truth(lambda tr: tr["seq"] > seq and not tr["quiet"], timeout=20)
    time.sleep(0.3)
    during = [probe_in_place(tg.pid, a) for a in addrs]
    if not all(during):
        lib.fail("uprobes not in place while attached: %r at %r"
                 % ([read_mem(tg.pid, a, 5) for a in addrs], [hex(a) for a in addrs]))
    optimized = sum(read_mem(tg.pid, a, 1) == b"\xe8" for a in addrs)
    mine = our_progs() - progs_before
    if len(mine) < 2:
        lib.fail("memdrift %d loaded no goroutine programs (%r)" % (proc.pid, our_progs()))

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while True:
        after = [read_mem(tg.pid, a, 5) for a in addrs]
        left = mine & our_progs()
        if after == before and not left:
            break
        if time.monotonic() > deadline:
            lib.fail("after kill -9: code %r (original %r), programs left %r"
                     % (after, before, left))
        time.sleep(0.1)
    # The target keeps running correctly through two more quiet checks.
    seq = tg.read_truth()["seq"]
    tr = tg.wait_truth(lambda tr: tr["quiet"] and tr["seq"] >= seq + 2, timeout=20)
    if tr["errors"] or not tg.alive():
        lib.fail("churn disturbed after kill -9: %s %s" % (tr["errors"], tg.log_tail()))
    t.note("%d probes removed (%d had been optimized into calls to [uprobes-trampoline]), original bytes back" % (len(addrs), optimized))


@lib.cases(lambda: lib.target_cases(flavors=("plain",), vers=lib.versions()[-1:]))
@lib.timeout(60)
def test_target_exits(t, ver, flavor):
    """The process exits while attached: one line 'process N exited', final
    report, exit 0."""
    tg = start_churn(t, ver, flavor, "-duration", "3s")
    r = t.memdrift("attach", tg.pid, "--trace", "--json", "--interval", "200ms",
                   "--duration", "60s", timeout=30)
    if r.rc != 0:
        lib.fail("attach to an exiting process: %s" % r.describe())
    if "process %d exited" % tg.pid not in r.err:
        lib.fail("no 'process %d exited' on stderr: %r" % (tg.pid, r.err[-300:]))
    lines = [json.loads(l) for l in r.out.splitlines() if l.startswith("{")]
    if not lines or not lines[-1].get("final"):
        lib.fail("no final report: %r" % r.out[-300:])


def test_errors(t):
    lib.need_memdrift()
    r = t.memdrift("attach", "999999999", "--trace")
    line = lib.one_error_line(r, "attach to a missing pid")
    if "999999999" not in line:
        lib.fail("error does not name the pid: %r" % line)
    proc, _ = t.spawn(["sleep", "30"])
    time.sleep(0.1)
    r = t.memdrift("attach", proc.pid, "--trace")
    lib.one_error_line(r, "attach to a non-Go process")
    r = t.memdrift("attach", "--trace", "bogus", "1")
    lib.one_error_line(r, "unknown trace set")


def mapped_addr(pid, path_part, file_offset):
    """Runtime address of a file offset of the mapped object whose path
    contains path_part (its executable mapping)."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 6 or "x" not in fields[1] or path_part not in fields[5]:
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            off = int(fields[2], 16)
            if off <= file_offset < off + (hi - lo):
                return lo + file_offset - off
    lib.fail("file offset %#x of %s not mapped executable in %d" % (file_offset, path_part, pid))


def perf_event_fds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:[perf_event]":
                n += 1
        except OSError:
            pass
    return n


@lib.cases(lambda: lib.target_cases(flavors=("cgo",), vers=lib.versions()[-1:]))
@lib.timeout(60)
def test_ps_probes_is_what_attach_attaches(t, ver, flavor):
    """`ps --probes` plans with the planners attach uses: with `attach
    --trace` (every set that applies: goroutines, heap profile, mallocgc,
    cgo, the libc allocator) every row it lists is a uprobe in place in the
    target, and memdrift holds exactly one probe per row (two for a row with
    a uretprobe), no more."""
    tg = start_churn(t, ver, flavor)
    path = lib.target(ver, "churn", flavor)
    listed = [p for p in t.memdrift("ps", "--probes", tg.pid, "--json").json() if p["found"]]
    # churn samples no heap (MemProfileRate 0): the profile tier's row is
    # listed as idle, and attach leaves it off
    idle = [p["function"] for p in listed if not p["active"]]
    if idle != ["runtime.mProf_Malloc"]:
        lib.fail("idle rows %r, expected the heap profile tier's only" % idle)
    rows = [p for p in listed if p["active"]]
    kinds = {r["role"].split(" (")[0].split(",")[0] for r in rows}
    for want in ("goroutine deaths", "every Go allocation",
                 "cgo calls", "C allocations", "C frees"):
        if not any(k.startswith(want) for k in kinds):
            lib.fail("ps --probes lists no %r row: %r" % (want, sorted(kinds)))
    proc, log = spawn_attach(t, tg, "--trace", "--json", "--interval", "200ms")
    wait_lines(proc, log, 1)
    # a probe on a libc function already has its int3 in the page cache copy
    # of libc for this process only (uprobes are per-mm)
    missing = []
    for r in rows:
        if r["function"].startswith("libc "):
            addr = mapped_addr(tg.pid, "libc", r["file_offset"])
        else:
            addr = elf_vaddr(path, r["file_offset"])
        if not probe_in_place(tg.pid, addr):
            missing.append("%s+%#x" % (r["function"], r["offset"]))
    if missing:
        lib.fail("listed by ps --probes, not attached: %s" % missing)
    want = len(rows) + sum("uretprobe" in r["role"] for r in rows)
    have = perf_event_fds(proc.pid)
    if have != want:
        lib.fail("memdrift holds %d uprobes, ps --probes lists %d" % (have, want))
    t.note("%d rows, %d uprobes, all in place" % (len(rows), have))
