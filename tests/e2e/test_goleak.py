"""Goroutines the Go runtime itself marked leaked (1.26+, status _Gleaked).

The goleak target leaks N goroutines on channels nothing can reach and keeps
5 blocked on a channel main still holds. Nothing marks them until someone
asks the runtime for its goroutineleak profile (an extra GC cycle): memdrift
never does. The oracle is that profile's own count, fetched from the
target's net/http/pprof on loopback.
"""

import re
import urllib.request

import lib

LEAKS = 37


def leak_versions():
    return [v for v in lib.versions() if int(v.split(".")[1]) >= 26]


def leak_cases():
    return lib.target_cases(flavors=("plain", "stripped"), vers=leak_versions())


def snapshot(t, tg):
    return t.memdrift("snapshot", tg.pid, "--json", timeout=30).json()


def site(snap, function):
    for s in snap["sites"]:
        if s["function"] == function:
            return s
    lib.fail("no site %s in %s" % (function, [s["function"] for s in snap["sites"]]))


def request_leak_profile(truth):
    """Fetch the target's own goroutineleak profile (this runs the runtime's
    leak detector) and return its total."""
    url = "http://127.0.0.1:%d/debug/pprof/goroutineleak?debug=1" % truth["port"]
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read().decode()
    m = re.match(r"goroutineleak profile: total (\d+)", body)
    if not m:
        lib.fail("unexpected goroutineleak profile: %r" % body[:300])
    return int(m.group(1))


@lib.cases(leak_cases)
def test_runtime_leaked(t, ver, flavor):
    lib.need_root()
    lib.need_memdrift()
    tg = t.start_target(lib.target(ver, "goleak", flavor), LEAKS)
    truth = tg.read_truth()

    # Before anyone asks: blocked, not marked, and memdrift's look changes nothing.
    before = snapshot(t, tg)
    assert before["goroutines_leaked"] == 0, "leaked %r before the profile was requested" \
        % before["goroutines_leaked"]
    again = snapshot(t, tg)
    assert again["goroutines_leaked"] == 0, "memdrift's own snapshot marked goroutines leaked"

    profile_total = request_leak_profile(truth)
    assert profile_total >= LEAKS, "the runtime found %d leaked, the target made %d" \
        % (profile_total, LEAKS)

    snap = snapshot(t, tg)
    assert snap["goroutines_leaked"] == profile_total, \
        "memdrift shows %d leaked, the runtime's profile %d" \
        % (snap["goroutines_leaked"], profile_total)
    leak = site(snap, "main.leakOne")
    assert leak["count"] == LEAKS and leak["leaked"] == LEAKS, \
        "main.leakOne: %d goroutines, %d leaked; want %d both" \
        % (leak["count"], leak["leaked"], LEAKS)
    # still shown by what they wait on
    assert leak["states"].get("chan receive") == LEAKS, "main.leakOne states %r" % leak["states"]
    kept = site(snap, "main.keepOne")
    assert kept["count"] == truth["kept"] and kept["leaked"] == 0, \
        "main.keepOne: %d goroutines, %d leaked; want %d, 0" \
        % (kept["count"], kept["leaked"], truth["kept"])

    text = t.memdrift("snapshot", tg.pid, timeout=30)
    assert text.rc == 0 and "%d marked leaked" % profile_total in text.out \
        and "[%d leaked]" % LEAKS in text.out, text.describe()
    t.note("%s: profile total %d = memdrift leaked %d; leakOne %d/%d leaked, keepOne 0/%d"
           % (snap["go_version"], profile_total, snap["goroutines_leaked"], leak["leaked"],
              leak["count"], kept["count"]))


@lib.cases(lambda: lib.target_cases(flavors=("stripped",), vers=leak_versions()[-1:]))
def test_runtime_leaked_metrics(t, ver, flavor):
    """The daemon exports the runtime's leaked marks per process and site."""
    import test_daemon

    lib.need_root_bpf()
    tg = t.start_target(lib.target(ver, "goleak", flavor), LEAKS)
    truth = tg.read_truth()
    url = "http://127.0.0.1:%d/debug/pprof/goroutineleak?debug=1" % truth["port"]
    with urllib.request.urlopen(url, timeout=30) as r:
        total = int(re.match(r"goroutineleak profile: total (\d+)", r.read().decode()).group(1))
    d = test_daemon.Daemon(t, duration="60s")
    got = d.wait(lambda: d.metric("memdrift_go_goroutines_leaked", pid=str(tg.pid)), 30,
                 "memdrift_go_goroutines_leaked for the goleak target")
    site = d.metric("memdrift_goroutine_site_leaked", pid=str(tg.pid), function="main.leakOne")
    kept = d.metric("memdrift_goroutine_site_leaked", pid=str(tg.pid), function="main.keepOne")
    d.stop()
    assert got == total, "memdrift_go_goroutines_leaked %s, the runtime's profile %d" % (got, total)
    assert site == LEAKS, "memdrift_goroutine_site_leaked{main.leakOne} %s, want %d" % (site, LEAKS)
    assert kept is None, "main.keepOne exported as leaked: %s" % kept
    t.note("%s: memdrift_go_goroutines_leaked %d = profile %d; main.leakOne %d"
           % (ver, got, total, site))
