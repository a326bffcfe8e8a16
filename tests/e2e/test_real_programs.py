"""Real Go servers no one here wrote, as Debian's unstable suite builds them
(current Go, stripped, external linking), unpacked by
scripts/fetch-real-programs into .output/realprogs (nothing installed):

  etcd        etcd-server  (go1.26.x)
  prometheus  prometheus   (go1.27.x)

Each on loopback, with its own net/http/pprof as the oracle:
- goroutines per creating site (`memdrift snapshot --json`) equal the
  program's own /debug/pprof/goroutine?debug=2 grouping by "created by",
  apart from the goroutines serving that request;
- the heap in-use total of memdrift's heap.pb.gz equals the program's own
  /debug/pprof/heap (both summed from `go tool pprof -raw`);
- `memdrift attach --trace goroutines` leaves it healthy (its health endpoint
  answers, its own goroutine dump still parses, no crash);
- `memdrift daemon` watches it (its series in /metrics).
"""

import os
import re
import subprocess
import time
import urllib.request

import lib
import test_daemon

REAL = os.path.join(lib.OUT, "realprogs")
SERVING = ("net/http.(*Server).Serve", "net/http.(*connReader).startBackgroundRead")


def _etcd_argv(tmp, port, port2):
    return ["--data-dir", os.path.join(tmp, "etcd-data"), "--name", "default",
            "--listen-client-urls", "http://127.0.0.1:%d" % port,
            "--advertise-client-urls", "http://127.0.0.1:%d" % port,
            "--listen-peer-urls", "http://127.0.0.1:%d" % port2,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % port2,
            "--initial-cluster", "default=http://127.0.0.1:%d" % port2,
            "--enable-pprof", "--log-level", "warn"]


def _prometheus_argv(tmp, port, port2):
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % port)
    return ["--config.file", cfg, "--storage.tsdb.path", os.path.join(tmp, "tsdb"),
            "--web.listen-address", "127.0.0.1:%d" % port, "--log.level", "warn"]


PROGRAMS = {
    "etcd": {"pkg": "etcd-server", "bin": "usr/bin/etcd", "argv": _etcd_argv,
             "health": "/health"},
    "prometheus": {"pkg": "prometheus", "bin": "usr/bin/prometheus", "argv": _prometheus_argv,
                   "health": "/-/healthy"},
}


def get(port, path, timeout=20):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read()


def created_by(dump):
    """debug=2 goroutine dump -> {(file basename, line): {count, function}} by
    'created by' (the main goroutine has none), and the number of goroutines
    that were running (serving the dump itself)."""
    sites, running = {}, 0
    for block in dump.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines or not lines[0].startswith("goroutine "):
            continue
        if "[running]" in lines[0]:
            running += 1
        for i, l in enumerate(lines):
            if l.startswith("created by ") and i + 1 < len(lines):
                fn = re.sub(r" in goroutine \d+$", "", l[len("created by "):])
                m = re.match(r"\s*(\S+):(\d+)", lines[i + 1])
                if not m:
                    lib.fail("unparsed created-by line %r" % lines[i + 1])
                k = lib.site_key(m.group(1), m.group(2))
                e = sites.setdefault(k, {"count": 0, "function": fn})
                e["count"] += 1
    return sites, running


def pprof_total_inuse(path):
    """Sum of inuse_space over every sample of a heap profile (`go tool pprof -raw`)."""
    p = subprocess.run([lib.go_tool(), "tool", "pprof", "-raw", path], capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        lib.fail("go tool pprof -raw %s: %s" % (path, p.stderr[-400:]))
    cols, total, in_samples = None, 0, False
    for line in p.stdout.splitlines():
        if line.startswith("Samples:"):
            in_samples = True
            continue
        if not in_samples:
            continue
        if cols is None:
            cols = [c.split("[")[0] for c in line.split()]  # "inuse_space/bytes[dflt]"
            continue
        m = re.match(r"\s*([\d\s]+):", line)
        if not m:
            if line and not line.startswith(" "):
                break
            continue
        vals = m.group(1).split()
        total += int(vals[cols.index("inuse_space/bytes")])
    if cols is None:
        lib.fail("go tool pprof -raw %s: no samples table" % path)
    return total


class Program:
    def __init__(self, t, name):
        spec = PROGRAMS[name]
        self.name = name
        path = os.path.join(REAL, spec["pkg"], spec["bin"])
        if not os.access(path, os.X_OK):
            lib.skip_or_fail("%s not unpacked (%s missing: run scripts/fetch-real-programs)"
                             % (spec["pkg"], os.path.relpath(path, lib.ROOT)))
        with open(os.path.join(REAL, spec["pkg"], ".version")) as f:
            self.deb_version = f.read().strip()
        self.port, port2 = lib.free_port(), lib.free_port()
        self.health = spec["health"]
        self.proc, self.log = t.spawn([path] + spec["argv"](t.tmp, self.port, port2),
                                      log_name=name + ".log")
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log, errors="replace") as f:
                    lib.fail("%s did not become healthy: %s" % (name, f.read()[-800:]))
            time.sleep(0.25)
        time.sleep(2)  # let start-up goroutines settle

    def healthy(self):
        try:
            get(self.port, self.health, timeout=5)
            return True
        except OSError:
            return False

    def dump(self):
        return get(self.port, "/debug/pprof/goroutine?debug=2").decode(errors="replace")


