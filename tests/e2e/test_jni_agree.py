"""`memdrift attach` on a JVM and the daemon group the same JNI references
into the same sites (one key, daemon/symbols/jni_site.h: the first frame
past the JNI implementation) with the same counts.

One JniTarget JVM (tests/targets/jni) watched by the daemon and by
`attach --json` at once. After a mark, rounds of the target's sites: the
leaking native function (leak_site_create), the balanced one, the weak one
and JniTarget.tailLeak (a native method that tail-calls NewGlobalRef, named
by its Java method). At each quiet point, for every site of the target's own
code (libjnitarget.so or a JniTarget method): attach reports it once (not
once per stack: leak_site_create is called by two native methods,
Java_JniTarget_leak and Java_JniTarget_leakOther, and the Java callers get
JIT-compiled between the rounds), and
its live refs equal the daemon's memdrift_jni_site_refs for the same
function, object and type, and the target's own count for the leaking and
tail sites.
"""

import os
import shutil
import time

import lib
import test_daemon as td
import test_jni as tj


def daemon_sites(d, pid):
    """{(type, function, object): live} of memdrift_jni_site_refs for pid."""
    out = {}
    for line in (d.metrics_text() or "").splitlines():
        if not line.startswith("memdrift_jni_site_refs{") or 'pid="%d"' % pid not in line:
            continue
        head, _, val = line.rpartition(" ")
        labels = {}
        for part in head[head.index("{") + 1:head.rindex("}")].split('",'):
            k, _, v = part.partition('="')
            labels[k] = v.rstrip('"')
        out[(labels["type"], labels["function"], labels["object"])] = int(float(val))
    return out


def own(function, obj):
    return obj == "libjnitarget.so" or function.startswith("JniTarget.")


def attach_sites(o):
    """{(kind, function, object): [live per site]} of the target's own sites."""
    out = {}
    for s in o["sites"]:
        f = s["frames"][0]
        key = (s["kind"], f["function"], os.path.basename(f["object"] or ""))
        if own(key[1], key[2]):
            out.setdefault(key, []).append(int(s["live"]))
    return out


@lib.timeout(240)
def test_jni_attach_daemon_same_sites(t):
    lib.need_root_bpf()
    tj.build_target()
    java = os.path.realpath(shutil.which("java"))
    d = td.Daemon(t, "select.include_exe=%s" % java, duration="200s")
    jvm = tj.Jvm(t, False)
    d.wait(lambda: d.metric("memdrift_jni_refs", pid=str(jvm.pid), type="global") is not None,
           20, "the JVM watched with JNI tracking")
    md = tj.Attach(t, jvm.pid)
    jvm.cmd("mark")
    compared = 0
    # leak_site_create is called by Java_JniTarget_leak and, with "other",
    # by Java_JniTarget_leakOther: two stacks, one site (the function that
    # never deletes its refs)
    for cmd in ("run 500", "other 300", "run 3000", "other 3000"):
        truth = jvm.cmd(cmd)
        o = md.after(time.time())
        got = attach_sites(o)
        split = {k: v for k, v in got.items() if len(v) > 1}
        if split:
            lib.fail("attach reports one JNI site as several: %s" % split)
        got = {k: v[0] for k, v in got.items() if v[0]}
        leak = ("global", "leak_site_create", "libjnitarget.so")
        if got.get(leak) != truth["leak"]:
            lib.fail("attach: leak_site_create live %r, the target holds %d"
                     % (got.get(leak), truth["leak"]))
        # the daemon samples each detect.interval: wait for its next look
        want = dict(got)
        seen = d.wait(lambda: (lambda s: s if s == want else None)(
            {k: v for k, v in daemon_sites(d, jvm.pid).items() if own(k[1], k[2])}),
            15, "daemon sites equal to attach's %s (last: %s)"
            % (want, daemon_sites(d, jvm.pid)))
        tail = [v for k, v in seen.items() if k[1].startswith("JniTarget.tailLeak")]
        if tail != [truth["tail"]]:
            lib.fail("tailLeak site live %s, the target holds %d" % (tail, truth["tail"]))
        compared = len(seen)
    md.stop()
    d.stop()
    jvm.quit()
    t.note("%d sites, same in attach and daemon: %s" % (compared, sorted(seen.items())))
