#!/usr/bin/env bash
# Starts `stead dev`, applies the example StatefulSet once the server is
# ready, shows it, and keeps the cluster running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

stead=./bin/stead
data_dir=${DATA_DIR:-./stead-data}
export STEAD_ADDR=${STEAD_ADDR:-127.0.0.1:7470}

"$stead" dev --data-dir "$data_dir" --http-addr "$STEAD_ADDR" &
dev=$!
trap 'kill "$dev" 2>/dev/null; wait "$dev" 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
	if "$stead" version >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$dev" 2>/dev/null; then
		echo "run-dev: stead dev exited; see its log above" >&2
		exit 1
	fi
	sleep 0.2
done

# The first apply may come before the single server has elected itself.
for try in $(seq 1 50); do
	if "$stead" apply -f examples/web.yaml; then
		break
	fi
	[ "$try" -lt 50 ] || exit 1
	sleep 0.2
done
"$stead" get statefulsets,services,pods
echo
echo "Stead is running (API $STEAD_ADDR, state in $data_dir). Try:"
echo "  $stead get pods -o wide --watch"
echo "  $stead exec web-0 -- /webserver get http://web-1.nginx/"
echo "  dig @127.0.0.1 -p 7453 web-0.nginx.default.svc.cluster.local"
echo "Press Ctrl-C to stop."
wait "$dev"
