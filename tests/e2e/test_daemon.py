"""`memdrift daemon` scenarios with short windows (--set), one daemon watching
several targets at once, assertions per pid.

Leaks (tests/targets/leaky, each with one leak switched on):
  goroutine leak  20/s at main.handleRequest (main.go:45, the `go` statement)
  Go heap leak    2 MiB/s retained, allocated at main.remember (main.go:57)
  cgo leak        2 MiB/s of C.CString never freed (cgo build): RSS grows
                  outside the Go heap; the rss_growth summary says so
  JNI ref leak    tests/targets/jni: leak_site_create keeps every global ref,
                  and so does JniTarget.tailLeak (a tail call: only Java frames)
each must be alerted within 60 s of the target's start, naming the site.
Negative controls — steady service (GC sawtooth, goroutine bursts that
drain), heap that grows then plateaus, a process that exits, and in the JVM
the balanced and weak sites — must produce no alert at all.
An OOM kill of a watched Go process in a memory-limited cgroup must produce
the oom_kill alert and a post-mortem directory.
"""

import calendar
import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import lib

MIB = 1 << 20
LEAKY_MAIN = "main.go"
GOROUTINE_SITE = ("main.handleRequest", LEAKY_MAIN, 45)
HEAP_SITE = ("main.remember", LEAKY_MAIN, 57)
NATIVE_SITE = ("main.leakCString", "native_cgo.go", 23)  # the C.CString never freed
# Short windows: a leak is reported once it covers most of detect.window, and
# the daemon judges a process only once it has watched it for 0.8 of it. RSS
# drift is judged at 1 MiB/s (the leaks here are >= 1 MiB/s): a Go process's
# RSS warms up for ~20 s (heap goal, scavenger) — half of a 40 s window.
WINDOW_SETS = ["detect.window=40s", "detect.interval=1s", "goroutine.blocked_min_age=5s",
               "detect.min_slope.rss=1MiB/s", "alerts.rate_limit=0"]
ALERT_KEYS = ("ts", "pid", "comm", "kind", "severity", "state", "site", "summary", "evidence")


def parse_ts(ts):
    """'2024-05-01T12:34:56.789Z' -> epoch seconds."""
    base, frac = ts.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float("0." + frac)


