"""`memdrift daemon` as a root service on a host full of users it does not
trust: who may read which profile over each listener, connection bounds,
faults at reload (occupied port, rotated or planted alerts.file, a closed
stdout), post-mortem retention, trace.cpu_budget, and running as a non-root
user with ambient capabilities.

Every profile request names a real watched Go process (the parker target,
one run by root, one by nobody) and is made by a real client process running
as that user (curl under setpriv).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import lib
import test_daemon as td

CAPS = "+bpf,+perfmon,+sys_ptrace,+dac_read_search"
# CapEff of the daemon after start-up: DAC_READ_SEARCH (2), SYS_PTRACE (19),
# PERFMON (38), BPF (39) and nothing else
KEPT_CAPS = (1 << 2) | (1 << 19) | (1 << 38) | (1 << 39)


def as_user(user, argv):
    if user == "root":
        return argv
    return ["setpriv", "--reuid=" + user, "--regid=" + lib.user_group(user),
            "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"] + argv


def curl(url, user="root", unix=None, token=None, cacert=None, timeout=10):
    """(HTTP status, body bytes) of one GET made by a process running as
    user; status 0 when no HTTP answer came (refused, TLS required...)."""
    if not shutil.which("curl"):
        lib.skip_or_fail("curl not installed")
    argv = ["curl", "-s", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}"]
    if unix:
        argv += ["--unix-socket", unix]
    if token:
        argv += ["-H", "Authorization: Bearer " + token]
    if cacert:
        argv += ["--cacert", cacert]
    p = subprocess.run(as_user(user, argv + [url]), capture_output=True, timeout=timeout + 5)
    body, _, code = p.stdout.rpartition(b"\n")
    return int(code or 0), body


def profile(url, **kw):
    """curl, waiting out the endpoint's profile rate limit (429)."""
    for _ in range(20):
        code, body = curl(url, **kw)
        if code != 429:
            return code, body
        time.sleep(0.3)
    lib.fail("%s: still 429 after 20 tries" % url)


def shared_dir(t, name):
    """A directory every user can traverse and write (for nobody's truth
    file and the socket), removed at the end."""
    d = "/tmp/memdrift-e2e-%s-%d" % (name, os.getpid())
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    os.chmod(d, 0o1777)
    t.cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


class Svc(td.Daemon):
    """memdrift daemon with arbitrary flags (the endpoint may be TLS-only, so
    readiness is its log line, then `ready`); wait/stop as test_daemon's."""

    def __init__(self, t, argv, user=None, ready=None, stdout=None, name="daemon"):
        lib.need_memdrift()
        self.err_path = os.path.join(t.tmp, name + ".stderr")
        self.out_path = os.path.join(t.tmp, name + ".stdout")
        full = [lib.MEMDRIFT, "daemon"] + argv
        if user:
            full = ["setpriv", "--reuid=" + user, "--regid=" + lib.user_group(user),
                    "--clear-groups", "--inh-caps=" + CAPS, "--ambient-caps=" + CAPS,
                    "--"] + full
        with open(self.err_path, "wb") as err:
            out = stdout if stdout is not None else open(self.out_path, "wb")
            self.proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
            if stdout is None:
                out.close()
        lib._live.append(self.proc)
        self.wait(lambda: "daemon started" in self.stderr(), 20, "the start line")
        if ready:
            self.wait(ready, 20, "the endpoint")

    def stderr(self, n=100000):
        return td.Daemon.stderr(self, n)


def metric_value(text, name, **labels):
    total, found = 0.0, False
    for line in (text or "").splitlines():
        if line.startswith("#"):
            continue
        head, _, val = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all('%s="%s"' % (k, v) in head for k, v in labels.items()):
            total += float(val)
            found = True
    return total if found else None


def caps_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return None


def select_targets():
    return "select.include_exe=%s/*" % lib.TARGETS


