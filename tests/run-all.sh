#!/usr/bin/env bash
# Run every test memdrift has, after `make all unit fuzz targets`:
#   1. unit tests   .output/tests/test_*  (cmocka, TAP output; one count per case)
#   2. fuzzers      .output/fuzz/fuzz_*   (libFuzzer, FUZZ_TIME s each, default 20;
#                   one count per fuzzer; seeds from tests/fuzz/corpus/<name>/)
#   3. e2e tests    tests/e2e/run.py      (arguments of this script go to it)
# Prints a summary per stage and, as its very last line,
#   N passed, N failed, N skipped
# Exit status 1 when anything failed.
set -uo pipefail

cd "$(dirname "$0")/.."
out=.output
fuzz_time=${FUZZ_TIME:-20}
unit_timeout=${UNIT_TIMEOUT:-300}
log_dir=$out/test-logs
mkdir -p "$log_dir"

total_pass=0
total_fail=0
total_skip=0

stage() {   # NAME PASS FAIL SKIP
	printf '== %s: %d passed, %d failed, %d skipped\n\n' "$1" "$2" "$3" "$4"
	total_pass=$((total_pass + $2))
	total_fail=$((total_fail + $3))
	total_skip=$((total_skip + $4))
}

# ------------------------------------------------------------------ unit tests
echo "== unit tests"
p=0 f=0 s=0
shopt -s nullglob
units=("$out"/tests/test_*)
[ ${#units[@]} -eq 0 ] && echo "   (none built: make unit)"
for bin in "${units[@]}"; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	name=$(basename "$bin")
	log="$log_dir/$name.tap"
	# in a subshell, so a crash report ("Segmentation fault") lands in the log
	(CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 5 "$unit_timeout" "$bin"; exit $?) >"$log" 2>&1
	rc=$?
	# cmocka TAP: "ok N - name", "not ok N - name", "not ok N # SKIP name"
	ts=$(grep -cE '^(not )?ok [0-9]+ # SKIP' "$log")
	tp=$(grep -E '^ok [0-9]+' "$log" | grep -cvE '# SKIP')
	tf=$(grep -E '^not ok [0-9]+' "$log" | grep -cvE '# SKIP')
	plan=$(sed -n 's/^1\.\.\([0-9]\+\).*/\1/p' "$log" | head -1)
	missing=0
	if [ -n "$plan" ] && [ $((tp + tf + ts)) -lt "$plan" ]; then
		missing=$((plan - tp - tf - ts))
	fi
	note=""
	if [ $missing -gt 0 ]; then
		note=" ($missing cases did not report, exit status $rc)"
		tf=$((tf + missing))
	elif [ $rc -ne 0 ] && [ $tf -eq 0 ]; then
		# died (signal, timeout, setup failure) without a failed case
		note=" (exit status $rc without a failed case)"
		tf=1
	fi
	printf '   %-28s %3d ok, %d not ok, %d skipped%s\n' "$name" "$tp" "$tf" "$ts" "$note"
	if [ $tf -gt 0 ]; then
		if grep -qE '^not ok [0-9]+' "$log"; then
			grep -E '^not ok|^# ' "$log" | grep -v '# SKIP' | head -20 | sed 's/^/      /'
		else
			tail -5 "$log" | sed 's/^/      | /'
		fi
	fi
	p=$((p + tp)) f=$((f + tf)) s=$((s + ts))
done
stage "unit tests" $p $f $s

# ------------------------------------------------------------------ fuzzers
echo "== fuzzers (${fuzz_time}s each)"
p=0 f=0 s=0
fuzzers=("$out"/fuzz/fuzz_*)
[ ${#fuzzers[@]} -eq 0 ] && echo "   (none built: make fuzz)"
for bin in "${fuzzers[@]}"; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	name=$(basename "$bin")
	scratch="$out/fuzz-corpus/$name"
	artifacts="$out/fuzz-artifacts/$name"
	mkdir -p "$scratch" "$artifacts"
	dirs=("$scratch")
	[ -d "tests/fuzz/corpus/$name" ] && dirs+=("tests/fuzz/corpus/$name")
	log="$log_dir/$name.log"
	(timeout -k 5 $((fuzz_time + 60)) "$bin" -max_total_time="$fuzz_time" \
		-artifact_prefix="$artifacts/" -print_final_stats=1 "${dirs[@]}"; exit $?) >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ $rc -eq 0 ]; then
		printf '   %-28s ok (%s runs)\n' "$name" "${execs:-?}"
		p=$((p + 1))
	else
		printf '   %-28s FAILED (exit status %d; artifacts in %s)\n' "$name" $rc "$artifacts"
		grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -8 | sed 's/^/      /'
		f=$((f + 1))
	fi
done
stage fuzzers $p $f $s

# ------------------------------------------------------------------ e2e
echo "== e2e tests"
elog="$log_dir/e2e.log"
python3 tests/e2e/run.py "$@" 2>&1 | tee "$elog" | sed 's/^/   /'
last=$(tail -1 "$elog")
if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
	stage "e2e tests" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"
else
	echo "   e2e runner did not finish (last line: $last)"
	stage "e2e tests" 0 1 0
fi

echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ $total_fail -eq 0 ]