class Daemon:
    """memdrift daemon with alerts on stdout (a file) and metrics on a free port."""

    def __init__(self, t, *sets, duration="170s", env=None):
        lib.need_memdrift()
        self.port = lib.free_port()
        self.state = os.path.join(t.tmp, "state")
        self.out_path = os.path.join(t.tmp, "daemon.alerts")
        self.err_path = os.path.join(t.tmp, "daemon.stderr")
        argv = [lib.MEMDRIFT, "daemon", "--duration", duration,
                "--set", "metrics.listen=127.0.0.1:%d" % self.port,
                "--set", "state.dir=" + self.state]
        for s in list(WINDOW_SETS) + list(sets):
            argv += ["--set", s]
        self.argv = argv
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True,
                                         env=dict(os.environ, **(env or {})))
        lib._live.append(self.proc)
        self.started = time.time()
        self.wait(lambda: self.metrics_text() is not None, 20, "metrics endpoint")

    def stderr(self, n=1500):
        with open(self.err_path, errors="replace") as f:
            return f.read()[-n:]

    def alive(self):
        return self.proc.poll() is None

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                lib.fail("daemon exited (rc %s) while waiting for %s: %s"
                         % (self.proc.returncode, what, self.stderr()))
            v = pred()
            if v:
                return v
            time.sleep(0.25)
        lib.fail("daemon: no %s in %ds: %s" % (what, timeout, self.stderr()))

    def metrics_text(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port,
                                        timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def metric(self, name, **labels):
        """Sum of the samples of a metric whose labels include `labels`."""
        text = self.metrics_text() or ""
        total, found = 0.0, False
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, val = line.rpartition(" ")
            mname = head.split("{")[0]
            if mname != name:
                continue
            if all('%s="%s"' % (k, v) in head for k, v in labels.items()):
                total += float(val)
                found = True
        return total if found else None

    def alerts(self):
        out = []
        with open(self.out_path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    lib.fail("daemon stdout line is not JSON: %r" % line[:300])
        return out

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lib.fail("daemon did not stop within 20s of SIGTERM")
        if rc != 0:
            lib.fail("daemon exited %s: %s" % (rc, self.stderr()))


def firing(alerts, pid, kind=None):
    return [a for a in alerts if a["pid"] == pid and a["state"] == "firing"
            and (kind is None or a["kind"] == kind)]


def check_schema(a):
    lib.require_keys(a, ALERT_KEYS, "alert")
    ev = a["evidence"]
    lib.require_keys(ev, ("window_seconds", "slope_per_second", "points"), "alert evidence")
    if a["severity"] not in ("warning", "critical"):
        lib.fail("severity %r" % a["severity"])


def first_alert(d, alerts, pid, kind, started, what, site=None):
    """The first firing alert of kind for pid, within 60 s of started,
    naming site (function, file basename, line) when given."""
    got = firing(alerts, pid, kind)
    if not got:
        others = ["%s %s" % (a["kind"], a["state"]) for a in alerts if a["pid"] == pid]
        lib.fail("%s (pid %d): no %s alert (its alerts: %s); daemon: %s"
                 % (what, pid, kind, others or "none", d.stderr(600)))
    a = got[0]
    check_schema(a)
    after = parse_ts(a["ts"]) - started
    if after > 60:
        lib.fail("%s: %s alert %.0fs after the target started (limit 60s)" % (what, kind, after))
    if site is not None:
        fn, base, line = site
        s = a["site"] or {}
        if (s.get("function"), os.path.basename(s.get("file") or ""), s.get("line")) != \
                (fn, base, line):
            lib.fail("%s: %s alert names %r, expected %s (%s:%d)" % (what, kind, s, fn, base, line))
    return a, after


def no_alerts(alerts, pid, what):
    mine = [a for a in alerts if a["pid"] == pid]
    if mine:
        lib.fail("negative control %s (pid %d) alerted: %s"
                 % (what, pid, "; ".join("%s %s %s: %s %s" % (a["ts"], a["kind"], a["state"],
                                                             a["summary"], a["evidence"])
                                         for a in mine)))


class Starter:
    """Targets started with a wall-clock start time per pid."""

    def __init__(self, t):
        self.t = t
        self.started = {}

    def go(self, ver, name, flavor, *args):
        path = lib.target(ver, name, flavor)
        t0 = time.time()
        tg = self.t.start_target(path, *args)
        self.started[tg.pid] = t0
        return tg


@lib.timeout(200)
def test_daemon_scenarios(t):
    """Leaks alerted within 60 s naming their site; negative controls silent;
    an exited process cleaned up."""
    lib.need_root_bpf()
    vers = lib.versions()
    newest = vers[-1]
    older = vers[-2] if len(vers) > 1 else newest
    oldest = vers[0]
    st = Starter(t)
    d = Daemon(t, "select.include_exe=%s/*" % lib.TARGETS, "trace.on_drift=true",
               "native.min_oldest_age=10s", duration="170s")
    # Leaks. Churn and garbage stay on (the defaults) so leaks must stand
    # out from a realistic background.
    gleak = st.go(newest, "leaky", "plain", "-goroutine-leak-rate", 20)
    hleak = st.go(older, "leaky", "pie", "-heap-leak-rate", 2 * MIB)
    cleak = st.go(newest, "leaky", "cgo", "-native-leak-rate", 2 * MIB)
    # Negative controls.
    steady = st.go(oldest, "leaky", "stripped")
    plateau = st.go(older, "leaky", "plain", "-heap-leak-rate", 4 * MIB,
                    "-heap-plateau", 16 * MIB)
    exiter = st.go(newest, "leaky", "plain", "-duration", "45s")  # judged from 32 s
    pids = {"goroutine leak": gleak.pid, "heap leak": hleak.pid, "cgo leak": cleak.pid,
            "steady": steady.pid, "plateau": plateau.pid, "exiter": exiter.pid}
    # Every target found through the exec tracepoint.
    d.wait(lambda: all(d.metric("memdrift_rss_bytes", pid=str(p)) is not None
                       for p in pids.values()), 15, "all six targets watched")
    # The exiter goes; its state with it.
    d.wait(lambda: exiter.proc.poll() is not None, 60, "the exiter's exit")
    d.wait(lambda: d.metric("memdrift_rss_bytes", pid=str(exiter.pid)) is None, 10,
           "the exiter forgotten")
    # Leaks fire within 60 s; keep watching the controls for the whole run.
    t_end = time.time() + 85 - (time.time() - min(st.started.values()))
    while time.time() < t_end:
        d.wait(lambda: True, 5, "daemon alive")
        time.sleep(1)
    d.stop()
    alerts = d.alerts()
    for a in alerts:
        check_schema(a)
    notes = []
    a, after = first_alert(d, alerts, gleak.pid, "goroutine_leak", st.started[gleak.pid],
                           "goroutine leak", GOROUTINE_SITE)
    if a["evidence"].get("goroutines", 0) < 100:
        lib.fail("goroutine leak alert evidence: %r" % a["evidence"])
    notes.append("goroutine_leak %.0fs" % after)
    a, after = first_alert(d, alerts, hleak.pid, "go_heap_growth", st.started[hleak.pid],
                           "Go heap leak", HEAP_SITE)
    if a["evidence"]["slope_per_second"] < 0.5 * MIB:
        lib.fail("heap leak slope %.0f B/s, leak is 2 MiB/s" % a["evidence"]["slope_per_second"])
    notes.append("go_heap_growth %.0fs" % after)
    a, after = first_alert(d, alerts, cleak.pid, "rss_growth", st.started[cleak.pid], "cgo leak")
    if "C/native memory" not in a["summary"]:
        lib.fail("cgo leak: rss_growth summary does not attribute the growth to C memory: %r"
                 % a["summary"])
    ev = a["evidence"]
    if ev.get("outside_go_heap_delta_bytes", 0) < 0.5 * (ev["end_value"] - ev["start_value"]):
        lib.fail("cgo leak: most RSS growth should be outside the Go heap: %r" % ev)
    if firing(alerts, cleak.pid, "go_heap_growth"):
        lib.fail("cgo leak: go_heap_growth fired for C memory")
    notes.append("cgo rss_growth %.0fs" % after)
    # trace on drift: the RSS growth outside the Go heap switched C allocation
    # tracing on, which names the Go line whose C.CString is never freed
    a, after = first_alert(d, alerts, cleak.pid, "native_leak", st.started[cleak.pid],
                           "cgo leak", NATIVE_SITE)
    if a["evidence"]["slope_per_second"] < 0.5 * MIB:
        lib.fail("cgo leak slope %.0f B/s, leak is 2 MiB/s" % a["evidence"]["slope_per_second"])
    notes.append("native_leak %.0fs" % after)
    for what in ("steady", "plateau", "exiter"):
        no_alerts(alerts, pids[what], what)
    for what in ("goroutine leak", "heap leak"):
        # a leak's only kinds: its own and the RSS it causes
        allowed = {"goroutine leak": {"goroutine_leak", "rss_growth"},
                   "heap leak": {"go_heap_growth", "rss_growth"}}[what]
        bad = [a for a in firing(alerts, pids[what]) if a["kind"] not in allowed]
        if bad:
            lib.fail("%s: unexpected alerts %s" % (what, [(a["kind"], a["summary"]) for a in bad]))
    log = d.stderr(100000)
    if "PID %d (leaky-plain) exited" % exiter.pid not in log:
        lib.fail("no final numbers logged for the exiter: %s" % log[-600:])
    t.note(", ".join(notes))


# ------------------------------------------------- lost exits, PID reuse

FORK_STORM = r"""
import os, sys
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""


@lib.timeout(240)
def test_daemon_lost_exit_pid_reuse(t):
    """The daemon stopped while a fork storm fills procmon's ring buffer; a
    watched Go target dies (its exit record dropped) and its pid goes to
    another program (ns_last_pid). Resumed, the daemon must forget the dead
    target: the pid's start time changed (the stale entry used to stay).
    Up to 3 attempts, since an exit record may still find room."""
    lib.need_root_bpf()
    ver = lib.versions()[-1]
    d = Daemon(t, "select.include_exe=%s/*" % lib.TARGETS, "detect.interval=1s",
               duration="200s")
    st = Starter(t)
    for attempt in range(3):
        target = st.go(ver, "leaky", "plain")
        d.wait(lambda: d.metric("memdrift_rss_bytes", pid=str(target.pid)) is not None, 15,
               "target watched")
        pid = target.pid
        watched = d.metric("memdrift_watched_processes")
        before = d.metric("memdrift_daemon_events_total", event="exit_reconciled") or 0
        os.kill(d.proc.pid, signal.SIGSTOP)
        reused = None
        try:
            subprocess.run([sys.executable, "-c", FORK_STORM, "12000"], check=True, timeout=60)
            target.proc.kill()
            target.proc.wait()
            for _ in range(200):
                with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                    f.write(str(pid - 1))
                p = subprocess.Popen(["sleep", "100"], start_new_session=True)
                lib._live.append(p)
                if p.pid == pid:
                    reused = p
                    break
                p.kill()
                p.wait()
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        if reused is None:
            t.note("attempt %d: pid %d taken by another process first" % (attempt, pid))
            continue
        t.cleanup(reused.kill)
        d.wait(lambda: d.metric("memdrift_watched_processes") == watched - 1 and
               d.metric("memdrift_rss_bytes", pid=str(pid)) is None, 10,
               "the dead target forgotten")
        n = d.metric("memdrift_daemon_events_total", event="exit_reconciled") or 0
        drops = d.metric("memdrift_lost_events_total", reason="ringbuf_full")
        if n > before:
            t.note("attempt %d: ring drops %d; pid %d reused by sleep; exit reconciled"
                   % (attempt, drops, pid))
            return
        t.note("attempt %d: the exit record was not lost (ring drops %d)" % (attempt, drops))
        reused.kill()
    lib.fail("no attempt lost the exit record and reused the pid, or the daemon never "
             "reconciled it (exit_reconciled stayed 0)")


# ------------------------------------------------------- hostile targets

FAKE_JVM = r"""
import ctypes, mmap, os, sys, time
# a comm that is not UTF-8 (PR_SET_NAME)
ctypes.CDLL(None).prctl(15, b"jvm\xff\xfe\xc0", 0, 0, 0)
lib = sys.argv[1]
f = open(lib, "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)   # maps .../libjvm.so at offset 0
d = "/tmp/hsperfdata_%s" % sys.argv[2]
os.makedirs(d, exist_ok=True)
fifo = os.path.join(d, str(os.getpid()))
os.mkfifo(fifo)
print(fifo, flush=True)
try:
    time.sleep(120)
finally:
    os.unlink(fifo)
"""


def healthz(d):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % d.port, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@lib.timeout(90)
def test_daemon_hostile_fake_jvm_fifo_utf8(t):
    """A fake JVM (a process mapping a file named libjvm.so) with a FIFO as
    its hsperfdata file, and a Go target whose comm is not UTF-8: the daemon
    keeps answering /healthz, watches the Go target, and /metrics passes
    `promtool check metrics` (the FIFO used to block the event loop in
    open(); the comm bytes made the exposition invalid)."""
    lib.need_root_bpf()
    promtool = shutil.which("promtool")
    if promtool is None:
        lib.skip_or_fail("promtool not installed (Debian package promtool)")
    # The fake runs as nobody: its FIFO sits in /tmp/hsperfdata_nobody, where
    # no real JVM of the suite (root's) looks. A JVM starting while a FIFO is
    # in its own user's hsperfdata directory hangs in open() when it sweeps
    # stale files, so a FIFO left in /tmp/hsperfdata_root by a killed run
    # would hang every later JVM on the machine.
    user = "nobody"
    pmdir = "/tmp/hsperfdata_" + user
    if os.path.isdir(pmdir):
        for name in os.listdir(pmdir):
            path = os.path.join(pmdir, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                os.unlink(path)  # left by an earlier, killed run
    top = tempfile.mkdtemp(prefix="memdrift-fakejvm-")
    t.cleanup(lambda: shutil.rmtree(top, ignore_errors=True))
    os.chmod(top, 0o755)
    libdir = os.path.join(top, "jdk", "lib", "server")
    os.makedirs(libdir, mode=0o755)
    shutil.copyfile("/bin/true", os.path.join(libdir, "libjvm.so"))
    os.chmod(os.path.join(libdir, "libjvm.so"), 0o644)
    fake = subprocess.Popen(["setpriv", "--reuid=" + user, "--regid=" + lib.user_group(user),
                             "--clear-groups", sys.executable, "-c", FAKE_JVM,
                             os.path.join(libdir, "libjvm.so"), user],
                            stdout=subprocess.PIPE, start_new_session=True)
    lib._live.append(fake)
    t.cleanup(fake.terminate)
    fifo = fake.stdout.readline().decode().strip()
    if not fifo:
        lib.fail("fake JVM did not start")
    t.cleanup(lambda: os.path.exists(fifo) and os.unlink(fifo))  # SIGTERM skips its finally
    ver = lib.versions()[-1]
    st = Starter(t)
    target = st.go(ver, "leaky", "plain")
    d = Daemon(t, "select.include_exe=%s/*,%s" % (lib.TARGETS, os.path.realpath(sys.executable)),
               duration="60s")
    d.wait(lambda: d.metric("memdrift_rss_bytes", pid=str(target.pid)) is not None, 15,
           "Go target watched next to the FIFO JVM")
    d.wait(lambda: d.metric("memdrift_rss_bytes", pid=str(fake.pid)) is not None, 15,
           "the fake JVM watched")
    for _ in range(5):
        if not healthz(d):
            lib.fail("/healthz did not answer within 2 s")
        time.sleep(1)
    text = d.metrics_text()
    path = os.path.join(t.tmp, "metrics.txt")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([promtool, "check", "metrics"], stdin=open(path, "rb"),
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        lib.fail("promtool check metrics: %s" % (r.stdout + r.stderr).decode()[-600:])
    mine = [l for l in text.splitlines() if 'pid="%d"' % fake.pid in l]
    if not mine or "jvm\ufffd\ufffd\ufffd" not in mine[0]:
        lib.fail("the non-UTF-8 comm is not shown replaced: %r" % mine[:2])
    with open(d.err_path, errors="replace") as f:
        err = f.read()
    t.note("healthz answered 5/5; promtool ok; daemon said: %s" %
           "; ".join(l for l in err.splitlines() if "hsperf" in l or "FIFO" in l)[:200])


# ------------------------------------------------------------------- OOM

@lib.timeout(120)
def test_daemon_oom_postmortem(t):
    """A watched Go process OOM-killed in a 160 MiB cgroup: oom_kill alert
    (critical) and postmortem.json with its series and goroutine sites, plus
    goroutine/heap pprof files when the victim was still readable."""
    oom_postmortem(t)


@lib.timeout(150)
def test_daemon_oom_postmortem_pre68(t):
    """The same with the OOM program pre-6.8 kernels (Debian 12's 6.1) get,
    forced: a record with the TID only, matched through /proc (was tgid 0,
    never matched: no alert, no post-mortem)."""
    oom_postmortem(t, {"MEMDRIFT_OOM_PROBE": "tracepoint-pid"})


def oom_postmortem(t, env=None):
    lib.need_root_bpf()
    ver = lib.versions()[-1]
    path = lib.target(ver, "leaky", "plain")
    procs, kind = lib.memory_cgroup(t, 160 * MIB, "memdrift-daemon-oom")
    d = Daemon(t, "select.include_exe=%s/*" % lib.TARGETS, duration="100s", env=env)

    def join_cgroup():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    log = open(os.path.join(t.tmp, "victim.log"), "wb")
    # 12 MiB/s retained: killed after ~10 s, after a few snapshots
    victim = subprocess.Popen([path, "-heap-leak-rate", str(12 * MIB),
                               "-goroutine-leak-rate", "10"],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              preexec_fn=join_cgroup, start_new_session=True)
    log.close()
    lib._live.append(victim)
    t0 = time.time()
    try:
        rc = victim.wait(timeout=60)
    except subprocess.TimeoutExpired:
        lib.fail("victim not OOM-killed within 60s in a 160 MiB cgroup")
    if rc != -signal.SIGKILL:
        lib.fail("victim exited with %s, not SIGKILL" % rc)
    died = time.time() - t0
    d.wait(lambda: firing(d.alerts(), victim.pid, "oom_kill"), 10, "oom_kill alert")
    a = firing(d.alerts(), victim.pid, "oom_kill")[0]
    check_schema(a)
    if a["severity"] != "critical" or "OOM" not in a["summary"]:
        lib.fail("oom_kill alert: %r" % a)
    if a["evidence"].get("rss_anon_bytes", 0) < 64 * MIB:
        lib.fail("oom_kill evidence: anon RSS %r" % a["evidence"])

    def pm_dir():
        if not os.path.isdir(d.state):
            return None
        for n in os.listdir(d.state):
            p = os.path.join(d.state, n)
            if n.startswith("postmortem-%d-" % victim.pid) and \
                    os.path.exists(os.path.join(p, "postmortem.json")):
                return p
        return None
    pmd = d.wait(pm_dir, 10, "post-mortem directory")
    with open(os.path.join(pmd, "postmortem.json")) as f:
        pm = json.load(f)
    lib.require_keys(pm, ("pid", "comm", "exe", "runtime", "go_version", "oom_rss_anon_bytes",
                          "series", "goroutine_sites", "profiles_from_victim"), "postmortem.json")
    rss = pm["series"].get("rss_anon") or []
    if pm["pid"] != victim.pid or len(rss) < 3:
        lib.fail("postmortem.json: pid %s, %d RSS points" % (pm["pid"], len(rss)))
    if rss[-1][1] < 32 * MIB:
        lib.fail("postmortem.json: last RSS point %r" % rss[-1])
    if not any(s["function"] == GOROUTINE_SITE[0] and s["line"] == GOROUTINE_SITE[2]
               for s in pm["goroutine_sites"]):
        lib.fail("postmortem.json: goroutine sites lack %s: %r"
                 % (GOROUTINE_SITE[0], pm["goroutine_sites"][:5]))
    files = sorted(os.listdir(pmd))
    if pm["profiles_from_victim"]:
        # the victim may die between the two reads
        names = ["goroutine.pb.gz"] + (["heap.pb.gz"] if pm.get("heap_profile_from_victim") else [])
        for name in names:
            p = os.path.join(pmd, name)
            if not os.path.exists(p):
                lib.fail("victim readable but %s missing (has %s)" % (name, files))
            with gzip.open(p) as f:
                if not f.read():
                    lib.fail("%s is empty" % name)
    # from the victim, else the daemon's cached copy (refreshed while the heap grows)
    if not any(s["function"] == HEAP_SITE[0] for s in pm.get("heap_sites", [])):
        lib.fail("postmortem.json: heap sites lack %s: %r" % (HEAP_SITE[0], pm.get("heap_sites")))
    d.wait(lambda: d.metric("memdrift_rss_bytes", pid=str(victim.pid)) is None, 10,
           "the victim forgotten")
    d.stop()
    t.note("cgroup %s: killed after %.0fs at anon %.0f MiB; post-mortem %s%s"
           % (kind, died, a["evidence"]["rss_anon_bytes"] / MIB, ", ".join(files),
              "" if pm["profiles_from_victim"] else " (victim unreadable: %s)"
              % pm.get("profiles_error")))


# ------------------------------------------------------------------- JNI

JNI_OUT = os.path.join(lib.TARGETS, "jni")


@lib.timeout(150)
def test_daemon_jni_leak(t):
    """A JVM discovered after its start (libjvm is mapped after exec): the
    leaking native function is named in a jni_ref_leak alert within 60 s;
    the balanced and weak sites (refs deleted again) never alert."""
    lib.need_root_bpf()
    import shutil
    if not shutil.which("javac") or not shutil.which("java"):
        lib.skip_or_fail("no JDK (javac/java) installed")
    r = subprocess.run(["bash", os.path.join(lib.ROOT, "tests", "targets", "jni", "build.sh"),
                        JNI_OUT], capture_output=True, text=True)
    if r.returncode != 0:
        lib.fail("tests/targets/jni/build.sh failed: %s" % r.stderr[-600:])
    java = os.path.realpath(shutil.which("java"))
    d = Daemon(t, "detect.window=30s", "select.include_exe=%s" % java, duration="120s")
    t0 = time.time()
    jvm = subprocess.Popen([java, "-Xmx128m", "-Djava.library.path=" + JNI_OUT, "-cp", JNI_OUT,
                            "JniTarget", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=open(os.path.join(t.tmp, "jvm.stderr"), "wb"), text=True,
                           cwd=t.tmp, start_new_session=True)
    lib._live.append(jvm)
    ready = json.loads(jvm.stdout.readline() or "{}")
    if not ready.get("ready"):
        lib.fail("JniTarget did not start: %r" % ready)
    stop = threading.Event()
    truth = {}

    def drive():
        # 2 threads x 25 rounds each second: 50 leaked global refs/s; the
        # balanced and weak sites create and delete, keeping a few
        while not stop.is_set():
            try:
                jvm.stdin.write("run 25\n")
                jvm.stdin.flush()
                truth.update(json.loads(jvm.stdout.readline()))
            except (OSError, ValueError):
                return
            stop.wait(1.0)
    th = threading.Thread(target=drive, daemon=True)
    th.start()
    t.cleanup(stop.set)
    d.wait(lambda: d.metric("memdrift_watched_jvms") == 1 and
           d.metric("memdrift_jni_refs", pid=str(jvm.pid), type="global") is not None,
           15, "the JVM watched with JNI tracking")

    def leak_alert():
        got = [a for a in firing(d.alerts(), jvm.pid, "jni_ref_leak")
               if (a["site"] or {}).get("function") == "leak_site_create"]
        return got[0] if got else None
    a = d.wait(leak_alert, 75, "jni_ref_leak alert at leak_site_create")
    check_schema(a)
    after = parse_ts(a["ts"]) - t0
    if after > 60:
        lib.fail("jni_ref_leak alert %.0fs after the JVM started (limit 60s)" % after)
    if "libjnitarget.so" not in (a["site"].get("file") or ""):
        lib.fail("jni_ref_leak site object: %r" % a["site"])
    # hold on a little longer: the balanced/weak sites must stay silent
    time.sleep(10)
    live = d.metric("memdrift_jni_site_refs", pid=str(jvm.pid), function="leak_site_create")
    heap = d.metric("memdrift_jvm_heap_capacity_bytes", pid=str(jvm.pid))
    stop.set()
    th.join(timeout=10)
    d.stop()
    # JniTarget.tailLeak leaks too, from a native method that tail-calls
    # NewGlobalRef (not on the stack): its alert names the Java method and
    # the JNI function it is bound to
    tail = [x for x in firing(d.alerts(), jvm.pid, "jni_ref_leak")
            if x["site"]["function"] == "JniTarget.tailLeak [JNI Java_JniTarget_tailLeak]"]
    if not tail:
        lib.fail("no jni_ref_leak alert named JniTarget.tailLeak [JNI Java_JniTarget_tailLeak]: %s"
                 % [x["site"] for x in firing(d.alerts(), jvm.pid, "jni_ref_leak")])
    bad = [x for x in firing(d.alerts(), jvm.pid)
           if x["kind"] == "jni_ref_leak" and x["site"]["function"] != "leak_site_create"
           and x not in tail]
    if bad:
        lib.fail("balanced/weak JNI sites alerted: %s" % [x["summary"] for x in bad])
    if not live or live > truth.get("leak", 0) or live < 0.5 * truth.get("leak", 0):
        lib.fail("memdrift_jni_site_refs leak_site_create %r, target holds %r"
                 % (live, truth.get("leak")))
    if not heap:
        lib.fail("no memdrift_jvm_heap_capacity_bytes for the JVM")
    t.note("jni_ref_leak %.0fs after JVM start; leak site %d refs (target %d); Java heap "
           "capacity %.0f MiB" % (after, live, truth.get("leak", 0), heap / MIB))
