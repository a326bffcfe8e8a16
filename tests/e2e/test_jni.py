"""JNI global/weak-global references of a JVM (`memdrift attach PID` on a
process that maps libjvm.so) against tests/targets/jni.

The oracle is twofold: the target's native library counts what it holds per
site (leak: never deleted; balanced: deleted down to a few; weak: weak refs)
and prints it at quiet points (no JNI call until the next command); and the
JVM's own count, the last line of `jcmd PID Thread.print`
("JNI global refs: N, weak refs: M"). memdrift must match the first per site
exactly and the second in total, including refs made before attach.

Contract of `attach --json` on a JVM: one object per interval with ts, pid,
global_refs, weak_refs (totals incl. pre-attach), tracked_*_refs,
pre_attach_*_refs, jvm_*_refs, lost_events, stack_events_lost, hsperf{...},
sites[{kind, live, created, deleted, function, object, frames[{function,
object, offset, unwind ("regs", "cfi", "fp", "java"), java (Java frames:
"interpreted", "jit", "native-wrapper", "stub", "unresolved")}]}];
the last object (after SIGINT) has "final": true.

JNI_ATTACH_CMD (space-separated argv prefix taking PID then options)
replaces `memdrift attach` while the attach command is not routed yet.
"""

import glob
import json
import os
import re
import signal
import subprocess
import threading
import time

import lib

JNI_OUT = os.path.join(lib.TARGETS, "jni")
BUILD = os.path.join(lib.ROOT, "tests", "targets", "jni", "build.sh")
SITES = {"leak": ("leak_site_create", "global"),
         "balanced": ("balanced_site_create", "global"),
         "weak": ("weak_site_create", "weak")}
JCMD_RE = re.compile(r"JNI global refs: (\d+), weak refs: (\d+)")


def build_target():
    if not shutil_which("javac") or not shutil_which("java"):
        lib.skip_or_fail("no JDK (javac/java) installed")
    r = subprocess.run(["bash", BUILD, JNI_OUT], capture_output=True, text=True)
    if r.returncode != 0:
        lib.fail("tests/targets/jni/build.sh failed: %s" % r.stderr[-600:])


def shutil_which(name):
    import shutil
    return shutil.which(name)