def compare_goroutines(t, prog):
    """One quiet moment: dump, snapshot, dump; the two dumps agree and the
    snapshot equals them apart from the request's own goroutines."""
    last = None
    for attempt in range(10):
        before, run1 = created_by(prog.dump())
        snap = t.memdrift("snapshot", prog.pid, "--json", timeout=30).json()
        after, run2 = created_by(prog.dump())
        if before != after:
            last = "the program's goroutines changed between its two dumps"
            time.sleep(0.5)
            continue
        got = lib.sites_by_line(snap["sites"])
        diffs = []
        for k, s in before.items():
            mine = got.get(k, {"count": 0, "functions": set()})
            if mine["count"] != s["count"]:
                diffs.append((k, s["function"], s["count"], mine["count"]))
            elif s["function"] not in mine["functions"]:
                diffs.append((k, s["function"], "function", sorted(mine["functions"])))
        extra = [(k, v["count"]) for k, v in got.items()
                 if k not in before and v["count"] and "(main goroutine)" not in
                 " ".join(map(str, v["functions"]))]
        # The dump's own handler runs in a net/http connection goroutine
        # (created by (*Server).Serve) with its background reader (created
        # by (*connReader).startBackgroundRead): memdrift, outside the
        # request, sees one fewer of each, or none.
        serving = [d for d in diffs if d[1] in SERVING and isinstance(d[3], int)
                   and 0 < d[2] - d[3] <= 1]
        if len(serving) == len(diffs) and not extra:
            return snap, before, serving
        last = "differences (site, pprof function, pprof count, memdrift count): %s; " \
               "sites only memdrift has: %s" % (diffs[:8], extra[:8])
        time.sleep(0.5)
    lib.fail("%s: %s" % (prog.name, last))


def compare_heap(t, prog):
    for attempt in range(5):
        out = os.path.join(t.tmp, "md-%d" % attempt)
        os.makedirs(out)
        s1 = t.memdrift("snapshot", prog.pid, "--json", timeout=30).json()
        own = os.path.join(t.tmp, "own-%d.pb.gz" % attempt)
        with open(own, "wb") as f:
            f.write(get(prog.port, "/debug/pprof/heap"))
        r = t.memdrift("snapshot", prog.pid, "--pprof", out, timeout=30)
        if r.rc != 0:
            lib.fail(r.describe())
        s2 = t.memdrift("snapshot", prog.pid, "--json", timeout=30).json()
        mine_total = pprof_total_inuse(os.path.join(out, "heap.pb.gz"))
        own_total = pprof_total_inuse(own)
        if mine_total == own_total:
            return mine_total
        if s1["heap"]["gc_cycles"] == s2["heap"]["gc_cycles"]:
            lib.fail("%s: heap in use %d B in memdrift's profile, %d B in the program's own "
                     "(no GC in between)" % (prog.name, mine_total, own_total))
    lib.fail("%s: a GC fell between the two profiles five times" % prog.name)


def check_real(t, name):
    lib.need_root_bpf()
    lib.need_memdrift()
    prog = Program(t, name)
    snap, sites, serving = compare_goroutines(t, prog)
    n_sites, n_gs = len(sites), sum(s["count"] for s in sites.values())
    inuse = compare_heap(t, prog)

    # exact goroutine tracing, then the program must be as it was
    r = t.memdrift("attach", prog.pid, "--trace", "goroutines", "--duration", "4s", "--json",
                   timeout=60)
    if r.rc != 0:
        lib.fail("attach --trace goroutines on %s: %s" % (name, r.describe()))
    assert prog.proc.poll() is None, "%s exited after attach: rc %s" % (name, prog.proc.returncode)
    assert prog.healthy(), "%s unhealthy after attach --trace goroutines" % name
    after, _ = created_by(prog.dump())
    assert after, "%s: no goroutine dump after attach" % name

    d = test_daemon.Daemon(t, duration="60s")
    gs = d.wait(lambda: d.metric("memdrift_go_goroutines", pid=str(prog.pid)), 30,
                "memdrift_go_goroutines for %s" % name)
    heap = d.metric("memdrift_go_heap_live_bytes", pid=str(prog.pid))
    d.stop()
    assert abs(gs - snap["goroutines"]) <= 5, "daemon: %s goroutines %s, snapshot %d" \
        % (name, gs, snap["goroutines"])
    assert heap and heap > 0, "daemon: no heap series for %s" % name
    t.note("%s %s (%s, %s): %d created-by sites / %d goroutines equal to its debug=2 dump "
           "(serving request: %s); heap in use %d B = its /debug/pprof/heap; attach healthy; "
           "daemon %d goroutines" % (name, prog.deb_version, snap["go_version"],
                                     snap["offsets_source"], n_sites, n_gs,
                                     serving or "not visible", inuse, gs))


@lib.timeout(240)
def test_real_etcd(t):
    check_real(t, "etcd")


@lib.timeout(240)
def test_real_prometheus(t):
    check_real(t, "prometheus")
