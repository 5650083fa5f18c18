#!/usr/bin/env bash
# Installs Stead on one host over ssh. See usage below and docs/install.md.
# The scripts run on the host are single-quoted on purpose:
# shellcheck disable=SC2016
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "$0")" && pwd)

usage() {
	cat <<EOF
Usage: $prog --role server|agent [options] [user@]host

Installs Stead on one host over ssh: the binary as /usr/local/bin/stead, the
unit as /etc/systemd/system/stead-ROLE.service, the role's settings in
/etc/stead/ROLE.yaml (which the unit passes as --config) and
/etc/stead/ROLE.env, which the unit also reads, with no extra flags. Then,
when the host runs systemd, it enables the unit and starts or restarts it.

Only files whose content differs are replaced, each atomically; running it
again changes nothing and says so. Every remote command goes through one ssh
connection. A user other than root needs passwordless sudo on the host.

Options:
  --role server|agent    what the host runs (required)
  --servers ADDR,...     servers' API addresses, host[:port] (port 7470 if
                         left out). Agent: the servers it works with
                         (required). Server: servers of the cluster to join;
                         the host's own address is left out of the list
  --addr IP              the host's address for cluster traffic. Server: the
                         API listens on IP:7470 and Raft on IP:7471. Agent:
                         its API listens on IP:7472. Default for a server:
                         the host given, when it is an IP address
  --bootstrap            server: start a new cluster with this server as its
                         first member (the others then join it)
  --bootstrap-expect N   server: form a new cluster once N servers are up
  --node-name NAME       the server's --node-id or the agent's --node-name
                         (default: the host's hostname)
  --data-dir DIR         default /var/lib/stead (server), /var/lib/stead-agent
                         (agent)
  --arg FLAG             one more flag for \`stead ROLE\`, written as
                         --name=value or --name (repeatable)
  --binary PATH          the stead binary to install (default bin/stead)
  --port N               ssh port
  --ssh-opt OPT          an ssh option, passed as -o OPT (repeatable)
  --no-restart           do not restart a running service whose files
                         changed; it takes them up at its next restart
  --dry-run              connect and say what would change; change nothing
  -h, --help             this text

Examples:
  # The first of three servers starts the cluster, the others join it:
  $prog --role server --bootstrap root@10.0.0.1
  $prog --role server --servers 10.0.0.1 root@10.0.0.2
  $prog --role server --servers 10.0.0.1 root@10.0.0.3

  # An agent on each node, knowing every server:
  $prog --role agent --servers 10.0.0.1,10.0.0.2,10.0.0.3 admin@node-7

  # Cluster DNS for the host too, and a key that is not the default:
  $prog --role server --bootstrap --arg --dns-addr=10.0.0.1:53 \\
      --ssh-opt IdentityFile=~/.ssh/stead root@10.0.0.1
EOF
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

usage_error() {
	echo "$prog: $*" >&2
	echo "Run '$prog --help' for usage." >&2
	exit 2
}

# q quotes one word for a POSIX shell.
q() {
	local s=${1//\'/\'\\\'\'}
	printf "'%s'" "$s"
}

# safe_word fails unless $2 can stand in the unit's $STEAD_*_ARGS, which
# systemd splits at whitespace and does not unquote.
safe_word() {
	local re='^[][A-Za-z0-9._:,/=@+%-]+$'
	[[ $2 =~ $re ]] ||
		usage_error "$1 '$2' may hold only letters, digits and ._:,/=@+%[]-"
}

# with_port adds :7470 to an address that has no port.
with_port() {
	local a=$1 port=$2
	case $a in
	\[*\]:*) echo "$a" ;;
	\[*\]) echo "$a:$port" ;;
	*:*:*) echo "[$a]:$port" ;; # a bare IPv6 address
	*:*) echo "$a" ;;
	*) echo "$a:$port" ;;
	esac
}

role='' servers='' addr='' bootstrap=false bootstrap_expect='' node_name='' data_dir=''
binary=bin/stead port='' dry_run=false restart=true root='' systemctl=''
extra=() ssh_opts=()
while [ $# -gt 0 ]; do
	opt=$1
	case $opt in
	-h | --help)
		usage
		exit 0
		;;
	--bootstrap) bootstrap=true ;;
	--dry-run) dry_run=true ;;
	--no-restart) restart=false ;;
	--role | --servers | --addr | --bootstrap-expect | --node-name | --data-dir | --arg | \
		--binary | --port | --ssh-opt | --root | --systemctl)
		[ $# -ge 2 ] || usage_error "$opt needs a value"
		val=$2
		shift
		case $opt in
		--role) role=$val ;;
		--servers) servers=$val ;;
		--addr) addr=$val ;;
		--bootstrap-expect) bootstrap_expect=$val ;;
		--node-name) node_name=$val ;;
		--data-dir) data_dir=$val ;;
		--arg) extra+=("$val") ;;
		--binary) binary=$val ;;
		--port) port=$val ;;
		--ssh-opt) ssh_opts+=(-o "$val") ;;
		# --root DIR puts every remote path under DIR, and --systemctl CMD
		# runs CMD instead of systemctl: for tests, which must not touch
		# the host's own /usr/local/bin, /etc or services.
		--root) root=${val%/} ;;
		--systemctl) systemctl=$val ;;
		esac
		;;
	-*) usage_error "unknown option $opt" ;;
	*)
		[ -z "${dest:-}" ] || usage_error "one host at a time: '$dest' and '$opt'"
		dest=$opt
		;;
	esac
	shift
done

[ -n "${dest:-}" ] || usage_error "no host given"
case $role in
server | agent) ;;
"") usage_error "--role server|agent is required" ;;
*) usage_error "--role is server or agent, not '$role'" ;;
esac
if [ -n "$port" ] && ! [[ $port =~ ^[0-9]+$ ]]; then
	usage_error "--port '$port' is not a port number"
fi
host=${dest#*@}
if [ -z "$addr" ] && [ "$role" = server ]; then
	if [[ $host =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $host == *:* ]]; then
		addr=${host#[}
		addr=${addr%]}
	else
		usage_error "--addr is required when the host ('$host') is not an IP address"
	fi
fi
[ -z "$addr" ] || safe_word --addr "$addr"

if [ "$role" = server ]; then
	[ -z "$bootstrap_expect" ] || [[ $bootstrap_expect =~ ^[1-9][0-9]*$ ]] ||
		usage_error "--bootstrap-expect '$bootstrap_expect' is not a positive number"
	if $bootstrap && [ -n "$bootstrap_expect" ]; then
		usage_error "--bootstrap and --bootstrap-expect exclude each other"
	fi
	# The servers to join or to form the cluster with: --servers without
	# this one.
	join=()
	if [ -n "$servers" ]; then
		IFS=, read -ra list <<<"$servers"
		for s in "${list[@]}"; do
			[ -n "$s" ] || continue
			s=$(with_port "$s" 7470)
			[ "$s" = "$(with_port "$addr" 7470)" ] || join+=("$s")
		done
	fi
	if ! $bootstrap && [ -z "$bootstrap_expect" ] && [ ${#join[@]} -eq 0 ]; then
		usage_error "a server needs --bootstrap (the first server), --bootstrap-expect N or other --servers to join"
	fi
else
	$bootstrap && usage_error "--bootstrap is for servers"
	[ -z "$bootstrap_expect" ] || usage_error "--bootstrap-expect is for servers"
	[ -n "$servers" ] || usage_error "an agent needs --servers"
fi
[ -z "$servers" ] || safe_word --servers "$servers"
[ -z "$node_name" ] || safe_word --node-name "$node_name"
if [ -z "$data_dir" ]; then
	data_dir=/var/lib/stead
	[ "$role" = server ] || data_dir=/var/lib/stead-agent
fi
safe_word --data-dir "$data_dir"
for a in "${extra[@]}"; do
	[[ $a == --?* ]] || usage_error "--arg '$a' is not a flag (--name=value or --name)"
	safe_word --arg "$a"
done
[ -f "$binary" ] || die "binary $binary not found: run 'make build' or pass --binary"
unit_src=$here/systemd/stead-$role.service
[ -f "$unit_src" ] || die "$unit_src not found: run $prog from a Stead source tree"

work=$(mktemp -d "${TMPDIR:-/tmp}/stead-install.XXXXXX")
ctl=$work/ssh
ssh_cmd=(ssh -o BatchMode=yes -o ControlPath="$ctl")
[ -z "$port" ] || ssh_cmd+=(-p "$port")
ssh_cmd+=("${ssh_opts[@]}")
cleanup() {
	if [ -S "$ctl" ]; then
		"${ssh_cmd[@]}" -O exit "$dest" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# One connection for everything; it ends with the script (ControlPersist
# also ends it a minute after a script that was killed).
# Its output goes to a file, so that it does not hold our stdout open.
if ! "${ssh_cmd[@]}" -o ControlMaster=yes -o ControlPersist=60 -f -N "$dest" >"$work/ssh.log" 2>&1; then
	cat "$work/ssh.log" >&2
	die "cannot ssh to $dest"
fi

sudo=
# remote SCRIPT ARG... runs the sh script SCRIPT on the host, as root, with
# the ARGs as $1...; its stdin is ours.
remote() {
	local cmd
	cmd="${sudo}sh -c $(q "$1") sh"
	shift
	local a
	for a in "$@"; do
		cmd+=" $(q "$a")"
	done
	"${ssh_cmd[@]}" "$dest" "$cmd"
}

uid=$(remote 'id -u' </dev/null)
if [ "$uid" != 0 ]; then
	sudo='sudo -n '
	remote true </dev/null 2>/dev/null || die "$dest: not root and 'sudo -n' fails: log in as root or allow sudo without a password"
fi

if [ -z "$node_name" ]; then
	node_name=$(remote 'uname -n' </dev/null | tr '[:upper:]' '[:lower:]')
	[[ $node_name =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] ||
		die "$dest: hostname '$node_name' is not a usable node name; pass --node-name"
fi

# The role's flags, in order, as name and value; a value of "" means a flag
# without one (a bool).
names=() values=()
flag() {
	names+=("$1")
	values+=("${2-}")
}
if [ "$role" = server ]; then
	flag node-id "$node_name"
	flag data-dir "$data_dir"
	http_addr=$(with_port "$addr" 7470)
	flag http-addr "$http_addr"
	flag raft-addr "$(with_port "$addr" 7471)"
	$bootstrap && flag bootstrap
	[ -z "$bootstrap_expect" ] || flag bootstrap-expect "$bootstrap_expect"
	if [ ${#join[@]} -gt 0 ]; then
		flag join "$(IFS=,; echo "${join[*]}")"
		flag retry-join
	fi
else
	list=()
	IFS=, read -ra list <<<"$servers"
	all=()
	for s in "${list[@]}"; do
		[ -z "$s" ] || all+=("$(with_port "$s" 7470)")
	done
	flag servers "$(IFS=,; echo "${all[*]}")"
	flag node-name "$node_name"
	flag data-dir "$data_dir"
	[ -z "$addr" ] || flag agent-addr "$(with_port "$addr" 7472)"
fi
for a in "${extra[@]}"; do
	a=${a#--}
	case $a in
	*=*) flag "${a%%=*}" "${a#*=}" ;;
	*) flag "$a" ;;
	esac
done

# The environment file the unit reads: no extra flags. It replaces the
# flags earlier versions of this script wrote there, which now are in the
# YAML file.
var=STEAD_$(echo "$role" | tr '[:lower:]' '[:upper:]')_ARGS
{
	echo "# Flags of \`stead $role\` that override /etc/stead/$role.yaml, read by"
	echo "# stead-$role.service. Written by deploy/install.sh; the next run replaces it."
	echo "$var=\"\""
} >"$work/env"

# The settings as YAML, keyed by flag name, which the unit passes as
# --config: lists for flags that take several values or are given more than
# once.
{
	echo "# The settings of \`stead $role\`, keyed by flag name, read by"
	echo "# stead-$role.service (--config /etc/stead/$role.yaml)."
	echo "# Written by deploy/install.sh; the next run replaces it."
	done_names=" "
	for i in "${!names[@]}"; do
		n=${names[$i]}
		[[ $done_names == *" $n "* ]] && continue
		done_names+="$n "
		vals=()
		for j in "${!names[@]}"; do
			[ "${names[$j]}" != "$n" ] || vals+=("${values[$j]}")
		done
		if [ -z "${vals[0]}" ]; then
			echo "$n: true"
		elif [ "$n" = join ] || [ "$n" = servers ] || [ ${#vals[@]} -gt 1 ]; then
			echo "$n:"
			for v in "${vals[@]}"; do
				IFS=, read -ra parts <<<"$v"
				[ "$n" = join ] || [ "$n" = servers ] || parts=("$v")
				for p in "${parts[@]}"; do
					echo "  - \"$p\""
				done
			done
		elif [[ ${vals[0]} =~ ^[0-9]+$ ]]; then
			echo "$n: ${vals[0]}"
		else
			echo "$n: \"${vals[0]}\""
		fi
	done
} >"$work/yaml"

# What to install: source, destination, mode.
bin_dst=$root/usr/local/bin/stead
env_dst=$root/etc/stead/$role.env
yaml_dst=$root/etc/stead/$role.yaml
unit_dst=$root/etc/systemd/system/stead-$role.service
files=(
	"$binary" "$bin_dst" 755
	"$work/env" "$env_dst" 600
	"$work/yaml" "$yaml_dst" 600
	"$unit_src" "$unit_dst" 644
)

# Which systemctl to run, if any: none when the host has no systemd, nor
# when installing under --root without --systemctl.
if [ -n "$systemctl" ]; then
	sc=$systemctl
elif [ -z "$root" ]; then
	sc=$(remote '[ -d /run/systemd/system ] && command -v systemctl || true' </dev/null)
else
	sc=
fi

# The installed files' checksums and modes, and the unit's state, at once.
dsts=()
for ((i = 0; i < ${#files[@]}; i += 3)); do
	dsts+=("${files[i + 1]}")
done
state=$(remote '
sc=$1 unit=$2
shift 2
for f in "$@"; do
	if [ -f "$f" ]; then
		echo "$(sha256sum <"$f" | cut -c1-64) $(stat -c %a "$f")"
	else
		echo "- -"
	fi
done
if [ -n "$sc" ]; then
	echo "$($sc is-enabled "$unit" 2>/dev/null || true)"
	echo "$($sc is-active "$unit" 2>/dev/null || true)"
fi
' "$sc" "stead-$role.service" "${dsts[@]}" </dev/null)
mapfile -t have <<<"$state"

install_file='
set -eu
dst=$1 mode=$2 sum=$3
dir=$(dirname "$dst")
mkdir -p "$dir"
tmp=$(mktemp "$dir/.stead-install.XXXXXX")
trap '\''rm -f "$tmp"'\'' EXIT
cat >"$tmp"
got=$(sha256sum <"$tmp" | cut -c1-64)
if [ "$got" != "$sum" ]; then
	echo "copy of $dst arrived with sha256 $got, not $sum" >&2
	exit 1
fi
chmod "$mode" "$tmp"
sync "$tmp"
mv -f "$tmp" "$dst"
sync "$dir"
'

verb=updated
$dry_run && verb="would update"
echo "$prog: $role $node_name on $dest"
changed=()
for ((i = 0; i < ${#files[@]}; i += 3)); do
	src=${files[i]} dst=${files[i + 1]} mode=${files[i + 2]}
	sum=$(sha256sum <"$src" | cut -c1-64)
	if [ "${have[i / 3]}" = "$sum $mode" ]; then
		echo "  unchanged $dst"
		continue
	fi
	$dry_run || remote "$install_file" "$dst" "$mode" "$sum" <"$src"
	echo "  $verb $dst (sha256 ${sum:0:12}, mode $mode)"
	changed+=("$dst")
done

# Bring the service in line: reload units if the unit changed, enable it,
# start it, or restart it for a changed binary, unit, settings or flags.
unit=stead-$role.service
unit_changed=false restart_needed=false
for c in "${changed[@]}"; do
	[ "$c" != "$unit_dst" ] || unit_changed=true
	case $c in "$bin_dst" | "$env_dst" | "$yaml_dst" | "$unit_dst") restart_needed=true ;; esac
done
actions=()
if [ -n "$sc" ]; then
	enabled=${have[${#files[@]} / 3]}
	active=${have[${#files[@]} / 3 + 1]}
	if $unit_changed; then actions+=("daemon-reload"); fi
	[ "$enabled" = enabled ] || actions+=("enable $unit")
	if [ "$active" != active ]; then
		actions+=("start $unit")
	elif $restart_needed; then
		if $restart; then
			actions+=("restart $unit")
		else
			echo "  not restarted (--no-restart): $unit runs the old files until it restarts"
		fi
	fi
	for a in "${actions[@]}"; do
		if $dry_run; then
			echo "  would run: systemctl $a"
		else
			# shellcheck disable=SC2086 # $a is a verb and a unit name
			remote '"$@"' "$sc" $a </dev/null
			echo "  ran: systemctl $a"
		fi
	done
elif $restart_needed; then
	why="no systemd on $dest"
	[ -z "$root" ] || why="installing under --root $root"
	echo "  $why, so nothing was started; on a host with systemd, run:"
	echo "    systemctl daemon-reload && systemctl enable $unit && systemctl restart $unit"
fi

n=$((${#changed[@]} + ${#actions[@]}))
if [ "$n" -eq 0 ]; then
	echo "$prog: $dest: no changes"
elif $dry_run; then
	echo "$prog: $dest: $n changes to make (dry run: nothing changed)"
else
	echo "$prog: $dest: $n changes made"
fi
