#!/usr/bin/env bash
# make fuzz-long: every fuzzer in turn (one process at a time, niced) for
# FUZZ_LONG_TIME seconds each (default 360), on a corpus kept in
# .output/fuzz-corpus/<name> across runs, seeded from tests/fuzz/corpus/<name>
# and the generated seeds (tests/fuzz/seeds.sh). Prints per fuzzer the
# executions, libFuzzer's final cov:/ft: figures and the corpus size; a crash
# leaves its input in .output/fuzz-artifacts/<name>/ and fails the run.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=.output
t=${FUZZ_LONG_TIME:-360}
bash tests/fuzz/seeds.sh "$out/fuzz-seeds" >/dev/null || echo "   (some seeds could not be generated)"
fail=0
for bin in "$out"/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corpus="$out/fuzz-corpus/$name" artifacts="$out/fuzz-artifacts/$name"
	log="$out/test-logs/$name-long.log"
	mkdir -p "$corpus" "$artifacts" "$out/test-logs"
	dirs=("$corpus")
	for d in "tests/fuzz/corpus/$name" "$out/fuzz-seeds/$name"; do
		[ -d "$d" ] && dirs+=("$d")
	done
	nice -n 19 timeout -k 10 $((t + 120)) "$bin" -max_total_time="$t" -max_len=2000000 \
		-rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 \
		"${dirs[@]}" >"$log" 2>&1
	rc=$?
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	files=$(find "$corpus" -type f | wc -l)
	size=$(du -sh "$corpus" | cut -f1)
	if [ $rc -eq 0 ]; then
		printf '   %-20s ok  %ss, %s runs, %s, corpus %s files (%s)\n' "$name" "$t" \
			"${execs:-?}" "${cov:-cov: ?}" "$files" "$size"
	else
		printf '   %-20s FAILED (exit %d, see %s; input in %s)\n' "$name" $rc "$log" "$artifacts"
		grep -E 'ERROR|SUMMARY' "$log" | head -4 | sed 's/^/      /'
		fail=1
	fi
done
exit $fail