def start_parker(t, user, d):
    path = lib.target(lib.versions()[-1], "parker", "plain")
    truth = os.path.join(d, "parker-%s.json" % user)
    proc, _ = t.spawn(as_user(user, [path, "-truth", truth]), log_name="parker-%s.log" % user)
    tg = lib.Target(proc, truth, os.path.join(t.tmp, "parker-%s.log" % user))
    tg.wait_truth(timeout=30)
    # setpriv execs the target: the pid is the target's
    return tg


def self_signed(t, share):
    """A certificate in share (curl as nobody reads it as its CA), its key
    in t.tmp (root's)."""
    if not shutil.which("openssl"):
        lib.skip_or_fail("openssl not installed (makes the test's certificate)")
    cert, key = os.path.join(share, "cert.pem"), os.path.join(t.tmp, "key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], capture_output=True, text=True)
    if p.returncode != 0:
        lib.fail("openssl req failed: %s" % p.stderr[-400:])
    os.chmod(cert, 0o644)
    return cert, key


# ------------------------------------------------------------ authorization

@lib.timeout(90)
def test_daemon_security_profiles(t):
    """Profiles of a root process refused to nobody over the Unix socket
    (SO_PEERCRED) and over HTTPS without, or with a wrong, bearer token; root
    gets them on both, nobody gets its own process's on the socket. Plain
    HTTP on the TLS port gets no answer. /metrics needs the token on TCP;
    /healthz never does."""
    lib.need_root_bpf()
    share = shared_dir(t, "sec")
    sock = os.path.join(share, "memdrift.sock")
    token = os.urandom(24).hex()
    token_file = os.path.join(t.tmp, "token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    cert, key = self_signed(t, share)
    port = lib.free_port()
    root_tg = start_parker(t, "root", share)
    nobody_tg = start_parker(t, "nobody", share)
    base = "https://127.0.0.1:%d" % port
    auth = dict(token=token, cacert=cert)
    d = Svc(t, ["--duration", "80s", "--set", select_targets(),
                "--set", "metrics.listen=127.0.0.1:%d" % port,
                "--set", "metrics.unix_socket=" + sock,
                "--set", "metrics.token_file=" + token_file,
                "--set", "metrics.tls_cert=" + cert, "--set", "metrics.tls_key=" + key,
                "--set", "state.dir=" + os.path.join(t.tmp, "state")],
            ready=lambda: curl(base + "/healthz", cacert=cert)[0] == 200)
    d.wait(lambda: all(metric_value(curl(base + "/metrics", **auth)[1].decode(),
                                    "memdrift_go_goroutines", pid=str(p)) is not None
                       for p in (root_tg.pid, nobody_tg.pid)), 20, "both parkers watched")
    st = os.stat(sock)
    if st.st_mode & 0o777 != 0o666:
        lib.fail("socket mode %o" % (st.st_mode & 0o777))
    got = []

    def expect(what, code, want, body=None):
        got.append("%s %d" % (what, code))
        if code != want:
            lib.fail("%s: HTTP %d, expected %d (%r)" % (what, code, want, (body or b"")[:200]))
        if want == 200 and body is not None and "pprof" in what and body[:2] != b"\x1f\x8b":
            lib.fail("%s: 200 but not a gzip'd profile: %r" % (what, body[:40]))

    sock_url = "http://memdrift/debug/pprof/%s?pid=%d"
    tcp_url = base + "/debug/pprof/%s?pid=%d"
    refused = 0
    for kind in ("goroutine", "heap"):
        # nobody, root's process: refused on every listener
        c, b = profile(sock_url % (kind, root_tg.pid), user="nobody", unix=sock)
        expect("nobody unix %s pprof of root's" % kind, c, 403, b)
        c, b = profile(tcp_url % (kind, root_tg.pid), user="nobody", cacert=cert)
        expect("nobody https no-token %s pprof" % kind, c, 401, b)
        c, b = profile(tcp_url % (kind, root_tg.pid), user="nobody", cacert=cert,
                       token="x" * len(token))
        expect("nobody https wrong-token %s pprof" % kind, c, 401, b)
        refused += 3
    # root: on both listeners
    c, b = profile(sock_url % ("goroutine", root_tg.pid), unix=sock)
    expect("root unix goroutine pprof", c, 200, b)
    c, b = profile(tcp_url % ("goroutine", root_tg.pid), **auth)
    expect("root https+token goroutine pprof", c, 200, b)
    # nobody's own process on the socket; root may read it too
    c, b = profile(sock_url % ("goroutine", nobody_tg.pid), user="nobody", unix=sock)
    expect("nobody unix goroutine pprof of its own", c, 200, b)
    c, b = profile(sock_url % ("goroutine", nobody_tg.pid), unix=sock)
    expect("root unix goroutine pprof of nobody's", c, 200, b)
    # plain HTTP to the TLS port: no HTTP answer at all
    c, _ = curl("http://127.0.0.1:%d/metrics" % port, timeout=3)
    expect("plain http to the TLS port", c, 0)
    c, b = curl(base + "/metrics", user="nobody", cacert=cert)
    expect("nobody https /metrics without token", c, 401, b)
    c, b = curl(base + "/healthz", user="nobody", cacert=cert)
    expect("nobody https /healthz without token", c, 200, b)
    c, b = curl("http://memdrift/metrics", user="nobody", unix=sock)
    expect("nobody unix /metrics", c, 200, b)
    text = curl(base + "/metrics", **auth)[1].decode()
    n_refused = metric_value(text, "memdrift_http_requests_total", endpoint="profile",
                             result="refused")
    if n_refused != refused:
        lib.fail("memdrift_http_requests_total{profile,refused} %r, %d refusals made"
                 % (n_refused, refused))
    d.stop()
    if os.path.exists(sock):
        lib.fail("the socket %s is left behind after SIGTERM" % sock)
    t.note("%d requests as expected; %d refusals counted" % (len(got), refused))


def test_daemon_security_listen_policy(t):
    """A non-loopback metrics.listen without TLS and a token is refused at
    config time (one line, exit 2) unless acknowledged."""
    lib.need_memdrift()
    r = t.memdrift("daemon", "--print-config", "--set", "metrics.listen=0.0.0.0:9464")
    line = lib.one_error_line(r, "0.0.0.0 without TLS")
    if r.rc != 2 or "metrics.insecure_listen" not in line:
        lib.fail("rc %d: %s" % (r.rc, line))
    r = t.memdrift("daemon", "--print-config", "--set", "metrics.listen=0.0.0.0:9464",
                   "--set", "metrics.insecure_listen=true")
    if r.rc != 0 or "insecure_listen = true" not in r.out:
        lib.fail("acknowledged: %s" % r.describe())
    r = t.memdrift("daemon", "--print-config", "--set", "metrics.tls_cert=/etc/x.pem")
    lib.one_error_line(r, "cert without key")
    t.note(line[:90])


# ------------------------------------------------------------ connections

def idle_socks(src, port, n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def closed_by_server(s, wait):
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


@lib.timeout(60)
def test_daemon_security_idle_connections(t):
    """188 idle TCP connections (64 each from 127.0.0.2 and 127.0.0.3, 60 from
    127.0.0.1): /healthz and /metrics still answer at once; a 65th from one
    address is closed (metrics.max_connections_per_ip); idle ones are closed
    after metrics.timeout. Profiles over TCP without a token: 403 to root and
    nobody alike."""
    lib.need_root_bpf()
    port = lib.free_port()
    base = "http://127.0.0.1:%d" % port
    d = Svc(t, ["--duration", "50s", "--set", "metrics.listen=127.0.0.1:%d" % port,
                "--set", "metrics.timeout=4s", "--set", select_targets(),
                "--set", "select.jvm=false",
                "--set", "state.dir=" + os.path.join(t.tmp, "state")],
            ready=lambda: curl(base + "/healthz")[0] == 200)
    # root, and no uprobes wanted (no JVMs, no trace.on_drift): the four only
    eff = caps_of(d.proc.pid)
    if eff != KEPT_CAPS:
        lib.fail("root daemon without uprobes kept CapEff %x, want %x" % (eff, KEPT_CAPS))
    socks = idle_socks("127.0.0.2", port, 64) + idle_socks("127.0.0.3", port, 64) + \
        idle_socks("127.0.0.1", port, 60)
    t.cleanup(lambda: [s.close() for s in socks])
    time.sleep(0.5)
    t0 = time.monotonic()
    for path in ("/healthz", "/metrics"):
        c, b = curl(base + path, timeout=3)
        if c != 200:
            lib.fail("%s with 188 idle connections: HTTP %d" % (path, c))
    took = time.monotonic() - t0
    extra = idle_socks("127.0.0.2", port, 1)[0]
    if not closed_by_server(extra, 2):
        lib.fail("a 65th connection from 127.0.0.2 was kept open")
    extra.close()
    if any(closed_by_server(s, 0.01) for s in socks[:5]):
        lib.fail("idle connections closed before metrics.timeout")
    time.sleep(4.5)
    closed = sum(closed_by_server(s, 0.5) for s in socks[:8])
    if closed != 8:
        lib.fail("%d of 8 idle connections closed after metrics.timeout (4s)" % closed)
    share = shared_dir(t, "idle")
    tg = start_parker(t, "root", share)
    d.wait(lambda: metric_value(curl(base + "/metrics")[1].decode(), "memdrift_go_goroutines",
                                pid=str(tg.pid)) is not None, 15, "the parker watched")
    for user in ("root", "nobody"):
        c, b = profile(base + "/debug/pprof/goroutine?pid=%d" % tg.pid, user=user)
        if c != 403:
            lib.fail("%s: TCP profile without metrics.token_file: HTTP %d" % (user, c))
    d.stop()
    t.note("/healthz + /metrics in %.2fs beside 188 idle connections" % took)


# ------------------------------------------------------------ faults

def write_config(path, **keys):
    with open(path, "w") as f:
        for k, v in keys.items():
            f.write("%s = %s\n" % (k.replace("__", "."), v))


@lib.timeout(120)
def test_daemon_security_reload_faults(t):
    """SIGHUP to an occupied port keeps /metrics on the old one; alerts.file
    is reopened after rename + SIGHUP (the new file gets the next alert); a
    symlink planted at alerts.file is refused (its target untouched); stdout
    a pipe whose reader is gone: the daemon lives on."""
    lib.need_root_bpf()
    port, busy = lib.free_port(), socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    t.cleanup(busy.close)
    busy_port = busy.getsockname()[1]
    alerts = os.path.join(t.tmp, "alerts.json")
    conf = os.path.join(t.tmp, "memdrift.conf")
    base_keys = dict(metrics__listen="127.0.0.1:%d" % port, alerts__file=alerts,
                     alerts__rate_limit=0, state__dir=os.path.join(t.tmp, "state"),
                     detect__window="10s", detect__interval="500ms", detect__min_points=9,
                     goroutine__blocked_min_age="2s",
                     select__include_exe="%s/*" % lib.TARGETS)
    write_config(conf, **base_keys)
    rd, wr = os.pipe()
    url = "http://127.0.0.1:%d/metrics" % port
    d = Svc(t, ["--config", conf, "--duration", "100s"], stdout=wr,
            ready=lambda: curl(url)[0] == 200)
    os.close(wr)
    os.close(rd)  # stdout has no reader any more: EPIPE, never SIGPIPE
    ver = lib.versions()[-1]
    leaky = lib.target(ver, "leaky", "plain")

    def alerts_of(path, pid):
        try:
            with open(path) as f:
                return [l for l in f if '"pid":%d' % pid in l.replace(" ", "")]
        except OSError:
            return []
    g1 = t.start_target(leaky, "-goroutine-leak-rate", 50)
    d.wait(lambda: alerts_of(alerts, g1.pid), 40, "the first leak's alert in alerts.file")
    # 1. reload to an occupied port
    write_config(conf, **dict(base_keys, metrics__listen="127.0.0.1:%d" % busy_port))
    n_refused = d.stderr().count("reload refused") + d.stderr().count("metrics.listen:")
    os.kill(d.proc.pid, signal.SIGHUP)
    d.wait(lambda: d.stderr().count("metrics.listen:") > n_refused, 10, "the refused reload")
    for _ in range(3):
        c, _ = curl(url)
        if c != 200:
            lib.fail("after a SIGHUP to an occupied port, /metrics on the old port: HTTP %d" % c)
        time.sleep(0.3)
    # 2. rotation: rename, SIGHUP, the next alert goes to a new file
    write_config(conf, **base_keys)
    os.rename(alerts, alerts + ".1")
    os.kill(d.proc.pid, signal.SIGHUP)
    d.wait(lambda: os.path.exists(alerts), 10, "alerts.file recreated on SIGHUP")
    mode = os.stat(alerts).st_mode & 0o777
    g2 = t.start_target(leaky, "-goroutine-leak-rate", 50)
    d.wait(lambda: alerts_of(alerts, g2.pid), 40, "the second leak's alert in the new file")
    if alerts_of(alerts + ".1", g2.pid):
        lib.fail("the second leak's alert went to the rotated file")
    # 3. a symlink planted at alerts.file is not followed
    canary = os.path.join(t.tmp, "canary")
    with open(canary, "w") as f:
        f.write("canary\n")
    os.rename(alerts, alerts + ".2")
    os.symlink(canary, alerts)
    n_refused = d.stderr().count("alerts.file")
    os.kill(d.proc.pid, signal.SIGHUP)
    d.wait(lambda: d.stderr().count("alerts.file") > n_refused, 10, "the refused symlink")
    time.sleep(1)
    with open(canary) as f:
        if f.read() != "canary\n":
            lib.fail("alerts written through a symlink into its target")
    if curl(url)[0] != 200:
        lib.fail("no /metrics after the refused symlink")
    text = curl(url)[1].decode()
    dropped = metric_value(text, "memdrift_daemon_events_total", event="alert_stdout_dropped")
    d.stop()
    if "stdout: Broken pipe" not in d.stderr():
        lib.fail("no stdout EPIPE line: %s" % d.stderr(800))
    t.note("occupied port refused, old kept; rotated file mode %o; symlink refused; "
           "stdout gone, %d alert lines dropped" % (mode, dropped or 0))


def test_daemon_security_postmortem_retention(t):
    """state.dir with 40 post-mortems: at start the daemon keeps the newest
    within state.postmortem_max_count (5) and _max_bytes."""
    lib.need_root_bpf()
    state = os.path.join(t.tmp, "state")
    os.makedirs(state)
    now = time.time()
    for i in range(40):
        p = os.path.join(state, "postmortem-%d-%d" % (1000 + i, int(now) - 1000 + i))
        os.makedirs(p)
        with open(os.path.join(p, "postmortem.json"), "wb") as f:
            f.write(b"{}" + b" " * (256 << 10))
        os.utime(p, (now - 1000 + i, now - 1000 + i))
    other = os.path.join(state, "not-a-postmortem")
    os.makedirs(other)
    port = lib.free_port()
    d = Svc(t, ["--duration", "20s", "--set", "metrics.listen=127.0.0.1:%d" % port,
                "--set", "state.dir=" + state, "--set", "state.postmortem_max_count=5",
                "--set", select_targets()],
            ready=lambda: curl("http://127.0.0.1:%d/healthz" % port)[0] == 200)
    left = sorted(n for n in os.listdir(state) if n.startswith("postmortem-"))
    want = ["postmortem-%d-%d" % (1000 + i, int(now) - 1000 + i) for i in range(35, 40)]
    if left != want or not os.path.isdir(other):
        lib.fail("state.dir after start: %s" % sorted(os.listdir(state)))
    text = curl("http://127.0.0.1:%d/metrics" % port)[1].decode()
    if metric_value(text, "memdrift_daemon_events_total", event="postmortem_pruned") != 35:
        lib.fail("postmortem_pruned: %r" % metric_value(text, "memdrift_daemon_events_total",
                                                       event="postmortem_pruned"))
    d.stop()
    # bytes: 5 x 256 KiB kept above; a 1 MiB cap keeps the newest 3 or 4
    d = Svc(t, ["--duration", "20s", "--set", "metrics.listen=127.0.0.1:%d" % port,
                "--set", "state.dir=" + state, "--set", "state.postmortem_max_bytes=1MiB",
                "--set", select_targets()], name="daemon2",
            ready=lambda: curl("http://127.0.0.1:%d/healthz" % port)[0] == 200)
    left2 = sorted(n for n in os.listdir(state) if n.startswith("postmortem-"))
    d.stop()
    if not (1 <= len(left2) <= 4) or left2 != want[-len(left2):]:
        lib.fail("after a 1 MiB cap: %s" % left2)
    t.note("40 -> 5 newest (count), -> %d newest (1 MiB)" % len(left2))


# ------------------------------------------------------------ budget

@lib.timeout(150)
def test_daemon_security_cpu_budget(t):
    """trace.cpu_budget 0.01 %: a cgo leak switches C allocation tracing on
    (trace.on_drift), its probes cost more than the budget, so they are
    detached at the next sample: logged, counted, the target unharmed and
    still leaking at its rate."""
    lib.need_root_bpf()
    port = lib.free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    argv = ["--duration", "120s", "--set", "metrics.listen=127.0.0.1:%d" % port,
            "--set", "state.dir=" + os.path.join(t.tmp, "state"), "--set", select_targets(),
            "--set", "trace.on_drift=true", "--set", "trace.cpu_budget=0.01"]
    for s in td.WINDOW_SETS:
        argv += ["--set", s]
    d = Svc(t, argv, ready=lambda: curl(url)[0] == 200)
    tg = t.start_target(lib.target(lib.versions()[-1], "leaky", "cgo"),
                        "-native-leak-rate", 2 * td.MIB)
    d.wait(lambda: "tracing C allocations" in d.stderr(), 90, "tracing switched on")
    on_at = time.monotonic()
    d.wait(lambda: "C allocation tracing off: its probes cost" in d.stderr(), 10,
           "tracing off over budget")
    off_after = time.monotonic() - on_at
    text = curl(url)[1].decode()
    if metric_value(text, "memdrift_daemon_events_total", event="trace_over_budget") != 1:
        lib.fail("trace_over_budget: %s" % metric_value(text, "memdrift_daemon_events_total",
                                                        event="trace_over_budget"))
    if metric_value(text, "memdrift_native_outstanding_bytes", pid=str(tg.pid)) is not None:
        lib.fail("native tracing still reported after the detach")
    line = [l for l in d.stderr().splitlines() if "its probes cost" in l][0]
    before = tg.read_truth().get("native_leaked", 0)
    time.sleep(3)  # leaky rewrites its truth each second
    after = tg.read_truth().get("native_leaked", 0)
    if not tg.alive():
        lib.fail("the target died: %s" % tg.log_tail())
    if after - before < td.MIB:
        lib.fail("the target stopped leaking after the detach: %d -> %d" % (before, after))
    d.stop()
    t.note("detached %.1fs after attach: %s; target leaked %d -> %d B"
           % (off_after, line.split("its probes cost ")[-1], before, after))


# ------------------------------------------------------------ privileges

@lib.timeout(60)
def test_daemon_security_nonroot(t):
    """As nobody with exactly the four ambient capabilities the daemon
    watches a root Go process and keeps only those four; as nobody without
    them it exits with one line naming what is missing."""
    lib.need_root_bpf()
    r = t.memdrift("daemon", "--duration", "5s", "--set", "state.dir=/tmp", user="nobody")
    line = lib.one_error_line(r, "daemon as nobody without capabilities")
    for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"):
        if cap not in line:
            lib.fail("the refusal does not name %s: %s" % (cap, line))
    share = shared_dir(t, "nonroot")
    tg = start_parker(t, "root", share)
    state = os.path.join(share, "state")
    port = lib.free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    d = Svc(t, ["--duration", "40s", "--set", "metrics.listen=127.0.0.1:%d" % port,
                "--set", "state.dir=" + state, "--set", select_targets()], user="nobody",
            ready=lambda: curl(url)[0] == 200)
    n = d.wait(lambda: metric_value(curl(url)[1].decode(), "memdrift_go_goroutines",
                                    pid=str(tg.pid)), 15, "the root parker watched")
    truth = tg.read_truth()
    with open("/proc/%d/status" % d.proc.pid) as f:
        status = dict(l.split(":", 1) for l in f if ":" in l)
    uid = int(status["Uid"].split()[1])
    eff, prm = int(status["CapEff"], 16), int(status["CapPrm"], 16)
    d.stop()
    if uid == 0:
        lib.fail("daemon runs as uid 0")
    if eff != KEPT_CAPS or prm != KEPT_CAPS:
        lib.fail("capabilities after start-up: eff %x prm %x, want %x" % (eff, prm, KEPT_CAPS))
    if abs(n - truth["numgoroutine"]) > 2:
        lib.fail("goroutines %r, the target says %r" % (n, truth["numgoroutine"]))
    t.note("uid %d, CapEff %x, %d goroutines of a root process; refusal: %s"
           % (uid, eff, n, line[10:70]))


# ------------------------------------------------------------ state.dir

@lib.timeout(150)
def test_daemon_security_state_dir_readonly(t):
    """state.dir the daemon cannot write (nobody's, mode 0500; the daemon
    dropped CAP_DAC_OVERRIDE at start): two OOM kills of watched processes
    give two oom_kill alerts, one warning line, postmortem_error 2."""
    lib.need_root_bpf()
    path = lib.target(lib.versions()[-1], "leaky", "plain")
    procs, kind = lib.memory_cgroup(t, 160 * td.MIB, "memdrift-sec-oom")
    share = shared_dir(t, "state")
    state = os.path.join(share, "state")
    os.makedirs(state)
    os.chown(state, 65534, 65534)
    os.chmod(state, 0o500)
    port = lib.free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    d = Svc(t, ["--duration", "120s", "--set", "metrics.listen=127.0.0.1:%d" % port,
                "--set", "state.dir=" + state, "--set", select_targets(),
                "--set", "detect.interval=1s", "--set", "detect.window=1m",
                "--set", "goroutine.blocked_min_age=10s"],
            ready=lambda: curl(url)[0] == 200)

    def join_cgroup():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    victims = []
    for i in range(2):
        log = open(os.path.join(t.tmp, "victim%d.log" % i), "wb")
        v = subprocess.Popen([path, "-heap-leak-rate", str(12 * td.MIB)], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=join_cgroup, start_new_session=True)
        log.close()
        lib._live.append(v)
        try:
            rc = v.wait(timeout=60)
        except subprocess.TimeoutExpired:
            lib.fail("victim %d not OOM-killed within 60s" % i)
        if rc != -signal.SIGKILL:
            lib.fail("victim %d exited %s, not SIGKILL" % (i, rc))
        victims.append(v.pid)
        d.wait(lambda: td.firing(d.alerts(), v.pid, "oom_kill"), 10,
               "oom_kill alert for victim %d" % i)

    def counters():
        text = curl(url)[1].decode()
        return (metric_value(text, "memdrift_daemon_events_total", event="postmortem_error"),
                metric_value(text, "memdrift_kernel_events_total", event="oom_kill"))
    deadline = time.monotonic() + 10
    seen = counters()
    while (seen[0] or 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = counters()
    if seen[0] != 2:
        lib.fail("postmortem_error %r after 10s (kernel oom_kill events %r); alerts %r"
                 % (seen[0], seen[1],
                    [(a["pid"], a["kind"], a["state"]) for a in d.alerts()]))
    warned = [l for l in d.stderr().splitlines() if "post-mortem for PID" in l]
    d.stop()
    if len(warned) != 1 or "Permission denied" not in warned[0]:
        lib.fail("expected one post-mortem warning, got %r" % warned)
    if os.listdir(state):
        lib.fail("something was written into the read-only state.dir: %s" % os.listdir(state))
    t.note("cgroup %s: 2 oom_kill alerts, 1 warning: %s" % (kind, warned[0][10:110]))


# ------------------------------------------------------------ watchdog

@lib.timeout(60)
def test_daemon_security_watchdog(t):
    """WATCHDOG_USEC set (systemd WatchdogSec=): READY=1, then WATCHDOG=1 at
    every tick (at most 250 ms apart) on NOTIFY_SOCKET."""
    lib.need_root_bpf()
    path = os.path.join(t.tmp, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    t.cleanup(ns.close)
    port = lib.free_port()
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
    argv = [lib.MEMDRIFT, "daemon", "--duration", "4s", "--set",
            "metrics.listen=127.0.0.1:%d" % port, "--set", "select.include_exe=/nonexistent/*",
            "--set", "state.dir=" + os.path.join(t.tmp, "state")]
    proc, _ = t.spawn(argv, env=env, log_name="watchdog-daemon.log")
    ns.settimeout(10)
    msgs = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 6:
        try:
            msgs.append((time.monotonic(), ns.recv(4096).decode()))
        except socket.timeout:
            break
        ns.settimeout(1.0)  # started: the end is a second of silence
    proc.wait(timeout=10)
    ready = [m for m in msgs if "READY=1" in m[1]]
    dogs = [ts for ts, m in msgs if "WATCHDOG=1" in m]
    if not ready or len(dogs) < 8:
        lib.fail("READY %d, WATCHDOG=1 %d in %d messages: %r" % (len(ready), len(dogs), len(msgs),
                                                                   [m for _, m in msgs][:6]))
    gaps = [b - a for a, b in zip(dogs, dogs[1:])]
    if max(gaps) > 1.0:
        lib.fail("WATCHDOG=1 gap %.2fs (ticks are 250 ms)" % max(gaps))
    t.note("%d WATCHDOG=1 in ~4s, largest gap %.2fs" % (len(dogs), max(gaps)))


@lib.timeout(90)
def test_daemon_security_slow_stdout(t):
    """stdout a 4 KiB pipe nobody reads while 8 leaks alert (~5 KB of
    lines): /metrics keeps answering, alerts.file has every alert, and once
    the reader reads, stdout delivers the same lines (held back, not lost)."""
    lib.need_root_bpf()
    import fcntl
    rd, wr = os.pipe()
    fcntl.fcntl(wr, 1031, 4096)  # F_SETPIPE_SZ: the smallest pipe
    alerts = os.path.join(t.tmp, "alerts.json")
    port = lib.free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    d = Svc(t, ["--duration", "80s", "--set", "metrics.listen=127.0.0.1:%d" % port,
                "--set", "alerts.file=" + alerts, "--set", "alerts.rate_limit=0",
                "--set", "detect.window=10s", "--set", "detect.interval=500ms",
                "--set", "detect.min_points=9", "--set", "goroutine.blocked_min_age=2s",
                "--set", "state.dir=" + os.path.join(t.tmp, "state"), "--set", select_targets()],
            stdout=wr, ready=lambda: curl(url)[0] == 200)
    os.close(wr)
    t.cleanup(lambda: os.close(rd))
    leaky = lib.target(lib.versions()[-1], "leaky", "plain")
    pids = [t.start_target(leaky, "-goroutine-leak-rate", 50).pid for _ in range(8)]

    def fired():
        try:
            with open(alerts) as f:
                return {json.loads(l)["pid"] for l in f if '"firing"' in l} >= set(pids)
        except (OSError, ValueError):
            return False
    slowest = 0.0
    deadline = time.monotonic() + 50
    while not fired():
        if time.monotonic() > deadline:
            lib.fail("not every leak alerted in alerts.file: %s" % d.stderr(600))
        t0 = time.monotonic()
        if curl(url, timeout=3)[0] != 200:
            lib.fail("/metrics did not answer while stdout is full")
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.5)
    with open(alerts) as f:
        want = f.read()
    os.set_blocking(rd, False)
    got = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(got) < len(want):
        try:
            got += os.read(rd, 65536)
        except BlockingIOError:
            time.sleep(0.1)
    if not want.startswith(got.decode()[:len(want)]) or len(got) < len(want):
        lib.fail("stdout gave %d bytes, alerts.file has %d" % (len(got), len(want)))
    d.stop()
    t.note("%d bytes of alerts held back behind a 4 KiB pipe; /metrics answered in <= %.2fs"
           % (len(want), slowest))
