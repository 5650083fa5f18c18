#!/usr/bin/env bash
# Runs Stead's benchmarks, prints one table and writes bench/RESULTS.md.
# Every figure is compared with a baseline measured in the same run on this
# machine. No timing here is a test: a missed target is reported, and the
# script still exits 0 when every benchmark ran.
#
#   bench/run.sh                  the full run (at most 30 minutes)
#   BENCH_QUICK=1 bench/run.sh    a smoke run (about 3 minutes)
#   BENCH_ONLY="raft dns"         only these of: raft placement dns
#   BENCH_OUT=DIR                 keep logs, data and raw results in DIR
#   BENCH_NICE=-10                run the benchmarks at this niceness, so that
#                                 other work on the machine disturbs them less
#
# Each benchmark is a program under bench/cmd that prints bench.Result JSON
# lines on standard output and its progress on standard error. To add one,
# add a case to run_one below and its name to ALL.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL="raft placement dns"
ONLY=${BENCH_ONLY:-$ALL}
QUICK=${BENCH_QUICK:-0}
started=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "${BENCH_OUT:-}" ]; then
	out=$BENCH_OUT
	keep=1
else
	out=$(mktemp -d /tmp/stead-bench.XXXXXX)
	keep=0
fi
mkdir -p "$out/bin"
results="$out/results.jsonl"
: >"$results"

echo "bench: building into $out/bin" >&2
CGO_ENABLED=0 go build -trimpath -o "$out/bin/stead" ./cmd/stead
go build -o "$out/bin/" ./bench/cmd/...

# dnsperf comes from Debian; install it only when it is missing.
case " $ONLY " in *" dns "*)
	if ! command -v dnsperf >/dev/null 2>&1; then
		echo "bench: installing dnsperf" >&2
		if [ "$(id -u)" = 0 ]; then
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf >/dev/null
		else
			sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf >/dev/null
		fi
	fi
	;;
esac

if [ "$QUICK" = 1 ]; then
	mode=quick
	raft_args=(-duration 2s -rounds 1)
	place_args=(-agents 1000 -timeout 60s)
	dns_args=(-duration 3s -rounds 1)
else
	mode=full
	raft_args=(-duration 5s -rounds 3)
	place_args=(-agents 1000,5000 -timeout 3m -follower-agents 1000)
	dns_args=(-duration 10s -rounds 3)
fi

# run_one NAME runs one benchmark with a time limit; a benchmark that fails
# leaves a row saying so.
run_one() {
	local name=$1 limit cmd
	case $name in
	raft)
		limit=300
		cmd=("$out/bin/benchraft" -stead "$out/bin/stead" -dir "$out/raft" "${raft_args[@]}")
		;;
	placement)
		limit=840
		cmd=("$out/bin/benchplace" -stead "$out/bin/stead" -dir "$out/placement" "${place_args[@]}")
		;;
	dns)
		limit=400
		cmd=("$out/bin/benchdns" -dir "$out/dns" "${dns_args[@]}")
		;;
	*)
		echo "bench: unknown benchmark $name (known: $ALL)" >&2
		return 1
		;;
	esac
	# Servers bootstrap new clusters: no data of an earlier run may remain.
	rm -rf "${out:?}/$name"
	mkdir -p "$out/$name"
	echo "bench: $name" >&2
	local rc=0
	if [ -n "${BENCH_NICE:-}" ]; then
		cmd=(nice -n "$BENCH_NICE" "${cmd[@]}")
	fi
	timeout --kill-after=30 "$limit" "${cmd[@]}" >"$out/$name.jsonl" 2> >(tee "$out/$name.log" >&2) || rc=$?
	cat "$out/$name.jsonl" >>"$results"
	if [ "$rc" != 0 ]; then
		echo "bench: $name failed with status $rc; see $out/$name.log" >&2
		keep=1
		printf '{"bench":"%s","name":"run","metric":"exit status","value":%d,"unit":"","target":"exits 0","pass":false,"note":"the benchmark failed; rows above it, if any, are what it measured before"}\n' \
			"$name" "$rc" >>"$results"
	fi
}

for name in $ONLY; do
	run_one "$name"
done

if [ -n "${BENCH_NICE:-}" ]; then
	mode="$mode, niceness $BENCH_NICE"
fi
"$out/bin/benchreport" -results "$results" -out bench/RESULTS.md -mode "$mode" -started "$started" \
	-commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	-load-before "$load_before" -load-after "$(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$keep" = 1 ]; then
	echo "bench: logs, data and raw results in $out" >&2
else
	rm -rf "$out"
fi