class Jvm:
    """The JniTarget JVM, driven over stdin."""

    def __init__(self, t, xcheck, lib_name="jnitarget", java="java"):
        argv = [java, "-Xmx256m", "-XX:ErrorFile=%s/hs_err_%%p.log" % t.tmp,
                "-Djni.lib=" + lib_name]
        if xcheck:
            argv.append("-Xcheck:jni")
        argv += ["-Djava.library.path=" + JNI_OUT, "-cp", JNI_OUT, "JniTarget", "2"]
        self.tmp = t.tmp
        self.java = java
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(t.tmp, "jvm.stderr"), "wb"),
                                     text=True, cwd=t.tmp, start_new_session=True)
        t.cleanup(self.kill)
        ready = self.line()
        if not ready.get("ready"):
            lib.fail("JniTarget did not start: %r" % ready)
        self.pid = ready["pid"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def line(self):
        s = self.proc.stdout.readline()
        if not s:
            lib.fail("JniTarget exited (rc %s): %s" % (self.proc.poll(), self.stderr()))
        return json.loads(s)

    def stderr(self):
        with open(os.path.join(self.tmp, "jvm.stderr"), errors="replace") as f:
            return f.read()[-800:]

    def cmd(self, c):
        self.proc.stdin.write(c + "\n")
        self.proc.stdin.flush()
        return self.line()

    def jcmd(self, *args):
        """jcmd of this JVM's own JDK."""
        java = os.path.realpath(shutil_which(self.java) or self.java)
        jcmd = os.path.join(os.path.dirname(java), "jcmd")
        return subprocess.run([jcmd, str(self.pid)] + list(args), capture_output=True, text=True,
                              timeout=60)

    def jcmd_counts(self):
        r = self.jcmd("Thread.print")
        m = JCMD_RE.search(r.stdout)
        if not m:
            lib.fail("jcmd Thread.print: no JNI ref line: %r" % r.stdout[-300:])
        return int(m.group(1)), int(m.group(2))

    def quit(self):
        bye = self.cmd("quit")
        rc = self.proc.wait(timeout=30)
        if not bye.get("ok") or rc != 0:
            lib.fail("JniTarget's own checks failed: %r rc %s: %s" % (bye, rc, self.stderr()))
        errs = glob.glob(os.path.join(self.tmp, "hs_err*"))
        if errs:
            lib.fail("JVM wrote %s" % errs)


class Attach:
    """memdrift attach --json, its objects collected by a reader thread."""

    def __init__(self, t, pid, *extra, env=None):
        prefix = os.environ.get("JNI_ATTACH_CMD")
        argv = (prefix.split() if prefix else [lib.MEMDRIFT, "attach"]) + \
            [str(pid), "--json", "--interval", "250ms"] + list(extra)
        self.argv = argv
        self.err_path = os.path.join(t.tmp, "memdrift.stderr")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=open(self.err_path, "wb"), text=True,
                                     start_new_session=True, env=env)
        t.cleanup(self.kill)
        self.objs = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_obj(lambda o: True, 30, "first interval")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def _read(self):
        for line in self.proc.stdout:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.objs.append(o)

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()[-800:]

    def wait_obj(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for o in reversed(self.objs):
                    if pred(o):
                        return o
            if self.proc.poll() is not None:
                time.sleep(0.2)
                with self.lock:
                    for o in reversed(self.objs):
                        if pred(o):
                            return o
                lib.fail("`%s` exited (rc %s) before %s: %s"
                         % (" ".join(self.argv), self.proc.returncode, what, self.stderr()))
            time.sleep(0.05)
        lib.fail("no memdrift object for %s in %ds: %s" % (what, timeout, self.stderr()))

    def after(self, t0):
        """First object collected entirely after t0 (wall clock)."""
        return self.wait_obj(lambda o: o["ts"] > t0 + 0.05, 20, "the quiet point")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        if rc != 0:
            lib.fail("memdrift exited %s after SIGINT: %s" % (rc, self.stderr()))
        if not self.objs or not self.objs[-1].get("final"):
            lib.fail("no final object after SIGINT")
        return self.objs[-1]


def site_live(obj, fn, kind):
    live = 0
    for s in obj["sites"]:
        if any(f["function"] == fn for f in s["frames"]):
            if s["kind"] != kind:
                lib.fail("site %s reported as %s refs, it makes %s refs" % (fn, s["kind"], kind))
            if s["frames"][0]["function"] != fn:
                lib.fail("site %s: leaf frame is %s, not the native caller of NewGlobalRef"
                         % (fn, s["frames"][0]["function"]))
            live += int(s["live"])
    return live


def check_quiet_point(t, jvm, md, truth):
    """Per site: memdrift live == the refs the target holds that were created
    after its mark (sent once memdrift was attached)."""
    o = md.after(time.time())
    lib.require_keys(o, ("ts", "pid", "global_refs", "weak_refs", "sites", "lost_events",
                         "hsperf", "pre_attach_global_refs", "jvm_global_refs"), "interval")
    if o["lost_events"] or o.get("stack_events_lost"):
        lib.fail("lost_events %s, stack_events_lost %s" % (o["lost_events"],
                                                          o.get("stack_events_lost")))
    for name, (fn, kind) in SITES.items():
        got = site_live(o, fn, kind)
        want = truth[name + "_new"]
        if got != want:
            lib.fail("seq %d site %s: memdrift live %d, target holds %d created since attach "
                     "(%d in all)" % (truth["seq"], fn, got, want, truth[name]))
    return o


def jvm_agrees(jvm, md):
    """memdrift's totals (incl. pre-attach) vs the JVM's own count; retried
    once because JVM-internal refs may change between the two reads."""
    for attempt in range(2):
        g, w = jvm.jcmd_counts()
        o = md.after(time.time())
        if (o["global_refs"], o["weak_refs"]) == (g, w):
            return o, g, w
    lib.fail("JVM says JNI global refs %d, weak %d; memdrift %d (tracked %d + pre-attach %s), "
             "weak %d" % (g, w, o["global_refs"], o["tracked_global_refs"],
                          o["pre_attach_global_refs"], o["weak_refs"]))


def probe_cases():
    return [("usdt", ("usdt", False)), ("usdt_xcheck", ("usdt", True)),
            ("symtab", ("symtab", False)), ("symtab_xcheck", ("symtab", True))]


@lib.cases(probe_cases)
@lib.timeout(240)
def test_jni_sites(t, probes, xcheck):
    """Per-site outstanding refs exactly equal the target's truth at three
    quiet points, both probe kinds, with and without -Xcheck:jni; totals
    equal the JVM's own; detaching leaves the JVM healthy."""
    lib.need_root_bpf()
    build_target()
    jvm = Jvm(t, xcheck)
    pre = jvm.cmd("run 300")  # refs that exist before attach
    base = {k: pre[k] for k in SITES}
    md = Attach(t, jvm.pid, env=dict(os.environ, MEMDRIFT_JNI_PROBES=probes))
    jvm.cmd("mark")
    o = None
    for i in range(3):
        truth = jvm.cmd("run %d" % (1000 * (i + 1)))
        o = check_quiet_point(t, jvm, md, truth)
    o, g, w = jvm_agrees(jvm, md)
    if o["probes"] != probes:
        lib.fail("probes %r, forced %r" % (o["probes"], probes))
    if o["pre_attach_global_refs"] < base["leak"] + base["balanced"]:
        lib.fail("pre-attach global refs %s < the %d the target held"
                 % (o["pre_attach_global_refs"], base["leak"] + base["balanced"]))
    hs = o["hsperf"] or {}
    if not hs.get("heap_capacity") or not hs.get("threads_live"):
        lib.fail("hsperf numbers missing: %r" % hs)
    final = md.stop()
    # The JVM keeps working after detach and its own checks pass.
    jvm.cmd("run 500")
    jvm.quit()
    t.note("%s%s: leak %d live, JVM %d/%d = memdrift %d/%d (pre-attach %d)"
           % (probes, "+Xcheck" if xcheck else "", site_live(final, "leak_site_create", "global"),
              g, w, o["global_refs"], o["weak_refs"], o["pre_attach_global_refs"]))


@lib.timeout(180)
def test_jni_pprof(t):
    """--pprof DIR writes DIR/jni.pb.gz naming the leaking native function."""
    lib.need_root_bpf()
    build_target()
    jvm = Jvm(t, False)
    outdir = os.path.join(t.tmp, "prof")
    os.makedirs(outdir)
    md = Attach(t, jvm.pid, "--pprof", outdir)
    jvm.cmd("mark")
    truth = jvm.cmd("run 1000")
    check_quiet_point(t, jvm, md, truth)
    md.stop()
    path = os.path.join(outdir, "jni.pb.gz")
    if not os.path.exists(path):
        lib.fail("no %s" % path)
    import gzip
    with gzip.open(path) as f:
        data = f.read()
    if b"leak_site_create" not in data or b"live_refs" not in data:
        lib.fail("jni.pb.gz lacks leak_site_create / live_refs")
    if b"JniTarget.leak [JNI Java_JniTarget_leak]" not in data or b"JniTarget.round" not in data:
        lib.fail("jni.pb.gz lacks the Java frames (JniTarget.leak [JNI ...], JniTarget.round)")
    jvm.quit()
    t.note("jni.pb.gz %d bytes" % os.path.getsize(path))


def java_site(obj, method, kind):
    """Live refs of the sites whose first frame past the JNI implementation
    is the Java method (or its native function, for a non-tail native
    caller: the Java frame is then further up) named method."""
    live = 0
    for s in obj["sites"]:
        names = [f["function"] for f in s["frames"]]
        if any(n == method or n.startswith(method + " [JNI ") for n in names):
            if s["kind"] != kind:
                lib.fail("site %s reported as %s refs, it makes %s refs" % (method, s["kind"], kind))
            live += int(s["live"])
    return live


JAVA_SITES = {"leak": ("JniTarget.leak", "global"), "balanced": ("JniTarget.balanced", "global"),
              "weak": ("JniTarget.weak", "weak"), "tail": ("JniTarget.tailLeak", "global")}


def jdks():
    """(id, java) of the installed JDKs this covers: the system one
    (Debian's openjdk-17) and, when present, Temurin 25 / openjdk-21."""
    out = [("", "java")]
    for ident, path in (("_jdk21", "/usr/lib/jvm/java-21-openjdk-amd64/bin/java"),
                        ("_jdk25", "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java")):
        if os.access(path, os.X_OK):
            out.append((ident, path))
    return out


def nofp_cases():
    return [("nofp%s%s" % ("_xcheck" if x else "", j), (x, java))
            for j, java in jdks() for x in (False, True)]


@lib.cases(nofp_cases)
@lib.timeout(240)
def test_jni_java_names(t, xcheck, java):
    """The JNI target rebuilt -O2 -fomit-frame-pointer (libjnitarget_nofp.so,
    where tailLeak is a tail call into NewGlobalRef and not on the stack):
    every site is named by its Java method (interpreted, JIT-compiled or the
    JVM's native wrapper, read from HotSpot's vmStructs), native methods with
    their JNI function, and per-site counts equal the target's truth
    exactly; totals equal jcmd's."""
    lib.need_root_bpf()
    build_target()
    jvm = Jvm(t, xcheck, lib_name="jnitarget_nofp", java=java)
    jvm.cmd("run 200")
    md = Attach(t, jvm.pid)
    jvm.cmd("mark")
    o = None
    for i in range(2):
        truth = jvm.cmd("run %d" % (1500 * (i + 1)))
        o = md.after(time.time())
        for name, (method, kind) in JAVA_SITES.items():
            got = java_site(o, method, kind)
            if got != truth[name + "_new"]:
                lib.fail("seq %d site %s: memdrift live %d, target holds %d created since attach: %s"
                         % (truth["seq"], method, got, truth[name + "_new"],
                            json.dumps([s for s in o["sites"] if s["live"]])[:1500]))
    # the tail-call site: the Java native method is the first frame past the
    # JVM, named with the JNI function it is bound to
    tails = [s for s in o["sites"] if s["live"] and
             s["frames"][0]["function"].startswith("JniTarget.tailLeak [JNI Java_JniTarget_tailLeak")]
    if not tails:
        lib.fail("no site led by JniTarget.tailLeak [JNI Java_JniTarget_tailLeak]: %s"
                 % json.dumps(o["sites"])[:1500])
    leak = [s for s in o["sites"] if s["live"] and s["frames"][0]["function"].startswith("leak_site_create")]
    if not leak or leak[0]["frames"][0].get("unwind") != "cfi":
        lib.fail("leak_site_create not found by CFI: %s" % json.dumps(leak)[:800])
    o, g, w = jvm_agrees(jvm, md)
    md.stop()
    jvm.quit()  # its own check counts the native pools; tailLeak refs stay
    t.note("%s nofp%s: tailLeak %d, leak %d live; JVM %d/%d = memdrift %d/%d"
           % (os.path.basename(os.path.dirname(os.path.dirname(os.path.realpath(
               shutil_which(java) or java)))), "+Xcheck" if xcheck else "", java_site(o, "JniTarget.tailLeak", "global"),
              java_site(o, "JniTarget.leak", "global"), g, w, o["global_refs"], o["weak_refs"]))


JNA_BUILD = os.path.join(lib.ROOT, "tests", "targets", "jna", "build.sh")
JNA_SITE_JAVA = "com.sun.jna.Native.createNativeCallback [JNI Java_com_sun_jna_Native_createNativeCallback]"


class JnaJvm(Jvm):
    """tests/targets/jna/JnaTarget on Debian's JNA."""

    def __init__(self, t, classpath):
        self.tmp = t.tmp
        self.java = "java"
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-XX:ErrorFile=%s/hs_err_%%p.log" % t.tmp, "-cp", classpath,
             "JnaTarget"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join(t.tmp, "jvm.stderr"), "wb"), text=True, cwd=t.tmp,
            start_new_session=True)
        t.cleanup(self.kill)
        ready = self.line()
        if not ready.get("ready"):
            lib.fail("JnaTarget did not start: %r" % ready)
        self.pid = ready["pid"]


