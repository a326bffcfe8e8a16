"""daemon/discover/procmon.c + bpf/procmon.bpf.c against real processes, through the
developer tool tests/tools/procmon_dump (built here with the Makefile's own
flags), which prints every procmon event as a JSON line.

Oracles: /proc/PID/status for RSS, os.stat of the executable for (dev, ino),
the pids this test started for exec/fork/exit, and the kernel's OOM kill of a
child inside a memory-limited cgroup.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import lib

GO = "/usr/lib/go-1.24/bin/go"
MIB = 1 << 20


def build_dump():
    return lib.tool('procmon_dump')


class Dump:
    """A running procmon_dump: JSON events collected by a reader thread."""

    def __init__(self, t, *args, env=None):
        lib.need_root_bpf()
        path = build_dump()
        self.errlog = os.path.join(t.tmp, "procmon_dump.err")
        with open(self.errlog, "wb") as err:
            self.proc = subprocess.Popen([path] + list(args), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True,
                                         env=dict(os.environ, **(env or {})))
        lib._live.append(self.proc)
        t.cleanup(self.stop)
        self.events = []
        self.lock = threading.Lock()
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.wait(lambda e: e["type"] == "ready", 30, "ready line")

    def _read(self):
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                ev = {"type": "garbage", "raw": raw.decode(errors="replace")}
            with self.lock:
                self.events.append(ev)
            self.q.put(ev)
        self.q.put(None)

    def stderr(self):
        try:
            with open(self.errlog) as f:
                return f.read()[-600:]
        except OSError:
            return ""

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def wait(self, pred, timeout, what, start=0):
        """First event from index start on (already seen or new) matching pred."""
        for ev in self.snapshot()[start:]:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                lib.fail("procmon_dump: no %s within %.0fs (stderr: %r)"
                         % (what, timeout, self.stderr()))
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if ev is None:
                lib.fail("procmon_dump exited (rc %s) waiting for %s: %r"
                         % (self.proc.wait(), what, self.stderr()))
            if ev.get("type") == "garbage":
                lib.fail("procmon_dump printed a non-JSON line: %r" % ev["raw"])
            if pred(ev):
                return ev

    def command(self, line, timeout=10):
        start = len(self.snapshot())  # an identical earlier command has its own ack
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        return self.wait(lambda e: e["type"] == "ack" and e["cmd"] == line, timeout,
                         "ack of %r" % line, start)

    def maps(self, pid):
        n = len(self.snapshot())
        self.command("maps %d" % pid)
        for ev in self.snapshot()[n:]:
            if ev["type"] == "maps" and ev["pid"] == pid:
                return ev
        lib.fail("no maps line for %d" % pid)

    def stop(self):
        """quit -> final stats line (returned), or kill."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.05)
        stats = [e for e in self.snapshot() if e["type"] == "stats"]
        return stats[-1] if stats else None

    def of(self, typ, tgid=None):
        return [e for e in self.snapshot()
                if e["type"] == typ and (tgid is None or e["tgid"] == tgid)]


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    lib.fail("/proc/%d/status has no %s" % (pid, key))


def py(t, code, **kw):
    """python3 -c CODE with pipes, in its own session, killed at teardown."""
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, start_new_session=True, **kw)
    lib._live.append(p)
    return p


def expect_line(p, want, timeout=30):
    box = []
    th = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)
    th.start()
    th.join(timeout)
    line = box[0].decode().strip() if box else ""
    if line != want:
        lib.fail("child %d: expected %r, got %r (rc %s)" % (p.pid, want, line, p.poll()))


TOUCHER = r"""
import mmap, os, sys
sys.stdin.readline()
maps = []
for step in range(4):
    m = mmap.mmap(-1, 50 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, 50 << 20, 4096):
        m[off] = 1
    maps.append(m)
    print("step", step, flush=True)
    sys.stdin.readline()
print("done", flush=True)
sys.stdin.readline()
os._exit(0)  # no munmap on the way out: the kernel tears the 200 MiB down
"""


