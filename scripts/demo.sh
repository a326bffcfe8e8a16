#!/usr/bin/env bash
# make demo: a bundled Go service that leaks goroutines, Go heap and cgo
# memory; memdrift looks at it once (snapshot) and then watches it as the
# daemon would, with demo-sized windows, printing alerts as they fire.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMDRIFT=.output/memdrift
DURATION=${DEMO_DURATION:-90s}

if [ "$(id -u)" -ne 0 ] && [ "${1:-}" != --build ]; then
	echo "demo: memdrift loads BPF programs; run it as root ('sudo make demo' from another user)" >&2
	exit 1
fi
# The one program the demo runs, built with the newest installed Go (cached:
# rebuilt only when its sources are newer).
gobin=$(ls -d /usr/lib/go-1.*/bin/go 2>/dev/null | sort -V | tail -n 1)
[ -n "$gobin" ] || gobin=$(command -v go)
goroot=$(dirname "$(dirname "$(readlink -f "$gobin")")")
ver=$(GOROOT="$goroot" "$gobin" env GOVERSION)
target=.output/demo/$ver/leaky-cgo
if [ ! -x "$target" ] || [ -n "$(find tests/targets/leaky -newer "$target" -type f -print -quit)" ]; then
	echo "== building $target"
	mkdir -p "$(dirname "$target")" .output/gocache
	(cd tests/targets/leaky && GOROOT="$goroot" GOTOOLCHAIN=local GOPROXY=off GOFLAGS="-mod=mod -buildvcs=false" \
		GOCACHE="$PWD/../../../.output/gocache" GOPATH="$PWD/../../../.output/gocache/gopath" GOENV=off \
		GOTELEMETRY=off CGO_ENABLED=1 "$gobin" build -o "../../../$target.tmp" .)
	mv -f "$target.tmp" "$target"
fi
[ "${1:-}" = --build ] && exit 0
work=$(mktemp -d /tmp/memdrift-demo.XXXXXX)
cleanup() {
	[ -n "${tpid:-}" ] && kill "$tpid" 2>/dev/null || true
	[ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== starting $target ($ver): leaks 20 goroutines/s, 2 MiB/s of Go heap, 1 MiB/s of C memory"
"$target" -goroutine-leak-rate 20 -heap-leak-rate 2097152 -native-leak-rate 1048576 \
	-truth "$work/truth.json" >/dev/null 2>&1 &
tpid=$!
sleep 3

echo
echo "== memdrift snapshot $tpid   (one look from outside: no probes, nothing written)"
$MEMDRIFT snapshot --heap "$tpid" | head -n 24

echo
echo "== memdrift daemon, demo windows (detect.window=40s, interval 1s), until the four leaks are reported (at most $DURATION)"
echo "   alerts as JSON lines go to $work/alerts.json; one line each below"
$MEMDRIFT daemon --duration "$DURATION" \
	--set detect.window=40s --set detect.interval=1s --set goroutine.blocked_min_age=5s \
	--set trace.on_drift=true --set trace.duration=5m --set native.min_oldest_age=10s \
	--set metrics.listen=127.0.0.1:19464 --set alerts.file="$work/alerts.json" \
	--set alerts.stdout=false --set select.include_exe="$(readlink -f "$target")" &
dpid=$!
python3 - "$work/alerts.json" "$dpid" <<'PY'
import json, os, sys, time
path, dpid = sys.argv[1], int(sys.argv[2])
seen = 0
want = {"goroutine_leak", "go_heap_growth", "native_leak", "rss_growth"}
fired = set()
def alive(p):
    try:
        os.kill(p, 0); return True
    except OSError:
        return False
while True:
    running = alive(dpid)
    if os.path.exists(path):
        with open(path) as f:
            lines = f.read().splitlines()
        for line in lines[seen:]:
            a = json.loads(line)
            if a["state"] == "firing":
                fired.add(a["kind"])
            site = a.get("site") or {}
            where = f" [{site['function']} {os.path.basename(site['file'])}:{site['line']}]" if site else ""
            print(f"{a['ts']}  {a['state'].upper():8} {a['severity']:8} {a['kind']:15} pid {a['pid']} {a['comm']}{where}\n    {a['summary']}", flush=True)
        seen = len(lines)
    if not running:
        break
    # every leak the service has is reported: no need to wait for the end
    if want <= fired:
        os.kill(dpid, 15)
        want = set(["done"])
    time.sleep(0.5)
PY
wait "$dpid" || true
dpid=
echo
echo "== what the target says about itself: $(cat "$work/truth.json")"
echo "== metrics were served at http://127.0.0.1:19464/metrics while the daemon ran"
