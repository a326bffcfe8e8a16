"""Alerting where users already alert: the Prometheus rules under
scripts/prometheus/ (promtool check rules, promtool test rules on synthetic
series), the Alertmanager example (amtool check-config and its routes), and
the Grafana dashboard, each of whose queries must return data from a real
Prometheus on loopback scraping a real daemon that watches a leaking Go
program (queried through Prometheus's HTTP API)."""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import lib

PROM = os.path.join(lib.ROOT, "scripts", "prometheus")
RULES = os.path.join(PROM, "memdrift-rules.yml")
RULES_TEST = os.path.join(PROM, "memdrift-rules.test.yml")
AM = os.path.join(PROM, "alertmanager.yml")
DASHBOARD = os.path.join(lib.ROOT, "scripts", "grafana", "memdrift-dashboard.json")


def need(tool):
    path = shutil.which(tool)
    if not path:
        lib.skip_or_fail("%s not installed (make deps: prometheus, prometheus-alertmanager)" % tool)
    return path


def run(argv, timeout=120):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        lib.fail("`%s` -> %d: %s%s" % (" ".join(argv), p.returncode, p.stdout[-1500:],
                                        p.stderr[-1500:]))
    return p.stdout + p.stderr


def test_prometheus_rules(t):
    out = run([need("promtool"), "check", "rules", RULES])
    n = re.search(r"SUCCESS: (\d+) rules found", out)
    assert n, out
    out = run([need("promtool"), "test", "rules", RULES_TEST])
    assert "SUCCESS" in out, out
    with open(RULES_TEST) as f:
        checks = len(re.findall(r"^\s+- eval_time:", f.read(), re.M))
    print("  promtool check rules: %s rules; promtool test rules: %d checks pass" % (n.group(1), checks))
    t.note("%s rules, %d rule tests" % (n.group(1), checks))


def test_alertmanager_config(t):
    amtool = need("amtool")
    out = run([amtool, "check-config", AM])
    assert "SUCCESS" in out, out
    routes = {}
    for labels, want in ((["alertname=MemdriftDriftAlert", "severity=critical", "kind=goroutine_leak"],
                          "pager"),
                         (["alertname=MemdriftGoHeapGrowth", "severity=warning"], "team-memory")):
        got = run([amtool, "config", "routes", "test", "--config.file=" + AM] + labels).split("\n")[0]
        assert got == want, "%s routed to %r, expected %r" % (labels, got, want)
        routes[labels[1]] = got
    print("  amtool check-config: SUCCESS; routes %s" % routes)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def dashboard_queries():
    with open(DASHBOARD) as f:
        d = json.load(f)
    out = []
    for p in d["panels"]:
        for tg in p.get("targets", []):
            out.append((p["title"], tg["expr"]))
    return out


@lib.timeout(240)
def test_grafana_dashboard_queries(t):
    """Every dashboard query returns series from Prometheus scraping the
    daemon (the API, not the text scrape)."""
    lib.need_root_bpf()
    prometheus = need("prometheus")
    binary = lib.target(lib.versions()[0] if "go1.24" not in lib.versions() else "go1.24",
                        "leaky", "plain")
    mport, pport = lib.free_port(), lib.free_port()
    tg = t.start_target(binary, "-goroutine-leak-rate", "20", "-heap-leak-rate", "2097152")
    d, dlog = t.spawn([lib.MEMDRIFT, "daemon", "--set", "metrics.listen=127.0.0.1:%d" % mport,
                       "--set", "detect.window=40s", "--set", "detect.interval=1s",
                       "--set", "goroutine.blocked_min_age=5s", "--set", "state.dir=" + t.tmp,
                       "--set", "select.include_exe=" + os.path.realpath(binary)],
                      log_name="daemon.log")
    conf = os.path.join(t.tmp, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "rule_files: [%s]\n"
                "scrape_configs:\n  - job_name: memdrift\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % (json.dumps(RULES), mport))
    prom, plog = t.spawn([prometheus, "--config.file=" + conf,
                          "--storage.tsdb.path=" + os.path.join(t.tmp, "tsdb"),
                          "--web.listen-address=127.0.0.1:%d" % pport], log_name="prometheus.log")
    api = "http://127.0.0.1:%d/api/v1/" % pport

    def query(expr):
        expr = expr.replace('instance=~"$instance"', 'instance=~".*"').replace(
            "$__rate_interval", "30s")
        r = get_json(api + "query?" + urllib.parse.urlencode({"query": expr}))
        assert r["status"] == "success", r
        return r["data"]["result"]

    # the daemon's own alert fires ~33 s after start (window 40 s)
    deadline = time.monotonic() + 120
    last_error = None
    while True:
        try:
            if query('memdrift_alert_firing{kind="goroutine_leak",pid="%d"}' % tg.pid):
                break
        except OSError as e:
            last_error = e
        if d.poll() is not None:
            lib.fail("daemon exited: %s" % open(dlog).read()[-1000:])
        if prom.poll() is not None:
            lib.fail("prometheus exited %s: %s" % (prom.returncode, open(plog).read()[-1500:]))
        if time.monotonic() > deadline:
            fired = [l for l in open(dlog).read().splitlines()
                     if '"goroutine_leak"' in l and '"firing"' in l]
            try:
                up = query("up")
            except OSError as e:
                up = "query failed: %s" % e
            lib.fail("no firing goroutine_leak in Prometheus after 120s (the daemon's log %s "
                     "it; last query error %s; Prometheus up: %s); daemon log: %s\n"
                     "prometheus log: %s"
                     % ("has" if fired else "does not have", last_error, up,
                        open(dlog).read()[-1000:], open(plog).read()[-1500:]))
        time.sleep(1)
    # rates need two samples inside their window
    time.sleep(3)
    empty = []
    qs = dashboard_queries()
    for title, expr in qs:
        res = query(expr)
        if not res:
            empty.append("%s: %s" % (title, expr))
        else:
            print("  %-44s %3d series  %s" % (title, len(res), expr))
    assert not empty, "dashboard queries with no data from a real scrape: %s" % empty
    rules = get_json(api + "rules")["data"]["groups"]
    bad = [r["name"] for g in rules for r in g["rules"] if r.get("health") != "ok"]
    assert rules and not bad, "rules not healthy in Prometheus: %s" % bad
    alerts = {a["labels"]["alertname"] for a in get_json(api + "alerts")["data"]["alerts"]}
    assert "MemdriftDriftAlert" in alerts, alerts
    print("  Prometheus %s: %d rules healthy, alerts %s" % (
        run([prometheus, "--version"]).split("\n")[0].split("(")[0].strip(),
        sum(len(g["rules"]) for g in rules), sorted(alerts)))
    t.note("%d dashboard queries answered by Prometheus" % len(qs))
