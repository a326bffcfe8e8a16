"""Helpers for memdrift's end-to-end tests (run by tests/e2e/run.py).

A test is a function test_NAME(t, *case) in tests/e2e/test_*.py. `t` is a
Ctx: a fresh scratch directory (t.tmp), process starters that always kill
what they started, and t.note() for numbers shown on the PASS line.
Tests fail with AssertionError (plain `assert` or lib.fail), skip with
lib.skip(). Parametrize with @lib.cases(generator) where the generator
returns [(case_id, args_tuple), ...]; each case runs as test_NAME_<case_id>.
"""

import ctypes
import glob
import json
import os
import re
import signal
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, ".output")
# MEMDRIFT=/path/to/binary tests another build (or a stand-in).
MEMDRIFT = os.environ.get("MEMDRIFT") or os.path.join(OUT, "memdrift")
TARGETS = os.path.join(OUT, "targets")
FLAVORS = ("plain", "stripped", "pie", "cgo")
IN_CI = os.environ.get("CI") == "true"

# Every process any test started and has not reaped yet: the runner kills
# them after each test and again at exit, whatever happened.
_live = []


class Skip(Exception):
    pass


def skip(reason):
    raise Skip(reason)


def fail(msg):
    raise AssertionError(msg)


def skip_or_fail(reason):
    """Missing prerequisite: a skip on a workstation, a failure under CI."""
    if IN_CI:
        fail("CI=true and prerequisite missing: " + reason)
    skip(reason)


# ---------------------------------------------------------------- parametrize

def cases(gen):
    """Decorator: gen() -> [(case_id, args_tuple)], evaluated at collection.
    gen may raise Skip (for instance when no targets are built)."""
    def deco(fn):
        fn.cases = gen
        return fn
    return deco


def timeout(seconds):
    """Decorator: per-test time limit (default 120 s). Only on a test: on a
    helper it would be silently ignored and the test would keep the default."""
    def deco(fn):
        if not fn.__name__.startswith("test_"):
            raise TypeError("lib.timeout on %s, which is not a test" % fn.__name__)
        fn.timeout = seconds
        return fn
    return deco


def versions():
    path = os.path.join(TARGETS, "versions.txt")
    try:
        with open(path) as f:
            vs = [l.strip() for l in f if l.strip()]
    except OSError:
        vs = []
    if not vs:
        skip_or_fail("no Go targets built (%s missing or empty; run `make targets`)"
                     % os.path.relpath(path, ROOT))
    return vs


def target_cases(flavors=FLAVORS, vers=None):
    """One case per toolchain x flavor: id 'go1.22_pie', args (ver, flavor)."""
    out = []
    for v in (vers or versions()):
        for fl in flavors:
            out.append(("%s_%s" % (v, fl), (v, fl)))
    return out


def target(ver, name, flavor):
    path = os.path.join(TARGETS, ver, "%s-%s" % (name, flavor))
    if not os.access(path, os.X_OK):
        skip_or_fail("target not built: %s" % os.path.relpath(path, ROOT))
    return path


# ---------------------------------------------------------------- prerequisites

def go_tool():
    """The newest installed go command whose pprof is prebuilt (it reads
    every profile; from 1.26 `go tool pprof` first compiles the tool, a
    minute on a cold cache)."""
    gos = sorted(glob.glob("/usr/lib/go-1.*/bin/go"),
                 key=lambda p: int(re.search(r"go-1\.(\d+)", p).group(1)))
    if not gos:
        skip_or_fail("no Go toolchain for `go tool pprof`")
    built = [g for g in gos if os.path.exists(
        os.path.join(os.path.dirname(os.path.dirname(g)), "pkg/tool/linux_amd64/pprof"))]
    return (built or gos)[-1]


