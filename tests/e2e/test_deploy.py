"""Deployment as shipped: every config embedded in the manifests, the unit and
the image parsed by memdrift itself; the image run exactly as the DaemonSet
runs it (podman flags derived from scripts/k8s/daemonset.yaml) beside a
leaking Go program in a container of its own.

The DaemonSet run: hostPID, the capabilities it drops and adds,
readOnlyRootFilesystem (no tmpfs anywhere: / and /tmp read-only), the seccomp
setting, the ConfigMap mounted read-only where the manifest mounts it, the
hostPath volumes (state.dir's host path moved under the test's scratch
directory, /sys/kernel/btf as is), the resource limits, the container's own
network namespace (probed from inside it, as the kubelet does). The ConfigMap
is the shipped one plus short detection windows (the default 10 min window
would make the test 10 min long).
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time

import lib

DAEMONSET = os.path.join(lib.ROOT, "scripts", "k8s", "daemonset.yaml")
UNIT = os.path.join(lib.ROOT, "scripts", "systemd", "memdrift.service")
CONTAINERFILE = os.path.join(lib.ROOT, "scripts", "Containerfile")
EXAMPLE_CONF = os.path.join(lib.ROOT, "daemon", "service", "memdrift.conf.example")
IMAGE = "localhost/memdrift:latest"
TARGET_IMAGE = "localhost/memdrift-test-leaky:latest"
PODMAN = ["podman", "--runtime", "runc"]
TEST_WINDOWS = ("detect.window = 40s\ndetect.interval = 1s\n"
                "goroutine.blocked_min_age = 5s\n")


# ---------------------------------------------------------------- manifests

def load_yaml_docs(path):
    """Every document of a YAML file: PyYAML when this python has it, else
    Debian's python3-yaml through /usr/bin/python3 (JSON in between)."""
    try:
        import yaml
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except ImportError:
        pass
    p = subprocess.run(["/usr/bin/python3", "-c",
                        "import json,sys,yaml;"
                        "json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None],"
                        "sys.stdout)"], stdin=open(path), capture_output=True, text=True)
    if p.returncode != 0:
        lib.skip_or_fail("no YAML reader (python3-yaml): %s" % p.stderr.strip()[-200:])
    return json.loads(p.stdout)


def manifest():
    docs = load_yaml_docs(DAEMONSET)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    assert len(by_kind.get("DaemonSet", [])) == 1, "one DaemonSet in %s" % DAEMONSET
    return by_kind


def unit_exec_start():
    """argv of the unit's ExecStart= (systemd's own prefixes stripped)."""
    with open(UNIT) as f:
        for line in f:
            if line.startswith("ExecStart="):
                return shlex.split(line.split("=", 1)[1].lstrip("-@:+!"))
    lib.fail("no ExecStart= in %s" % UNIT)


def containerfile_cmd():
    """The runtime image's ENTRYPOINT + CMD (JSON form) and the config it COPYs."""
    entry, cmd, copies = [], [], {}
    with open(CONTAINERFILE) as f:
        for line in f:
            if line.startswith("ENTRYPOINT "):
                entry = json.loads(line.split(None, 1)[1])
            elif line.startswith("CMD "):
                cmd = json.loads(line.split(None, 1)[1])
            elif line.startswith("COPY ") and "--from" not in line:
                src, dst = line.split()[1:3]
                if dst.startswith("/"):
                    copies[dst] = os.path.join(lib.ROOT, src)
    return entry + cmd, copies


def check_config(t, args, files, what):
    """memdrift's own parser on the config args name: `ARGS --check-config`,
    with each path in files (image/host path -> local copy) substituted."""
    args = [files.get(a, a) for a in args]
    r = t.memdrift(*(args + ["--check-config"]))
    if r.rc != 0:
        lib.fail("%s: %s" % (what, r.describe()))
    return " ".join(args)


