"""`memdrift snapshot` and the command line against bad input.

Contract for every failure: exit status > 0 (never death by a signal), no
stdout, exactly one line on stderr starting with "memdrift: ".
"""

import os
import re
import shutil
import signal
import time

import lib


def _free_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    for pid in range(pid_max - 1, 1, -1):
        if not os.path.exists("/proc/%d" % pid):
            return pid
    lib.skip("no free pid")


def _newest_parker(flavor="plain"):
    return lib.target(lib.versions()[-1], "parker", flavor)


def test_no_command(t):
    """No command at all may print the whole usage, but must fail."""
    r = t.memdrift()
    assert r.rc > 0, "memdrift without a command: %s" % r.describe()
    assert not r.out.strip(), "usage error printed on stdout: %r" % r.out[:200]


def test_help_agrees(t):
    """Each command's --help starts with the arguments the top-level help
    lists for it, and names every option its option list describes (the
    table's strings used to disagree with the commands')."""
    top = t.memdrift("--help").out.splitlines()
    listed = {}
    for line in top:
        m = re.match(r"^  (attach|daemon|snapshot|ps)\s+(.*)$", line)
        if m:
            listed[m.group(1)] = m.group(2).strip()
    if sorted(listed) != ["attach", "daemon", "ps", "snapshot"]:
        lib.fail("top-level help lists %r" % sorted(listed))
    for cmd, args in listed.items():
        out = t.memdrift(cmd, "--help").out
        first = out.splitlines()[0]
        if first != "usage: memdrift %s %s" % (cmd, args):
            lib.fail("%s --help says %r, the command table %r" % (cmd, first, args))
        described = set(re.findall(r"^\s+(--[a-z-]+)", out, re.M))
        missing = [o for o in sorted(described) if o not in args and o != "--help"]
        if missing:
            lib.fail("%s: options described but not in its usage line: %s" % (cmd, missing))
    t.note("4 commands, usage lines = table")


def test_usage_errors(t):
    for args, what in (
        (["bogus-command"], "unknown command"),
        (["snapshot"], "snapshot without PID"),
        (["snapshot", "abc"], "non-numeric PID"),
        (["snapshot", "12abc"], "PID with trailing garbage"),
        (["snapshot", "-1"], "negative PID"),
        (["snapshot", "0"], "PID 0"),
        (["snapshot", "99999999999999999999999"], "overflowing PID"),
        (["snapshot", "1", "--no-such-flag"], "unknown flag"),
        (["snapshot", "1", "2"], "two PIDs"),
    ):
        r = t.memdrift(*args)
        lib.one_error_line(r, "memdrift %s (%s)" % (" ".join(args), what))


def test_pid_does_not_exist(t):
    lib.need_root()
    pid = _free_pid()
    line = lib.one_error_line(t.memdrift("snapshot", pid, "--json"), "nonexistent pid")
    assert str(pid) in line, "error does not name the pid: %r" % line


def test_not_a_go_process(t):
    lib.need_root()
    p, _ = t.spawn(["sleep", "1000"])
    time.sleep(0.1)
    for extra in ((), ("--json",)):
        r = t.memdrift("snapshot", p.pid, *extra)
        lib.one_error_line(r, "snapshot of `sleep` %s" % " ".join(extra))


def test_kernel_thread(t):
    lib.need_root()
    # pid 2 is kthreadd on a normal host; inside a pid namespace it may be
    # anything, so only run when it really is a kernel thread (no exe).
    try:
        os.readlink("/proc/2/exe")
        lib.skip("pid 2 is not a kernel thread here")
    except FileNotFoundError:
        lib.skip("no pid 2 in this pid namespace")
    except OSError:
        pass
    lib.one_error_line(t.memdrift("snapshot", 2, "--json"), "snapshot of a kernel thread")


def test_zombie(t):
    """A Go process that exited but was not reaped yet: no memory to read."""
    lib.need_root()
    tg = t.start_target(_newest_parker())
    os.kill(tg.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % tg.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.02)
    else:
        lib.fail("target did not become a zombie")
    lib.one_error_line(t.memdrift("snapshot", tg.pid, "--json"), "snapshot of a zombie")


def test_deleted_binary(t):
    """The binary was deleted after start: memdrift reads it through
    /proc/PID/exe and works, or gives one clear error. Either way the exit
    status matches the output."""
    lib.need_root()
    exe = os.path.join(t.tmp, "parker-deleted")
    shutil.copy(_newest_parker(), exe)
    tg = t.start_target(exe)
    os.unlink(exe)
    truth = tg.read_truth()
    r = t.memdrift("snapshot", tg.pid, "--json")
    if r.rc != 0:
        lib.one_error_line(r, "snapshot of a process whose binary was deleted")
        t.note("clear error: %s" % r.err.strip())
        return
    snap = r.json()
    assert snap.get("pid") == tg.pid, "pid %r" % snap.get("pid")
    assert abs(snap["goroutines"] - truth["numgoroutine"]) <= 2, \
        "goroutines %r, target %d" % (snap["goroutines"], truth["numgoroutine"])
    t.note("works via /proc/PID/exe")


def test_permission_denied(t):
    """Unprivileged memdrift against a root-owned target."""
    lib.need_root()
    tg = t.start_target(_newest_parker())
    # memdrift must be reachable by nobody (it is when the tree is world-readable).
    r = t.memdrift("snapshot", tg.pid, "--json", user="nobody")
    if r.rc == 126 or r.rc == 127:
        lib.skip("nobody cannot execute %s" % lib.MEMDRIFT)
    line = lib.one_error_line(r, "snapshot as nobody of a root process")
    assert "ermission" in line or "EPERM" in line or "EACCES" in line or "privilege" in line, \
        "error does not say it is a permission problem: %r" % line


def test_target_exits_during_snapshots(t):
    """Snapshots racing with the target's death: each one either succeeds
    with valid JSON or fails with the one-line contract, never crashes."""
    lib.need_root()
    tg = t.start_target(_newest_parker(), "-many", 20000)
    results = []
    killed = False
    for i in range(12):
        if i == 3:
            os.kill(tg.pid, signal.SIGKILL)
            killed = True
        r = t.memdrift("snapshot", tg.pid, "--json")
        results.append(r)
        if r.rc == 0:
            r.json()
        else:
            lib.one_error_line(r, "snapshot #%d (target %s)" % (i, "killed" if killed else "alive"))
    tg.proc.wait(timeout=10)
    r = t.memdrift("snapshot", tg.pid, "--json")
    lib.one_error_line(r, "snapshot after the target was reaped")