def tool(name):
    """Path of the developer tool tests/tools/NAME.c, built by the Makefile
    (make .output/tools/NAME; a no-op when it is up to date)."""
    rel = os.path.join(".output", "tools", name)
    p = subprocess.run(["make", "--no-print-directory", "-s", rel], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        fail("make %s failed: %s" % (rel, (p.stderr or p.stdout)[-800:]))
    return os.path.join(ROOT, rel)


class ToolLog:
    """A running developer tool (tests/tools/NAME) printing JSON lines into
    its log file: wait for a line, read them all, stop it cleanly."""

    def __init__(self, t, name, argv):
        self.name = name
        self.proc, self.log = t.spawn([tool(name)] + [str(a) for a in argv],
                                      log_name=name + ".log")
        self.ready = self.wait(lambda o: o.get("ready"), 30, "the ready line")

    def lines(self):
        out = []
        with open(self.log, "rb") as f:
            for raw in f.read().decode(errors="replace").splitlines():
                if raw.startswith("{"):
                    try:
                        out.append(json.loads(raw))
                    except ValueError:
                        pass  # a line being written
        return out

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")[-1500:]

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for o in reversed(self.lines()):
                if pred(o):
                    return o
            if self.proc.poll() is not None:
                fail("%s exited (rc %s) before %s: %s"
                     % (self.name, self.proc.returncode, what, self.text()))
            time.sleep(0.05)
        fail("%s: no %s within %.0fs: %s" % (self.name, what, timeout, self.text()))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("%s did not stop on SIGTERM" % self.name)
        if self.proc.returncode != 0:
            fail("%s rc %s: %s" % (self.name, self.proc.returncode, self.text()))


def memory_cgroup(t, limit, prefix):
    """A memory-limited cgroup (v2 when the memory controller is there, else
    the v1 memory hierarchy), no swap. Returns its procs file and kind."""
    name = "%s-%d" % (prefix, os.getpid())
    v2root, v1root = "/sys/fs/cgroup", "/sys/fs/cgroup/memory"
    try:
        with open(os.path.join(v2root, "cgroup.controllers")) as f:
            v2 = "memory" in f.read().split()
    except OSError:
        v2 = False
    if v2:
        with open(os.path.join(v2root, "cgroup.subtree_control"), "w") as f:
            f.write("+memory")
        cg = os.path.join(v2root, name)
        limits = [("memory.max", str(limit)), ("memory.swap.max", "0")]
    elif os.path.isdir(v1root):
        cg = os.path.join(v1root, name)
        limits = [("memory.limit_in_bytes", str(limit)),
                  ("memory.memsw.limit_in_bytes", str(limit))]
    else:
        skip_or_fail("no memory cgroup controller (v2 or v1)")
    os.makedirs(cg, exist_ok=True)

    def remove():
        for _ in range(100):
            try:
                os.rmdir(cg)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("cgroup %s not removable" % cg)
    t.cleanup(remove)
    for key, val in limits:
        path = os.path.join(cg, key)
        if not os.path.exists(path) and ("swap" in key or "memsw" in key):
            continue
        with open(path, "w") as f:
            f.write(val)
    return os.path.join(cg, "cgroup.procs"), ("v2" if v2 else "v1")


def need_root():
    if os.geteuid() != 0:
        skip_or_fail("needs root (reads other processes' memory)")


def _bpf_loadable():
    """Load the smallest possible BPF program (r0 = 0; exit)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        insns = bytes([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
        ibuf = ctypes.create_string_buffer(insns, len(insns))
        lic = ctypes.create_string_buffer(b"GPL")
        attr = ctypes.create_string_buffer(128)
        ctypes.memmove(ctypes.addressof(attr), (1).to_bytes(4, "little"), 4)  # SOCKET_FILTER
        ctypes.memmove(ctypes.addressof(attr) + 4, (2).to_bytes(4, "little"), 4)
        ctypes.memmove(ctypes.addressof(attr) + 8,
                       ctypes.addressof(ibuf).to_bytes(8, "little"), 8)
        ctypes.memmove(ctypes.addressof(attr) + 16,
                       ctypes.addressof(lic).to_bytes(8, "little"), 8)
        nr_bpf = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
        fd = libc.syscall(nr_bpf, 5, attr, 128)  # BPF_PROG_LOAD
        if fd < 0:
            return "BPF_PROG_LOAD failed: %s" % os.strerror(ctypes.get_errno())
        os.close(fd)
    except Exception as e:  # noqa: BLE001 — any failure means "not loadable"
        return "cannot probe BPF: %s" % e
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    return None


def need_root_bpf():
    if os.geteuid() != 0:
        skip_or_fail("needs root and BPF")
    why = _bpf_loadable()
    if why:
        skip_or_fail(why)


def need_memdrift():
    if not os.access(MEMDRIFT, os.X_OK):
        fail("memdrift not built (%s); run `make`" % os.path.relpath(MEMDRIFT, ROOT))


# ---------------------------------------------------------------- processes

def _kill(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def kill_all():
    while _live:
        _kill(_live.pop())


class Target:
    """A started target process with an optional truth file."""

    def __init__(self, proc, truth_path, log_path):
        self.proc = proc
        self.pid = proc.pid
        self.truth_path = truth_path
        self.log_path = log_path

    def log_tail(self, n=800):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def read_truth(self):
        with open(self.truth_path) as f:
            return json.load(f)

    def wait_truth(self, pred=None, timeout=30.0):
        """Wait until the truth file exists (and pred(truth) holds)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                fail("target %d exited with %s before its truth was ready: %s"
                     % (self.pid, self.proc.returncode, self.log_tail()))
            try:
                tr = self.read_truth()
                if pred is None or pred(tr):
                    return tr
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                fail("target %d: no truth in %s after %.0fs: %s"
                     % (self.pid, self.truth_path, timeout, self.log_tail()))
            time.sleep(0.02)

    def fresh_truth(self, timeout=30.0):
        """SIGUSR1 the target and return its rewritten truth (parker)."""
        seq = self.read_truth()["seq"]
        os.kill(self.pid, signal.SIGUSR1)
        return self.wait_truth(lambda tr: tr.get("seq", -1) > seq, timeout)


class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    def describe(self):
        return "`%s` -> rc %s, stderr %r, stdout %r" % (
            " ".join(self.argv), self.rc, self.err[-500:], self.out[:300])

    def json(self):
        if self.rc != 0:
            fail("%s" % self.describe())
        try:
            return json.loads(self.out)
        except ValueError as e:
            fail("stdout of `%s` is not one JSON value (%s): %r"
                 % (" ".join(self.argv), e, self.out[:500]))


class Ctx:
    def __init__(self, name, tmp):
        self.name = name
        self.tmp = tmp
        self.notes = []
        self._cleanups = []

    def note(self, text):
        self.notes.append(text)

    def cleanup(self, fn):
        self._cleanups.append(fn)

    def run_cleanups(self):
        errs = []
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as e:  # noqa: BLE001
                errs.append(str(e))
        kill_all()
        return errs

    def spawn(self, argv, log_name=None, **kw):
        """Start any process in its own process group; killed at teardown."""
        log_path = os.path.join(self.tmp, log_name or
                                (os.path.basename(argv[0]) + ".%d.log" % len(_live)))
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, **kw)
        finally:
            log.close()
        _live.append(proc)
        return proc, log_path

    def start_target(self, path, *args, truth=True, wait=True, timeout=60.0):
        """Start a Go target with -truth TMP/NAME.json and wait for the truth."""
        name = os.path.basename(path)
        truth_path = os.path.join(self.tmp, "%s.%d.truth.json" % (name, len(_live)))
        argv = [path] + (["-truth", truth_path] if truth else []) + [str(a) for a in args]
        proc, log_path = self.spawn(argv, log_name=name + ".%d.log" % len(_live))
        tg = Target(proc, truth_path if truth else None, log_path)
        if truth and wait:
            tg.wait_truth(timeout=timeout)
        return tg

    def memdrift(self, *args, timeout=30.0, user=None, check_signal=True, env=None):
        """Run .output/memdrift ARGS; user='nobody' drops all privileges; env
        adds variables to the environment."""
        need_memdrift()
        argv = [MEMDRIFT] + [str(a) for a in args]
        full = argv
        if user is not None:
            full = ["setpriv", "--reuid=" + user, "--regid=" + user_group(user),
                    "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"] + argv
        t0 = time.monotonic()
        try:
            p = subprocess.run(full, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, start_new_session=True,
                               env=dict(os.environ, **env) if env else None)
        except subprocess.TimeoutExpired as e:
            fail("`%s` did not finish in %.0fs; stderr %r"
                 % (" ".join(argv), timeout, (e.stderr or b"")[-400:]))
        el = time.monotonic() - t0
        r = Result(argv, p.returncode, p.stdout.decode(errors="replace"),
                   p.stderr.decode(errors="replace"), el)
        if check_signal and r.rc < 0:
            fail("memdrift killed by signal %d (%s): %s"
                 % (-r.rc, signal.Signals(-r.rc).name, r.describe()))
        return r


