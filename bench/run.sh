#!/usr/bin/env bash
# Runs Stead's benchmarks, prints one table and writes bench/RESULTS.md.
# Every figure is compared with a baseline measured in the same run on this
# machine. No timing here is a test: a missed target is reported, and the
# script still exits 0 when every benchmark ran.
#
#   bench/run.sh                  the full run (at most 30 minutes)
#   BENCH_QUICK=1 bench/run.sh    a smoke run (about 3 minutes)
#   BENCH_ONLY="raft dns"         only these of: raft placement dns podstart failover rollout footprint
#   BENCH_OUT=DIR                 keep logs, data and raw results in DIR
#   BENCH_NICE=-10                run the benchmarks at this niceness, so that
#                                 other work on the machine disturbs them less
#
# Each benchmark is a program under bench/cmd that prints bench.Result JSON
# lines on standard output and its progress on standard error, or a Go
# benchmark that runs real agents (podstart, failover, rollout, footprint:
# as root) and appends its rows to the file its -bench.results flag names.
# To add one, add a case to run_one below and its name to ALL.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL="raft placement dns podstart failover rollout footprint"
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
# As the Makefile builds Stead: encoding/json on Go's v2 implementation.
export GOEXPERIMENT=jsonv2
CGO_ENABLED=0 go build -trimpath -o "$out/bin/stead" ./cmd/stead
go build -o "$out/bin/" ./bench/cmd/...
# The Go benchmarks run from their package's directory (testdata, sources).
CGO_ENABLED=1 go test -c -o "$out/bin/clustertest.test" ./clustertest
CGO_ENABLED=1 go test -c -o "$out/bin/stead.test" ./cmd/stead
CGO_ENABLED=1 go test -c -o "$out/bin/agent.test" ./agent

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
	failover_args=(-bench.node-trials 2 -bench.leader-trials 3)
	rollout_args=(-bench.single-trials 3)
else
	mode=full
	raft_args=(-duration 5s -rounds 5)
	place_args=(-agents 1000,5000 -timeout 3m -rounds 5 -leader-agents 1000)
	dns_args=(-duration 10s -rounds 3)
	failover_args=(-bench.node-trials 10 -bench.leader-trials 20)
	rollout_args=(-bench.single-trials 10)
fi

# gobench DIR BENCHMARK ARGS... runs a Go benchmark of a test binary built
# above from its package directory DIR, its rows going to $out/$name.results.
# It runs under the time limit of run_one.
gobench() {
	local dir=$1 test=$2
	shift 2
	local nice=()
	if [ -n "${BENCH_NICE:-}" ]; then
		nice=(nice -n "$BENCH_NICE")
	fi
	(cd "$dir" && timeout --kill-after=30 "$limit" "${nice[@]}" "$out/bin/$test" -test.run '^$' -test.bench "$@" \
		-test.benchtime 1x -bench.results "$out/$name.results" >&2)
}

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
	podstart)
		limit=300
		cmd=(gobench agent agent.test '^BenchmarkPodStart$')
		;;
	failover)
		limit=900
		cmd=(gobench clustertest clustertest.test '^BenchmarkFailover$' "${failover_args[@]}")
		;;
	rollout)
		limit=400
		cmd=(gobench cmd/stead stead.test '^BenchmarkRollout$' "${rollout_args[@]}")
		;;
	footprint)
		limit=300
		cmd=(gobench cmd/stead stead.test '^BenchmarkFootprint$')
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
	rm -f "$out/$name.results"
	if [ "${cmd[0]}" = gobench ]; then
		"${cmd[@]}" >"$out/$name.jsonl" 2> >(tee "$out/$name.log" >&2) || rc=$?
	else
		if [ -n "${BENCH_NICE:-}" ]; then
			cmd=(nice -n "$BENCH_NICE" "${cmd[@]}")
		fi
		timeout --kill-after=30 "$limit" "${cmd[@]}" >"$out/$name.jsonl" 2> >(tee "$out/$name.log" >&2) || rc=$?
	fi
	cat "$out/$name.jsonl" >>"$results"
	if [ -f "$out/$name.results" ]; then
		cat "$out/$name.results" >>"$results"
	fi
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