def test_shipped_configs(t):
    """Every config memdrift is shipped with, through memdrift's parser."""
    lib.need_memdrift()
    checked = []
    # the DaemonSet: each ConfigMap key, at the path the container's args name
    kinds = manifest()
    ds = kinds["DaemonSet"][0]
    pod = ds["spec"]["template"]["spec"]
    cmaps = {c["metadata"]["name"]: c for c in kinds.get("ConfigMap", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        files = {}
        for m in c.get("volumeMounts", []):
            v = vols[m["name"]]
            if "configMap" not in v:
                continue
            cm = cmaps.get(v["configMap"]["name"])
            assert cm, "ConfigMap %s is not in %s" % (v["configMap"]["name"], DAEMONSET)
            for key, text in cm["data"].items():
                local = os.path.join(t.tmp, "cm-" + key)
                with open(local, "w") as f:
                    f.write(text)
                files[os.path.join(m["mountPath"], key)] = local
        args = c.get("args") or []
        conf = args[args.index("--config") + 1] if "--config" in args else None
        assert conf in files, ("container %s: --config %s is not a ConfigMap key mounted "
                               "by the manifest (%s)" % (c["name"], conf, sorted(files)))
        checked.append("DaemonSet " + check_config(t, args, files, "DaemonSet args"))
    # the systemd unit: its ExecStart with the config `make install` puts there
    argv = unit_exec_start()
    assert os.path.basename(argv[0]) == "memdrift", argv
    checked.append("unit " + check_config(
        t, argv[1:], {"/etc/memdrift/memdrift.conf": EXAMPLE_CONF}, "unit ExecStart"))
    # the image: ENTRYPOINT+CMD with the config the Containerfile copies in
    argv, copies = containerfile_cmd()
    checked.append("image " + check_config(t, argv[1:], copies, "Containerfile CMD"))
    for c in checked:
        print("  checked: " + c.replace(lib.ROOT + "/", ""))
    t.note("%d configs valid" % len(checked))


# ---------------------------------------------------------------- podman flags

CAP_BITS = {"DAC_READ_SEARCH": 2, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "SYS_RESOURCE": 24,
            "PERFMON": 38, "BPF": 39}


def caps_mask(names):
    return sum(1 << CAP_BITS[n.replace("CAP_", "")] for n in names)


def proc_capeff(pid, reader=None):
    text = reader("/proc/%s/status" % pid) if reader else open("/proc/%s/status" % pid).read()
    return int(re.search(r"CapEff:\s*([0-9a-f]+)", text).group(1), 16)


def k8s_quantity_bytes(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1000, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+)([KMG]i?)?", str(q))
    assert m, "quantity %r" % q
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


def k8s_cpus(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def daemonset_podman_args(config_dir, host_root, secret_dir=None):
    """podman run flags for the DaemonSet's one container, from the manifest
    (secret volumes from secret_dir, the files the test made for them).
    Returns (flags, container spec, what each flag came from)."""
    kinds = manifest()
    pod = kinds["DaemonSet"][0]["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1, "one container in the DaemonSet"
    c = pod["containers"][0]
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    flags, why = [], []

    def add(flag, src):
        flags.extend(flag)
        why.append("%s <- %s" % (" ".join(flag), src))

    if pod.get("hostPID"):
        add(["--pid=host"], "hostPID: true")
    if pod.get("hostNetwork"):
        add(["--network=host"], "hostNetwork: true")
    else:
        # a pod network namespace of its own; probes come from inside it
        add(["--network=none"], "no hostNetwork (own network namespace)")
    sc = c.get("securityContext", {})
    caps = sc.get("capabilities", {})
    for cap in caps.get("drop", []):
        add(["--cap-drop=" + ("ALL" if cap == "ALL" else "CAP_" + cap)], "capabilities.drop")
    for cap in caps.get("add", []):
        add(["--cap-add=CAP_" + cap], "capabilities.add")
    if sc.get("privileged"):
        add(["--privileged"], "privileged")
    if sc.get("readOnlyRootFilesystem"):
        # Kubernetes mounts no tmpfs: /tmp, /run are read-only too
        add(["--read-only", "--read-only-tmpfs=false"], "readOnlyRootFilesystem: true")
    seccomp = sc.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        add(["--security-opt", "seccomp=unconfined"], "seccompProfile: Unconfined")
    elif seccomp == "Localhost":
        add(["--security-opt", "seccomp=" + sc["seccompProfile"]["localhostProfile"]],
            "seccompProfile: Localhost")
    if sc.get("allowPrivilegeEscalation") is False:
        add(["--security-opt", "no-new-privileges"], "allowPrivilegeEscalation: false")
    limits = c.get("resources", {}).get("limits", {})
    if "memory" in limits:
        add(["--memory=%d" % k8s_quantity_bytes(limits["memory"])], "limits.memory")
    if "cpu" in limits:
        add(["--cpus=%g" % k8s_cpus(limits["cpu"])], "limits.cpu")
    for m in c.get("volumeMounts", []):
        v = vols[m["name"]]
        ro = m.get("readOnly", False)
        if "configMap" in v:
            src, ro = config_dir, True  # configMap volumes are read-only
        elif "secret" in v and secret_dir:
            src, ro = secret_dir, True
        elif "hostPath" in v:
            src = v["hostPath"]["path"]
            if not src.startswith(("/sys/", "/proc/")):
                # writable host state: under the scratch directory
                src = os.path.join(host_root, src.lstrip("/"))
                if v["hostPath"].get("type") == "DirectoryOrCreate":
                    os.makedirs(src, exist_ok=True)
        else:
            lib.fail("volume %s: only configMap, secret and hostPath are derived" % m["name"])
        add(["-v", "%s:%s%s" % (src, m["mountPath"], ":ro" if ro else "")],
            "volumeMounts %s" % m["name"])
    return flags, c, why


# ---------------------------------------------------------------- images

def need_podman():
    lib.need_root_bpf()
    if not shutil.which("podman") or not shutil.which("runc"):
        lib.skip_or_fail("podman and runc not installed (make deps)")


def build_image(t, tag=IMAGE):
    p = subprocess.run(["bash", os.path.join(lib.ROOT, "scripts", "build-image"), tag],
                       capture_output=True, text=True, timeout=1500)
    if p.returncode != 0:
        lib.fail("scripts/build-image: %s" % (p.stderr or p.stdout)[-1500:])
    print("  " + p.stdout.strip().splitlines()[-1])


def newest_target(name, flavor, newest="go1.24"):
    """The newest toolchain's build up to newest (stripped binaries need the
    offset table, which covers 1.17-1.24)."""
    key = lambda v: [int(x) for x in v[2:].split(".")]
    vs = [v for v in lib.versions() if key(v) <= key(newest)] or lib.versions()
    v = max(vs, key=key)
    return lib.target(v, name, flavor), v


def build_target_image(t, binary):
    """A tiny image holding only the static target binary: FROM scratch, so
    the binary exists nowhere but in that image's root file system."""
    with open(binary, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    got = subprocess.run(PODMAN + ["image", "inspect", "--format",
                                   '{{index .Labels "memdrift.inputs"}}', TARGET_IMAGE],
                         capture_output=True, text=True)
    if got.returncode == 0 and got.stdout.strip() == digest:
        return
    ctx = os.path.join(t.tmp, "target-image")
    os.makedirs(ctx)
    shutil.copy(binary, os.path.join(ctx, "leaky"))
    with open(os.path.join(ctx, "Containerfile"), "w") as f:
        f.write('FROM scratch\nCOPY leaky /leaky\nENTRYPOINT ["/leaky"]\n')
    p = subprocess.run(PODMAN + ["build", "--pull=never", "--label", "memdrift.inputs=" + digest,
                                 "-t", TARGET_IMAGE, ctx], capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        lib.fail("podman build of the target image: %s" % p.stderr[-800:])


def ulimit_flags():
    """runc sets rlimits explicitly; never above this host's hard limits."""
    import resource
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return ["--ulimit", "nofile=%d:%d" % (nofile, nofile),
            "--ulimit", "nproc=%d:%d" % (nproc, nproc)]


def podman_rm(name):
    subprocess.run(PODMAN + ["rm", "-f", "-t", "0", name], capture_output=True, timeout=60)


def inspect(name, fmt):
    p = subprocess.run(PODMAN + ["inspect", "--format", fmt, name], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, "podman inspect %s: %s" % (name, p.stderr)
    return p.stdout.strip()


FETCH = ("import ssl,sys,urllib.request,urllib.error\n"
         "req=urllib.request.Request(sys.argv[1])\n"
         "if len(sys.argv) > 2: req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
         "ctx=ssl._create_unverified_context()\n"  # the test's self-signed certificate
         "try:\n r=urllib.request.urlopen(req,timeout=15,context=ctx); code=r.status; body=r.read()\n"
         "except urllib.error.HTTPError as e:\n code=e.code; body=e.read()\n"
         "sys.stdout.buffer.write(b'%d\\n' % code + body)\n")


def fetch_in_netns(pid, url, token=None):
    """GET url from inside the network namespace of pid (the pod's), with a
    bearer token when given."""
    p = subprocess.run(["nsenter", "-t", str(pid), "-n", "/usr/bin/python3", "-c", FETCH, url] +
                       ([token] if token else []), capture_output=True, timeout=30)
    if p.returncode != 0:
        return 0, p.stderr
    code, _, body = p.stdout.partition(b"\n")
    return int(code), body


def series(metrics, name):
    """[(labels dict, value)] of one metric family in a Prometheus text scrape."""
    out = []
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        lab, _, val = line[len(name) + 1:].rpartition("} ")
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', lab))
        out.append((labels, float(val)))
    return out


def pprof_raw(t, path):
    p = subprocess.run([lib.go_tool(), "tool", "pprof", "-raw", path], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, HOME=t.tmp,
                                                        GOTOOLCHAIN="local"))
    if p.returncode != 0:
        lib.fail("go tool pprof -raw %s: %s" % (path, p.stderr[-500:]))
    return p.stdout


def make_tls_secret(t):
    """The memdrift-tls Secret's files: a self-signed certificate, its key and
    a bearer token. Returns (directory, token)."""
    d = os.path.join(t.tmp, "secret-memdrift-tls")
    os.makedirs(d)
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=memdrift", "-keyout", os.path.join(d, "tls.key"),
                        "-out", os.path.join(d, "tls.crt")], capture_output=True, timeout=60)
    if p.returncode != 0:
        lib.skip_or_fail("openssl req: %s" % p.stderr[-300:])
    token = hashlib.sha256(os.urandom(32)).hexdigest()
    with open(os.path.join(d, "token"), "w") as f:
        f.write(token + "\n")
    return d, token


def unix_get(sock_path, path):
    """GET path over the daemon's Unix socket (as root: SO_PEERCRED allows it)."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(sock_path)

    c = Conn("localhost")
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


@lib.timeout(1500)
def test_daemonset_container(t):
    """The image run as the DaemonSet runs it, watching a leaking Go program
    in a container of its own."""
    need_podman()
    binary, ver = newest_target("leaky", "stripped")  # CGO_ENABLED=0: static
    t0 = time.monotonic()
    build_image(t)
    build_target_image(t, binary)
    t.note("images ready in %.0fs" % (time.monotonic() - t0))

    config_dir = os.path.join(t.tmp, "configmap")
    os.makedirs(config_dir)
    kinds = manifest()
    cm = kinds["ConfigMap"][0]
    for key, text in cm["data"].items():
        with open(os.path.join(config_dir, key), "w") as f:
            f.write(text + TEST_WINDOWS)
    secret_dir, token = make_tls_secret(t)
    flags, c, why = daemonset_podman_args(config_dir, os.path.join(t.tmp, "host"), secret_dir)
    port = c["livenessProbe"]["httpGet"]["port"]
    health_path = c["livenessProbe"]["httpGet"]["path"]
    scheme = c["livenessProbe"]["httpGet"].get("scheme", "HTTP").lower()
    assert any(p["containerPort"] == port for p in c["ports"]), "probe port is a container port"
    for w in why:
        print("  podman " + w)

    dname, tname = "memdrift-test-ds-%d" % os.getpid(), "memdrift-test-leaky-%d" % os.getpid()
    for n in (dname, tname):
        podman_rm(n)
        t.cleanup(lambda n=n: podman_rm(n))
    argv = PODMAN + ["run", "-d", "--name", dname] + ulimit_flags() + flags + \
        [IMAGE] + c["args"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "podman run (DaemonSet flags): %s" % p.stderr[-800:]
    dpid = int(inspect(dname, "{{.State.Pid}}"))

    def daemon_log():
        r = subprocess.run(PODMAN + ["logs", dname], capture_output=True, timeout=30,
                           encoding="utf-8", errors="replace")  # comm names of any process
        return r.stdout + r.stderr

    deadline = time.monotonic() + 30
    while True:
        code, body = fetch_in_netns(dpid, "%s://127.0.0.1:%d%s" % (scheme, port, health_path))
        if code == 200:
            break
        if time.monotonic() > deadline or inspect(dname, "{{.State.Running}}") != "true":
            lib.fail("liveness probe %s never answered 200 (last %s); daemon log: %s"
                     % (health_path, code, daemon_log()[-1500:]))
        time.sleep(0.5)
    print("  liveness probe GET :%d%s -> 200 %r" % (port, health_path, body.strip()))
    capeff = proc_capeff(dpid)
    want = caps_mask(c["securityContext"]["capabilities"].get("add", []))
    assert capeff & ~want == 0, "daemon CapEff %x beyond the manifest's %x" % (capeff, want)
    print("  daemon CapEff %x (manifest adds %x; what this host's bounding set grants)"
          % (capeff, want))

    # the leaking program, in its own pid, mount and network namespaces
    p = subprocess.run(PODMAN + ["run", "-d", "--name", tname, "--network=none"] + ulimit_flags() +
                       [TARGET_IMAGE, "-goroutine-leak-rate", "20", "-heap-leak-rate", "2097152"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "podman run (target): %s" % p.stderr[-800:]
    tpid = int(inspect(tname, "{{.State.Pid}}"))
    cid = inspect(tname, "{{.Id}}")
    t_start = time.monotonic()
    for ns in ("pid", "mnt", "net"):
        assert os.readlink("/proc/%d/ns/%s" % (tpid, ns)) != os.readlink("/proc/self/ns/" + ns), \
            "target shares the host's %s namespace" % ns
    assert not os.path.exists("/leaky"), "the target binary must exist only in its image"
    print("  target: %s (%s leaky-stripped) host pid %d, container %s" % (tname, ver, tpid, cid[:12]))

    # discovered (exec tracepoint), series labelled with the container id
    url = "%s://127.0.0.1:%d" % (scheme, port)
    deadline = time.monotonic() + 30
    while True:
        code, body = fetch_in_netns(dpid, url + "/metrics", token)
        gs = [s for s in series(body.decode(), "memdrift_go_goroutines")
              if s[0].get("pid") == str(tpid)] if code == 200 else []
        if gs:
            break
        if time.monotonic() > deadline:
            lib.fail("pid %d not in /metrics after 30s (code %s); daemon log: %s"
                     % (tpid, code, daemon_log()[-1500:]))
        time.sleep(0.5)
    labels = gs[0][0]
    assert labels.get("container_id") == cid, \
        "memdrift_go_goroutines for pid %d labelled %r, container is %s" % (tpid, labels, cid)
    print("  /metrics: memdrift_go_goroutines{%s} %g" %
          (",".join('%s="%s"' % kv for kv in sorted(labels.items())), gs[0][1]))

    # both pprof endpoints for it: 200, and go tool pprof reads them
    code, _ = fetch_in_netns(dpid, "%s/debug/pprof/heap?pid=%d" % (url, tpid))
    assert code == 401, "a profile without the token -> %d, want 401" % code
    print("  %s: a profile without the bearer token -> 401" % scheme.upper())
    for kind, want in (("goroutine", "main.handleRequest"), ("heap", "main.remember")):
        # the runtime publishes heap samples at the end of a GC cycle: a
        # target seconds old may not have finished the one that holds them
        deadline = time.monotonic() + 30
        while True:
            code, body = fetch_in_netns(dpid, "%s/debug/pprof/%s?pid=%d" % (url, kind, tpid),
                                        token)
            assert code == 200, "/debug/pprof/%s?pid=%d -> %d %r (read-only / and /tmp)" % (
                kind, tpid, code, body[:300])
            path = os.path.join(t.tmp, kind + ".pb.gz")
            with open(path, "wb") as f:
                f.write(body)
            raw = pprof_raw(t, path)
            if want in raw:
                break
            assert time.monotonic() < deadline, "%s profile lacks %s after 30s: %s" % (
                kind, want, raw[:800])
            time.sleep(1)
        print("  /debug/pprof/%s?pid=%d -> 200, %d bytes; go tool pprof -raw names %s"
              % (kind, tpid, len(body), want))

    # the leak alerted (JSON lines on stdout = the container log) and firing
    # in /metrics with the container id
    deadline = t_start + 90
    alert = None
    while alert is None:
        for line in daemon_log().splitlines():
            if not line.startswith("{"):
                continue
            a = json.loads(line)
            if a.get("pid") == tpid and a.get("kind") == "goroutine_leak" and \
                    a.get("state") == "firing":
                alert = a
        if alert is None:
            if time.monotonic() > deadline:
                lib.fail("no goroutine_leak alert for pid %d in 90s; log: %s"
                         % (tpid, daemon_log()[-2000:]))
            time.sleep(1)
    assert (alert.get("site") or {}).get("function") == "main.handleRequest", alert
    code, body = fetch_in_netns(dpid, url + "/metrics", token)
    firing = [s for s in series(body.decode(), "memdrift_alert_firing")
              if s[0].get("pid") == str(tpid) and s[0].get("kind") == "goroutine_leak"]
    assert firing and firing[0][0].get("container_id") == cid, \
        "memdrift_alert_firing for pid %d: %r" % (tpid, firing)
    print("  alert after %.0fs: %s" % (time.monotonic() - t_start, alert["summary"]))
    print("  memdrift_alert_firing{kind=goroutine_leak,container_id=%s...} 1" % cid[:12])
    t.note("discovered, labelled, 2 profiles, alert %.0fs" % (time.monotonic() - t_start))


# ---------------------------------------------------------------- systemd

SYSTEMD_IMAGE = "localhost/memdrift-test-systemd:latest"
def runtime_libs():
    """The packages the image's runtime stage installs (the last `apt-get
    install` of scripts/Containerfile): the systemd stand-in gets the same."""
    with open(CONTAINERFILE) as f:
        text = f.read().replace("\\\n", " ")
    runs = [l for l in text.splitlines() if l.startswith("RUN ") and "apt-get install" in l]
    assert runs, "no apt-get install in %s" % CONTAINERFILE
    words = runs[-1].split("apt-get install", 1)[1].split("&&")[0].split()
    return " ".join(w for w in words if not w.startswith("-"))


RUNTIME_LIBS = runtime_libs()


def base_image():
    """The debootstrap base scripts/build-image imported."""
    return "localhost/memdrift-base:bookworm"


def build_systemd_image(t, target_binary):
    """A host stand-in: systemd, memdrift's runtime libraries, what
    `make install DESTDIR=...` installs, and a Go target. Cached by the hash of
    its inputs."""
    stage = os.path.join(t.tmp, "ctx", "root")
    p = subprocess.run(["make", "--no-print-directory", "-s", "install", "DESTDIR=" + stage],
                       cwd=lib.ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, "make install: %s" % (p.stderr or p.stdout)[-800:]
    installed = sorted(os.path.relpath(os.path.join(d, f), stage)
                       for d, _, fs in os.walk(stage) for f in fs)
    shutil.copy(target_binary, os.path.join(t.tmp, "ctx", "leaky"))
    recipe = ("FROM %s\n"
              "RUN apt-get update && apt-get install -y --no-install-recommends systemd procps man-db %s"
              " && rm -rf /var/lib/apt/lists/*\n"
              "COPY root/ /\nCOPY leaky /usr/local/bin/leaky\n"
              'CMD ["/lib/systemd/systemd"]\n' % (base_image(), RUNTIME_LIBS))
    with open(os.path.join(t.tmp, "ctx", "Containerfile"), "w") as f:
        f.write(recipe)
    h = hashlib.sha256(recipe.encode())
    for rel in installed + ["../leaky"]:
        with open(os.path.join(stage, rel), "rb") as f:
            h.update(rel.encode() + f.read())
    digest = h.hexdigest()[:16]
    got = subprocess.run(PODMAN + ["image", "inspect", "--format",
                                   '{{index .Labels "memdrift.inputs"}}', SYSTEMD_IMAGE],
                         capture_output=True, text=True)
    if not (got.returncode == 0 and got.stdout.strip() == digest):
        p = subprocess.run(PODMAN + ["build", "--pull=never", "--network", "host", "--label",
                                     "memdrift.inputs=" + digest, "-t", SYSTEMD_IMAGE,
                                     os.path.join(t.tmp, "ctx")],
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, "podman build (systemd image): %s" % p.stderr[-1500:]
    return installed


def cexec(name, *argv, timeout=60, check=True):
    p = subprocess.run(PODMAN + ["exec", name] + list(argv), capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        lib.fail("in the systemd container: `%s` -> %d: %s%s"
                 % (" ".join(argv), p.returncode, p.stdout[-1500:], p.stderr[-800:]))
    return p


def unit_watchdog_seconds():
    with open(UNIT) as f:
        m = re.search(r"^WatchdogSec=(\d+)s?$", f.read(), re.M)
    return int(m.group(1)) if m else None


def watchdog_restart(name):
    """With WatchdogSec= in the unit: a hung daemon (SIGSTOP) is restarted."""
    ws = unit_watchdog_seconds()
    if ws is None:
        print("  watchdog: the unit has no WatchdogSec= (not tested)")
        return
    old = cexec(name, "systemctl", "show", "-p", "MainPID", "--value", "memdrift").stdout.strip()
    cexec(name, "kill", "-STOP", old)
    t0 = time.monotonic()
    deadline = t0 + 2 * ws + 30
    while True:
        show = dict(l.split("=", 1) for l in cexec(
            name, "systemctl", "show", "-p", "MainPID,ActiveState,NRestarts",
            "memdrift").stdout.splitlines() if "=" in l)
        if show["MainPID"] not in ("0", old) and show["ActiveState"] == "active":
            break
        if time.monotonic() > deadline:
            lib.fail("hung daemon (SIGSTOP) not restarted within %ds: %s" % (deadline - t0, show))
        time.sleep(1)
    log = cexec(name, "journalctl", "-u", "memdrift", "-o", "cat").stdout
    assert "atchdog timeout" in log, "no watchdog timeout in the journal"
    print("  watchdog: SIGSTOPped daemon %s killed and restarted as %s after %.0fs (WatchdogSec=%d)"
          % (old, show["MainPID"], time.monotonic() - t0, ws))


@lib.timeout(1500)
def test_systemd_unit(t):
    """The shipped unit, unmodified, under a real systemd (a systemd-booted
    container standing in for the host), memdrift installed by make install."""
    need_podman()
    binary, ver = newest_target("leaky", "stripped")
    t0 = time.monotonic()
    build_image(t, "--base")  # the debootstrap base, imported
    installed = build_systemd_image(t, binary)
    print("  make install DESTDIR=...: " + ", ".join(installed))
    t.note("images ready in %.0fs" % (time.monotonic() - t0))
    unit_path = "/usr/local/lib/systemd/system/memdrift.service"
    assert unit_path.lstrip("/") in installed, installed
    with open(os.path.join(t.tmp, "ctx", "root", unit_path.lstrip("/")), "rb") as f, \
            open(UNIT, "rb") as g:
        assert f.read() == g.read(), "make install changed the unit (default PREFIX)"

    name = "memdrift-test-systemd-%d" % os.getpid()
    podman_rm(name)
    t.cleanup(lambda: podman_rm(name))
    # privileged: the container is a host (systemd needs to set up the
    # unit's sandbox); the unit drops to its own capabilities
    p = subprocess.run(PODMAN + ["run", "-d", "--name", name, "--systemd=always", "--privileged",
                                 "--network=none"] + ulimit_flags() + [SYSTEMD_IMAGE],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "podman run --systemd=always: %s" % p.stderr[-800:]
    cpid = int(inspect(name, "{{.State.Pid}}"))
    deadline = time.monotonic() + 60
    while True:
        st = cexec(name, "systemctl", "is-system-running", check=False).stdout.strip()
        if st in ("running", "degraded"):
            break
        if time.monotonic() > deadline:
            lib.fail("systemd in the container not up after 60s: %r" % st)
        time.sleep(0.5)
    print("  systemd booted (%s)" % st)

    r = cexec(name, "systemd-analyze", "verify", unit_path, check=False)
    assert r.returncode == 0 and not r.stderr.strip(), \
        "systemd-analyze verify: rc %d: %s" % (r.returncode, r.stderr)
    print("  systemd-analyze verify %s: clean" % unit_path)

    # the target first: the daemon (in the container's pid namespace) finds
    # it by its /proc scan
    cexec(name, "systemd-run", "--unit=leaky", "/usr/local/bin/leaky",
          "-goroutine-leak-rate", "20", "-heap-leak-rate", "2097152")
    tpid = int(cexec(name, "systemctl", "show", "-p", "MainPID", "--value", "leaky").stdout)
    cexec(name, "sh", "-c", "printf '\\n[detect]\\nwindow = 40s\\ninterval = 1s\\n"
          "[goroutine]\\nblocked_min_age = 5s\\n' >> /etc/memdrift/memdrift.conf")
    t_start = time.monotonic()
    cexec(name, "systemctl", "start", "memdrift", timeout=90)  # returns at READY=1
    show = dict(l.split("=", 1) for l in cexec(
        name, "systemctl", "show", "-p", "Type,ActiveState,SubState,StatusText,MainPID",
        "memdrift").stdout.splitlines() if "=" in l)
    assert show.get("Type") == "notify" and show.get("ActiveState") == "active" and \
        show.get("SubState") == "running", show
    assert show.get("StatusText", "").startswith("watching"), show
    print("  systemctl start memdrift: Type=notify, active/running, status %r"
          % show["StatusText"])
    capeff = proc_capeff(show["MainPID"], lambda p: cexec(name, "cat", p).stdout)
    with open(UNIT) as f:
        want = caps_mask(re.search(r"^AmbientCapabilities=(.*)$", f.read(), re.M).group(1).split())
    assert capeff & ~want == 0, "daemon has capabilities beyond the unit's: %x" % capeff
    print("  daemon CapEff %x (within the unit's five)" % capeff)

    url = "http://127.0.0.1:9464"
    code, body = fetch_in_netns(cpid, url + "/healthz")
    assert code == 200, "/healthz -> %d %r" % (code, body[:200])
    deadline = time.monotonic() + 30
    while True:
        code, body = fetch_in_netns(cpid, url + "/metrics")
        if code == 200 and any(s[0].get("pid") == str(tpid) for s in
                               series(body.decode(), "memdrift_go_goroutines")):
            break
        if time.monotonic() > deadline:
            lib.fail("pid %d not in /metrics after 30s (%d)" % (tpid, code))
        time.sleep(0.5)
    print("  /healthz 200; /metrics has pid %d" % tpid)
    # profiles: not on TCP without a token; on the unit's Unix socket to root
    code, _ = fetch_in_netns(cpid, "%s/debug/pprof/heap?pid=%d" % (url, tpid))
    assert code == 403, "a profile on loopback TCP without a token -> %d, want 403" % code
    sock = "/proc/%d/root/run/memdrift/memdrift.sock" % cpid
    for kind, want_fn in (("goroutine", "main.handleRequest"), ("heap", "main.remember")):
        code, body = unix_get(sock, "/debug/pprof/%s?pid=%d" % (kind, tpid))
        assert code == 200, "/debug/pprof/%s on the socket -> %d %r (ProtectSystem=strict)" % (
            kind, code, body[:300])
        path = os.path.join(t.tmp, "unit-" + kind + ".pb.gz")
        with open(path, "wb") as f:
            f.write(body)
        assert want_fn in pprof_raw(t, path), "%s profile lacks %s" % (kind, want_fn)
        print("  /debug/pprof/%s?pid=%d -> 200 on /run/memdrift/memdrift.sock in the unit's "
              "sandbox (403 on TCP); go tool pprof reads it" % (kind, tpid))

    # reload re-reads the file: alerts.file appears only after it
    cexec(name, "sh", "-c", "printf '[alerts]\\nfile = /var/lib/memdrift/alerts.json\\n'"
          " >> /etc/memdrift/memdrift.conf")
    cexec(name, "systemctl", "reload", "memdrift", timeout=60)
    deadline = time.monotonic() + 20
    while "configuration reloaded" not in cexec(name, "journalctl", "-u", "memdrift",
                                                "-o", "cat").stdout:
        if time.monotonic() > deadline:
            lib.fail("no 'configuration reloaded' in the journal after systemctl reload")
        time.sleep(0.5)
    print("  systemctl reload memdrift: journal says 'configuration reloaded'")

    deadline = t_start + 90
    alert = None
    while alert is None:
        for line in cexec(name, "journalctl", "-u", "memdrift", "-o", "cat").stdout.splitlines():
            if line.startswith("{"):
                a = json.loads(line)
                if a.get("kind") == "goroutine_leak" and a.get("pid") == tpid:
                    alert = a
        if alert is None:
            if time.monotonic() > deadline:
                lib.fail("no goroutine_leak alert in the journal after 90s")
            time.sleep(1)
    print("  journal: %s %s: %s" % (alert["kind"], alert["state"], alert["summary"]))
    got = cexec(name, "cat", "/var/lib/memdrift/alerts.json").stdout
    assert '"goroutine_leak"' in got, "alerts.file (set by the reload) lacks the alert: %r" % got
    print("  alerts.file from the reloaded config holds it")
    r = cexec(name, "systemctl", "is-active", "memdrift", check=False)
    assert r.stdout.strip() == "active", r.stdout
    watchdog_restart(name)
    t.note("READY, reload, 4 endpoints, alert in the journal %.0fs"
           % (time.monotonic() - t_start))


def test_check_config_and_manual(t):
    """--check-config refuses a bad file with one line; the manual page is
    generated from the command table and renders without warnings."""
    bad = os.path.join(t.tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write("metrics.listen = 127.0.0.1:9464\nstate_dir = /var/lib/memdrift\n")
    r = t.memdrift("daemon", "--config", bad, "--check-config")
    lib.one_error_line(r, "--check-config of a bad key")
    assert r.rc == 2 and "bad.conf:2: state_dir" in r.err, r.describe()
    r = t.memdrift("help", "--man")
    assert r.rc == 0 and r.out.startswith(".TH MEMDRIFT 8"), r.describe()
    for line in t.memdrift("help").out.splitlines():
        m = re.match(r"  (\w+) ", line)
        if m:
            assert ".SS %s\n" % m.group(1) in r.out, "command %s missing from the manual" % m.group(1)
    page = os.path.join(t.tmp, "memdrift.8")
    with open(page, "w") as f:
        f.write(r.out)
    if shutil.which("man"):
        p = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                           env=dict(os.environ, MANPAGER="cat", MANWIDTH="80"), timeout=60)
        assert p.returncode == 0 and not p.stderr.strip(), "man -l: %s" % p.stderr[-500:]
        assert "--check-config" in p.stdout.replace("\u2010", "-"), p.stdout[:500]
    print("  --check-config refuses state_dir with one line; memdrift(8) renders cleanly")


def test_pprof_dir_created(t):
    """snapshot --pprof DIR creates DIR (and parents) 0700 when missing."""
    lib.need_root()
    binary, _ = newest_target("leaky", "plain")
    tg = t.start_target(binary)
    out = os.path.join(t.tmp, "new", "profiles")
    r = t.memdrift("snapshot", tg.pid, "--pprof", out)
    assert r.rc == 0, r.describe()
    assert os.stat(out).st_mode & 0o777 == 0o700, oct(os.stat(out).st_mode)
    assert sorted(os.listdir(out)) == ["goroutine.pb.gz", "heap.pb.gz"], os.listdir(out)
    r = t.memdrift("snapshot", tg.pid, "--pprof", os.path.join(t.tmp, "new", "profiles",
                                                               "goroutine.pb.gz", "x"))
    lib.one_error_line(r, "--pprof under a file")