@lib.timeout(90)
def test_rss_200mib_four_steps(t):
    d = Dump(t)
    p = py(t, TOUCHER)
    ack = d.command("watch %d" % p.pid)
    assert ack["err"] == 0, ack
    p.stdin.write(b"go\n")
    p.stdin.flush()
    for step in range(4):
        expect_line(p, "step %d" % step)
        p.stdin.write(b"next\n")
        p.stdin.flush()
    expect_line(p, "done")
    anon_truth = status_kb(p.pid, "RssAnon")
    rss_truth = status_kb(p.pid, "VmRSS")

    def last_rss():
        recs = d.of("rss", p.pid)
        return recs[-1] if recs else None

    # The last record may trail by one throttle step: give the ring buffer a moment.
    deadline = time.monotonic() + 5
    while True:
        last = last_rss()
        if last and abs(last["rss_anon"] - anon_truth) <= 0.05 * anon_truth:
            break
        if time.monotonic() > deadline:
            lib.fail("last RSS record %s, /proc RssAnon %d" % (last, anon_truth))
        time.sleep(0.1)
    total = last["rss_anon"] + last["rss_file"] + last["rss_shmem"]
    lib.within(total, rss_truth, 0.05, "RSS total vs VmRSS")
    recs = d.of("rss", p.pid)
    pages = 4 * (50 << 20) // 4096
    if len(recs) * 50 > pages:
        lib.fail("%d RSS records for %d pages touched: throttle not working" % (len(recs), pages))
    anons = [r["rss_anon"] for r in recs]
    if anons[-1] < 200 * MIB:
        lib.fail("RSS records never reached 200 MiB anon: %s" % anons[-5:])

    # Exit carries the last numbers before teardown (the kernel's page-by-page
    # unmapping of a dead mm is not streamed) and frees the kernel state.
    before = d.maps(p.pid)
    assert before["mms"] == 1 and before["tgid_mm"] == 1 and before["watched"] == 1, before
    p.stdin.close()
    p.wait(timeout=10)
    ex = d.wait(lambda e: e["type"] == "exit" and e["tgid"] == p.pid, 10, "exit record")
    assert ex["rss_valid"], ex
    lib.within(ex["rss_anon"], anon_truth, 0.05, "exit record anon")
    after = d.maps(p.pid)
    assert after["mms"] == 0 and after["tgid_mm"] == 0 and after["watched"] == 0, after
    st = d.stop()
    assert st and st["ringbuf_drops"] == 0 and st["mms_full"] == 0, st
    t.note("%d RSS records for %d pages (%d rss_stat hits in kernel); final anon %.1f MiB "
           "vs RssAnon %.1f MiB" % (len(recs), pages, st["rss_events"], last["rss_anon"] / MIB,
                                    anon_truth / MIB))


def test_rss_unwatched_is_silent(t):
    """Without watch, RSS records are not produced for a process (load stays low)."""
    d = Dump(t)
    p = py(t, TOUCHER)
    p.stdin.write(b"go\n")
    p.stdin.flush()
    expect_line(p, "step 0")
    time.sleep(0.3)
    assert not d.of("rss", p.pid), d.of("rss", p.pid)[:3]
    # watched from now on: the next step shows up
    assert d.command("watch %d" % p.pid)["err"] == 0
    p.stdin.write(b"next\n")
    p.stdin.flush()
    expect_line(p, "step 1")
    d.wait(lambda e: e["type"] == "rss" and e["tgid"] == p.pid and e["rss_anon"] >= 95 * MIB,
           10, "RSS record after watch")
    assert d.command("unwatch %d" % p.pid)["err"] == 0
    m = d.maps(p.pid)
    assert m["mms"] == 0 and m["watched"] == 0, m
    n = len(d.of("rss", p.pid))
    p.stdin.write(b"next\n")
    p.stdin.flush()
    expect_line(p, "step 2")
    time.sleep(0.3)
    assert len(d.of("rss", p.pid)) == n, "RSS records after unwatch"