_ports_given = set()


def free_port():
    """A TCP port free on loopback now, and not one this run handed out
    before (two calls in a row may otherwise get the same port back, and two
    servers of one test would then race for it)."""
    import socket
    for _ in range(64):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    fail("no loopback port free that this run has not used")


def user_group(user):
    import grp
    import pwd
    gid = pwd.getpwnam(user).pw_gid
    return grp.getgrgid(gid).gr_name


# ---------------------------------------------------------------- comparisons

def within(actual, expected, rel, what):
    if expected == 0:
        ok = actual == 0
    else:
        ok = abs(actual - expected) <= rel * abs(expected)
    if not ok:
        fail("%s: memdrift %s, target %s (tolerance %.0f%%)"
             % (what, actual, expected, rel * 100))


def require_keys(obj, keys, what):
    if not isinstance(obj, dict):
        fail("%s is not an object: %r" % (what, obj))
    missing = [k for k in keys if k not in obj]
    if missing:
        fail("%s lacks %s (has %s)" % (what, ", ".join(missing), ", ".join(sorted(obj))))


def site_key(file, line):
    return (os.path.basename(file or ""), int(line or 0))


def sites_by_line(sites):
    """memdrift sites grouped by (file basename, line): a site may be split by
    entry function or wait reason, so counts and states are summed."""
    out = {}
    for s in sites:
        k = site_key(s.get("file"), s.get("line"))
        e = out.setdefault(k, {"count": 0, "functions": set(), "states": {}})
        e["count"] += int(s.get("count", 0))
        e["functions"].add(s.get("function"))
        for st, n in (s.get("states") or {}).items():
            e["states"][st] = e["states"].get(st, 0) + int(n)
    return out


def one_error_line(r, what):
    """Contract for a failing command: exit status > 0, nothing on stdout,
    exactly one line on stderr starting with 'memdrift: '."""
    if r.rc <= 0:
        fail("%s: expected failure exit status, got %s (%s)" % (what, r.rc, r.describe()))
    lines = r.err.splitlines()
    if len(lines) != 1 or not lines[0].startswith("memdrift: "):
        fail("%s: expected exactly one stderr line starting 'memdrift: ', got %d lines: %r"
             % (what, len(lines), r.err[:600]))
    if r.out.strip():
        fail("%s: failed but printed on stdout: %r" % (what, r.out[:300]))
    return lines[0]