@lib.timeout(180)
def test_jni_jna(t):
    """A JNI library no one here wrote, as Debian builds it (libjnidispatch
    of libjna-jni: -O2, no frame pointers): each JNA callback turned into a
    function pointer holds one weak global ref made in create_callback
    under the native method com.sun.jna.Native.createNativeCallback; the
    target keeps some callbacks and closes others. memdrift's live weak refs
    at that site equal the callbacks the target keeps, the site is named by
    the Java native method and its JNI function (and the C function that
    made the ref, found by CFI), totals equal jcmd's."""
    lib.need_root_bpf()
    if not shutil_which("javac") or not shutil_which("java"):
        lib.skip_or_fail("no JDK (javac/java) installed")
    r = subprocess.run(["bash", JNA_BUILD, os.path.join(lib.TARGETS, "jna")], capture_output=True,
                       text=True)
    if r.returncode != 0:
        lib.skip_or_fail("tests/targets/jna/build.sh: %s" % r.stderr.strip()[-300:])
    jvm = JnaJvm(t, r.stdout.strip())
    jvm.cmd("keep 50")  # before attach: pre-attach refs
    md = Attach(t, jvm.pid)
    jvm.cmd("mark")
    o = truth = None
    for n in (400, 900):
        jvm.cmd("keep %d" % n)
        truth = jvm.cmd("churn %d" % (2 * n))
        o = md.after(time.time())
        if o["lost_events"]:
            lib.fail("lost_events %s" % o["lost_events"])
        sites = [s for s in o["sites"] if any(f["function"] == JNA_SITE_JAVA for f in s["frames"])]
        live = sum(s["live"] for s in sites)
        if live != truth["kept_new"]:
            lib.fail("JNA callbacks kept since attach %d, memdrift live weak refs at %s: %d: %s"
                     % (truth["kept_new"], JNA_SITE_JAVA, live, json.dumps(o["sites"])[:1500]))
        created = sum(s["created"] for s in sites)
        if created != truth["kept_new"] + truth["churned_new"]:
            lib.fail("JNA callbacks made since attach %d, memdrift created %d"
                     % (truth["kept_new"] + truth["churned_new"], created))
        for s in sites:
            if s["kind"] != "weak":
                lib.fail("JNA callback refs counted as %s" % s["kind"])
            if "libjnidispatch" not in s["frames"][0]["object"]:
                lib.fail("JNA site's first frame is not in libjnidispatch: %r" % s["frames"][0])
    o, g, w = jvm_agrees(jvm, md)
    md.stop()
    t.note("JNA: %d callbacks kept = memdrift %d live weak refs at %s <- %s; JVM %d/%d = memdrift "
           "%d/%d" % (truth["kept_new"], truth["kept_new"], sites[0]["frames"][0]["function"],
                      JNA_SITE_JAVA, g, w, o["global_refs"], o["weak_refs"]))