def test_exec_go_binary(t):
    if not os.access(GO, os.X_OK):
        lib.skip_or_fail("%s not installed" % GO)
    d = Dump(t, "--no-rss")
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="", GOENV="off", GOTELEMETRY="off")
    p = subprocess.Popen([GO, "version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
    lib._live.append(p)
    out = p.communicate(timeout=30)[0].decode()
    assert p.returncode == 0, out
    ev = d.wait(lambda e: e["type"] == "exec" and e["tgid"] == p.pid, 10, "exec of go")
    st = os.stat(GO)
    assert ev["pid"] == p.pid and ev["filename"] == GO, ev
    assert ev["comm"] == "go", ev
    assert (ev["dev_major"], ev["dev_minor"], ev["ino"]) == \
        (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), (ev, st)
    assert ev["ppid"] == os.getpid(), ev
    assert not ev["initial"]
    d.wait(lambda e: e["type"] == "exit" and e["tgid"] == p.pid, 10, "exit of go")
    t.note("exec pid %d %s dev %d:%d ino %d" % (p.pid, GO, ev["dev_major"], ev["dev_minor"],
                                                ev["ino"]))


def _go_target():
    for v in reversed(lib.versions()):
        path = os.path.join(lib.TARGETS, v, "parker-plain")
        if os.access(path, os.X_OK):
            return path
    lib.skip_or_fail("no parker-plain target built (make targets)")


def test_exit_once_per_multithreaded_process(t):
    d = Dump(t, "--no-rss")
    tg = t.start_target(_go_target())
    threads = len(os.listdir("/proc/%d/task" % tg.pid))
    assert threads > 1, "parker has %d threads" % threads
    d.wait(lambda e: e["type"] == "exec" and e["tgid"] == tg.pid, 10, "exec of parker")
    os.kill(tg.pid, signal.SIGKILL)
    tg.proc.wait(timeout=10)
    ex = d.wait(lambda e: e["type"] == "exit" and e["tgid"] == tg.pid, 10, "exit of parker")
    time.sleep(0.5)
    exits = d.of("exit", tg.pid)
    assert len(exits) == 1, "%d exit records for one process: %s" % (len(exits), exits)
    assert ex["exit_code"] & 0x7f == signal.SIGKILL, ex
    # Thread exits of a living process are not process exits.
    p = py(t, "import threading,sys,os\n"
              "ids=[]\n"
              "ts=[threading.Thread(target=lambda: ids.append(threading.get_native_id()))"
              " for _ in range(4)]\n"
              "[x.start() for x in ts]; [x.join() for x in ts]\n"
              "print(' '.join(map(str, ids)), flush=True)\n"
              "print('joined', flush=True); sys.stdin.readline()\n")
    tids = [int(x) for x in p.stdout.readline().split()]
    assert len(tids) == 4 and p.pid not in tids, tids
    expect_line(p, "joined")
    time.sleep(0.3)
    bad = [e for e in d.of("exit") if e["pid"] in tids or e["tgid"] in tids]
    assert not bad and not d.of("exit", p.pid), bad
    p.stdin.close()
    p.wait(timeout=10)
    d.wait(lambda e: e["type"] == "exit" and e["tgid"] == p.pid, 10, "exit of python")
    time.sleep(0.3)
    assert len(d.of("exit", p.pid)) == 1
    t.note("parker: %d threads, 1 exit record; 4 joined threads: 0" % threads)


def test_fork_announced_threads_not(t):
    d = Dump(t, "--no-rss")
    p = py(t, "import os,sys,threading,time\n"
              "th=threading.Thread(target=lambda: (print(threading.get_native_id(),flush=True),"
              " time.sleep(0.5)))\n"
              "th.start(); time.sleep(0.1)\n"
              "c=os.fork()\n"
              "if c==0:\n  time.sleep(0.2); os._exit(7)\n"
              "print(c, flush=True); os.waitpid(c,0); th.join()\n")
    tid = int(p.stdout.readline())
    child = int(p.stdout.readline())
    p.wait(timeout=10)
    fk = d.wait(lambda e: e["type"] == "fork" and e["tgid"] == child, 10, "fork record")
    assert fk["ppid"] == p.pid, fk
    ex = d.wait(lambda e: e["type"] == "exit" and e["tgid"] == child, 10, "child exit")
    assert ex["exit_code"] >> 8 == 7, ex
    assert not d.of("fork", tid), "thread announced as a process"
    assert not [e for e in d.of("exec") if e["tgid"] == child], "fork without exec reported as exec"


def test_scan_initial_processes(t):
    d = Dump(t, "--no-rss", "--scan")
    me = d.wait(lambda e: e["type"] == "exec" and e["tgid"] == os.getpid(), 10,
                "scan entry for the test runner")
    st = os.stat("/proc/self/exe")
    assert me["initial"] and me["ts_ns"] == 0, me
    assert (me["dev_major"], me["dev_minor"], me["ino"]) == \
        (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), me
    assert me["ppid"] == os.getppid(), me
    init = [e for e in d.snapshot() if e["type"] == "exec" and e["initial"]]
    kthreads = [e for e in init if e["tgid"] == 2]
    assert not kthreads, "kthreadd reported"
    t.note("%d processes found by the scan" % len(init))


HOG = r"""
import mmap, sys
sys.stdin.readline()
keep = []
while True:
    m = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, 1 << 20, 4096):
        m[off] = 1
    keep.append(m)
"""


def oom_kill(t, probe=None):
    """A python hog OOM-killed in a 64 MiB cgroup: the mark_victim record
    names its TGID (with probe, that OOM program variant is forced)."""
    d = Dump(t, "--no-rss", env={"MEMDRIFT_OOM_PROBE": probe} if probe else None)
    if probe and d.ready.get("oom_probe") != probe:
        lib.fail("MEMDRIFT_OOM_PROBE=%s: procmon chose %r" % (probe, d.ready.get("oom_probe")))
    procs, kind = lib.memory_cgroup(t, 64 * MIB, "memdrift-oom")
    p = py(t, HOG)
    with open(procs, "w") as f:
        f.write(str(p.pid))
    p.stdin.write(b"go\n")
    p.stdin.flush()
    rc = p.wait(timeout=60)
    assert rc == -signal.SIGKILL, "hog exited with %s, not SIGKILL" % rc
    oom = d.wait(lambda e: e["type"] == "oom" and e["tgid"] == p.pid, 10, "mark_victim record")
    assert oom["pid"] == p.pid and oom["comm"].startswith("python"), oom
    if d.ready["oom_task"]:
        assert oom["rss_valid"] and oom["total_vm"] > 0, oom
        assert 32 * MIB <= oom["rss_anon"] <= 72 * MIB, oom
    d.wait(lambda e: e["type"] == "exit" and e["tgid"] == p.pid, 10, "exit of the victim")
    t.note("cgroup %s, OOM probe %s: victim %d anon %.1f MiB total_vm %.1f MiB" %
           (kind, d.ready.get("oom_probe"), p.pid, oom.get("rss_anon", 0) / MIB,
            oom["total_vm"] / MIB))


@lib.timeout(90)
def test_oom_kill_in_cgroup(t):
    oom_kill(t)


@lib.timeout(90)
def test_oom_kill_pre68_pid_tracepoint(t):
    """The program Debian 12's 6.1 kernel gets (mark_victim(int pid) there),
    forced on this kernel: tgid 0 from BPF, resolved from /proc while the
    victim dies (was sent with tgid 0 and never matched)."""
    oom_kill(t, "tracepoint-pid")