CODELIST_RE = re.compile(r"^\d+ -?\d+ \d+ (\S+?)(\(\S*) \[0x[0-9a-f]+, (0x[0-9a-f]+) - (0x[0-9a-f]+)\]")


def jdk_cases():
    return [(j.lstrip("_") or "jdk17", (java,)) for j, java in jdks()]


@lib.cases(jdk_cases)
@lib.timeout(120)
def test_hotspot_codelist(t, java):
    """daemon/symbols/hotspot.c against the JVM's own list of its compiled code
    (`jcmd PID Compiler.codelist`): every nmethod and native wrapper, looked
    up by its first and last code byte through the code heaps' segment maps,
    is found and named Class.method (the signature exactly when the class
    overloads the name) like the JVM names it; native wrappers carry the
    JNI function they are bound to."""
    lib.need_root()
    build_target()
    tool = lib.tool("hotspot_dump")
    jvm = Jvm(t, False, java=java)
    jvm.cmd("run 3000")
    r = jvm.jcmd("Compiler.codelist")
    entries = []
    for line in r.stdout.splitlines():
        m = CODELIST_RE.match(line)
        if m:
            entries.append((m.group(1), m.group(1) + m.group(2), int(m.group(3), 16),
                            int(m.group(4), 16)))
    if len(entries) < 50:
        lib.fail("Compiler.codelist: %d entries parsed: %r" % (len(entries), r.stdout[:400]))
    addrs = []
    for e in entries:
        addrs += ["%x" % e[2], "%x" % (e[3] - 1)]
    d = subprocess.run([tool, str(jvm.pid)] + addrs, capture_output=True, text=True, timeout=60)
    if d.returncode != 0:
        lib.fail("hotspot_dump: %s" % d.stderr[-400:])
    blobs = json.loads(d.stdout)["blobs"]
    named = flushed = natives = 0
    for i, (name, full, lo, hi) in enumerate(entries):
        for b in blobs[2 * i:2 * i + 2]:
            if b["kind"] == "free":
                flushed += 1  # made not-entrant and flushed since jcmd listed it
                continue
            if b["kind"] not in ("nmethod", "native"):
                lib.fail("%s at %#x: kind %s (%s)" % (full, b["addr"], b["kind"], b.get("name")))
            if b.get("method") not in (name, full):
                lib.fail("%s at %#x named %r" % (full, b["addr"], b.get("method")))
            if b["kind"] == "native":
                natives += 1
                if not b["native_fn"]:
                    lib.fail("native wrapper %s: no bound JNI function" % full)
            named += 1
    if flushed > len(addrs) // 20:
        lib.fail("%d of %d addresses in freed code" % (flushed, len(addrs)))
    jvm.quit()
    t.note("%d compiled methods (%d native wrappers): %d addresses named as the JVM names them, "
           "%d in code flushed meanwhile" % (len(entries), natives // 2, named, flushed))
