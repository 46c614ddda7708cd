#!/usr/bin/env bash
# Switchyard benchmark: builds everything in release, starts its own Redis, FerretDB, MailDev,
# services and gateways (with switchyard-launch, from the definitions the tests use), a Centrifugo
# cluster (Redis engine) and the bare broadcast server, each on free loopback ports, runs the same
# loadgen scenarios against each several times, and writes the medians to docs/benchmarks.md.
#
#   tests/loadgen/bench.sh            (or ./stack bench)
#
# Sizes can be changed through the BENCH_* variables below, e.g. BENCH_RUNS=1 BENCH_IDLE_LARGE=0
# for a quick look; BENCH_SYSTEMS and BENCH_SCENARIOS re-measure a subset, and BENCH_SKIP_BUILD=1
# keeps the release binaries of an earlier run. Nothing here touches a stack started with `./stack up` (other ports) or the
# end-to-end tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd -P)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard/target}"
SY_CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
[[ -d $HOME/.cargo/bin ]] && PATH="$HOME/.cargo/bin:$PATH"
[[ -d /usr/local/go/bin ]] && PATH="$PATH:/usr/local/go/bin"
export PATH

# ---------------------------------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------------------------------

RUNS="${BENCH_RUNS:-3}"                        # runs per figure; the median is reported
IDLE_SMALL="${BENCH_IDLE_SMALL:-10000}"        # idle connections on one server
IDLE_LARGE="${BENCH_IDLE_LARGE:-50000}"        # idle connections over NODES_LARGE servers (0: skip)
NODES_LARGE="${BENCH_NODES_LARGE:-3}"          # one process holds < 20k sockets under this fd limit
IDLE_SECS="${BENCH_IDLE_SECS:-10}"
IDLE_USERS="${BENCH_IDLE_USERS:-100}"
FANOUT_CONNECTIONS="${BENCH_FANOUT_CONNECTIONS:-1000}"
FANOUT_GROUP="${BENCH_FANOUT_GROUP:-500}"
# Messages/s sent in total; each reaches GROUP-1 members. Every Switchyard message is stored by
# chat-service before it is delivered, and FerretDB on SQLite sustains only a few dozen a second
# here, so the fan-out load comes from large groups rather than many messages.
FANOUT_RATE="${BENCH_FANOUT_RATE:-10}"
DIRECT_CONNECTIONS="${BENCH_DIRECT_CONNECTIONS:-200}"
DIRECT_RATE="${BENCH_DIRECT_RATE:-10}"
TRAFFIC_SECS="${BENCH_TRAFFIC_SECS:-30}"
# Unrecorded traffic each system gets before its first fixed-rate run (0: none). The first messages
# after a start are partly the system's own warm-up: the indexed database compiles its hot paths
# as they run, and the first Switchyard run without it had a p99 a third above the runs after it.
WARMUP_SECS="${BENCH_WARMUP_SECS:-10}"
# Capacity (`loadgen direct|fanout --capacity`): the rate rises by CAPACITY_FACTOR per step of
# CAPACITY_STEP_SECS from CAPACITY_START until p99 passes CAPACITY_P99_MS or anything is refused or
# lost; then one step at 3x the rate held and a recovery step at half of it.
CAPACITY_DIRECT_CONNECTIONS="${BENCH_CAPACITY_DIRECT_CONNECTIONS:-200}"
CAPACITY_FANOUT_CONNECTIONS="${BENCH_CAPACITY_FANOUT_CONNECTIONS:-500}"
CAPACITY_GROUP="${BENCH_CAPACITY_GROUP:-50}"
# Which capacity ramps the capacity scenario runs: direct (one-to-one), fanout (groups), or both.
CAPACITY_SHAPES="${BENCH_CAPACITY_SHAPES:-direct fanout}"
CAPACITY_START="${BENCH_CAPACITY_START:-20}"
CAPACITY_FACTOR="${BENCH_CAPACITY_FACTOR:-1.5}"
CAPACITY_MAX="${BENCH_CAPACITY_MAX:-10000}"
CAPACITY_STEP_SECS="${BENCH_CAPACITY_STEP_SECS:-5}"
CAPACITY_RECOVERY_SECS="${BENCH_CAPACITY_RECOVERY_SECS:-10}"
CAPACITY_P99_MS="${BENCH_CAPACITY_P99_MS:-100}"
ACCOUNTS="${BENCH_ACCOUNTS:-100}"              # sign-up storm (this product only)
SOURCE_IPS="${BENCH_SOURCE_IPS:-127.0.0.1-127.0.0.20}"
# centrifugo-history is Centrifugo keeping each channel's messages (history_size, history_ttl), as
# Switchyard stores every message; it runs every scenario but the idle connections.
SYSTEMS="${BENCH_SYSTEMS:-switchyard centrifugo centrifugo-history bare}"   # a subset re-measures some systems only
SCENARIOS="${BENCH_SCENARIOS:-idle fanout direct accounts capacity}"
# The product's database: ferretdb (FerretDB 1.24 on SQLite, as the tests use), or indexed
# (tests/loadgen/indexed-database/run: an in-memory server that uses its indexes, to measure what
# the product holds when the database is not the limit).
DATABASE="${BENCH_DATABASE:-ferretdb}"
OUT_DOC="${BENCH_DOC:-$ROOT/docs/benchmarks.md}"

CENTRIFUGO_VERSION=5.4.9
CENTRIFUGO_MODULE=github.com/centrifugal/centrifugo/v5
CENTRIFUGO_SECRET=loadgen-secret

BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
LOGS="$WORK/logs"
RESULTS="$WORK/results"
mkdir -p "$LOGS" "$RESULTS"

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------------------------------------------
# Processes this script starts: every one is recorded and killed on exit, by pid.
# ---------------------------------------------------------------------------------------------------

declare -A PID=()

cleanup() {
	local name dir
	# The launcher's deployments: everything each started, by its pid files.
	for dir in "$WORK/product" "$WORK/centrifugo"; do
		[[ -d $dir/pids ]] && launch "$dir" down 2>/dev/null
	done
	for name in "${!PID[@]}"; do
		kill "${PID[$name]}" 2>/dev/null || true
	done
	sleep 1
	for name in "${!PID[@]}"; do
		kill -9 "${PID[$name]}" 2>/dev/null || true
	done
	log "logs and raw reports kept in $WORK"
}
trap cleanup EXIT

# launch DIR ARGS...: the launcher (launcher/), which owns how Redis, FerretDB, MailDev and the
# services are started and checked, on the deployment in DIR. The caller's external-server
# variables are dropped: the benchmark measures its own servers only.
launch() {
	local dir=$1
	shift
	env -u SWITCHYARD__REDIS__URL -u MONGODB_URI -u SWITCHYARD__MONGODB__URI -u SWITCHYARD__SMTP__HOST \
		"$BIN/switchyard-launch" --dir "$dir" "$@"
}

# The product's deployment: its ports, and its settings for every service.
PRODUCT=()
SY_ENV=(
	--env SWITCHYARD__MONGODB__DATABASE=switchyard
	--env SWITCHYARD__LOG__FILTER=warn
	# The idle and storm scenarios log thousands of connections in as a hundred users: the
	# per-account connection limit (20 by default) is not what they measure.
	--env SWITCHYARD__GATEWAY__MAX_CONNECTIONS_PER_USER=1000000
	# The capacity scenarios send up to thousands of messages a second from 200 to 500 users, and
	# the fan-out set-up adds 499 members from one account: one user's budget (10 messages/s) and
	# one connection's (20 frames/s) would refuse them before the system is full, and those limits
	# are not what the scenarios measure.
	--env SWITCHYARD__GATEWAY__USER_LIMITS__SEND__PER_SEC=100000
	--env SWITCHYARD__GATEWAY__USER_LIMITS__SEND__BURST=100000
	--env SWITCHYARD__GATEWAY__RATE_PER_SEC=100000
	--env SWITCHYARD__GATEWAY__RATE_BURST=100000
)

# start NAME COMMAND...: runs COMMAND in the background, logging to $LOGS/NAME.log.
start() {
	local name=$1
	shift
	"$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	PID[$name]=$!
}

# stop NAME...: SIGTERM, a bounded wait, then SIGKILL.
stop() {
	local name pid i
	for name in "$@"; do
		pid=${PID[$name]:-}
		[[ -n $pid ]] || continue
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		unset "PID[$name]"
	done
}

port_open() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
}

# Ports come from below the ephemeral range (32768+), which the load generator's client
# sockets use up by the tens of thousands, and away from ./stack up's fixed ports.
declare -A USED_PORTS=()
PORT=0
pick_port() {
	local p i
	for ((i = 0; i < 1000; i++)); do
		p=$((21000 + RANDOM % 11000))
		[[ -z ${USED_PORTS[$p]:-} ]] || continue
		port_open "$p" && continue
		USED_PORTS[$p]=1
		PORT=$p
		return 0
	done
	die "no free loopback port found"
}

# wait_until NAME WHAT COMMAND...: polls COMMAND for up to 60 s while NAME is alive.
wait_until() {
	local name=$1 what=$2 i
	shift 2
	for ((i = 0; i < 300; i++)); do
		"$@" && return 0
		kill -0 "${PID[$name]}" 2>/dev/null || {
			tail -n 20 "$LOGS/$name.log" >&2
			die "$name exited before $what"
		}
		sleep 0.2
	done
	tail -n 20 "$LOGS/$name.log" >&2
	die "$name: no $what within 60 s"
}

http_ok() { [[ $(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$1" 2>/dev/null) == 200 ]]; }

# ---------------------------------------------------------------------------------------------------
# Install and build
# ---------------------------------------------------------------------------------------------------

install_centrifugo() {
	CENTRIFUGO_BIN="${BENCH_CENTRIFUGO_BIN:-$SY_CACHE/bin/centrifugo}"
	if [[ -x $CENTRIFUGO_BIN ]] && "$CENTRIFUGO_BIN" version 2>/dev/null | grep -q "v$CENTRIFUGO_VERSION"; then
		return 0
	fi
	command -v go >/dev/null 2>&1 || die "Centrifugo is built from source with Go; install Go or set BENCH_CENTRIFUGO_BIN"
	log "building Centrifugo $CENTRIFUGO_VERSION into $CENTRIFUGO_BIN (first run only)"
	# A throwaway module: `go install module@version` needs the proxy's version list, which may be refused.
	local tmp
	tmp=$(mktemp -d)
	if (
		cd "$tmp" &&
			go mod init centrifugo-build >/dev/null &&
			go get "$CENTRIFUGO_MODULE@v$CENTRIFUGO_VERSION" &&
			go build -buildvcs=false \
				-ldflags "-X $CENTRIFUGO_MODULE/internal/build.Version=$CENTRIFUGO_VERSION" \
				-o "$tmp/centrifugo" "$CENTRIFUGO_MODULE"
	); then
		mkdir -p "$(dirname "$CENTRIFUGO_BIN")"
		mv -f "$tmp/centrifugo" "$CENTRIFUGO_BIN"
	fi
	chmod -R u+w "$tmp" 2>/dev/null || true
	rm -rf "$tmp"
	[[ -x $CENTRIFUGO_BIN ]] || die "could not build Centrifugo $CENTRIFUGO_VERSION"
}

install_all() {
	if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
		log "installing what is missing (./stack install)"
		"$ROOT/stack" install
	fi
	REDIS_BIN="${SWITCHYARD_REDIS_BIN:-$(command -v redis-server || echo /usr/bin/redis-server)}"
	FERRETDB_BIN="${SWITCHYARD_FERRETDB_BIN:-$SY_CACHE/bin/ferretdb}"
	case $DATABASE in
	ferretdb) ;;
	indexed)
		FERRETDB_BIN="$ROOT/tests/loadgen/indexed-database/run"
		export SWITCHYARD_FERRETDB_BIN=$FERRETDB_BIN
		;;
	*) die "BENCH_DATABASE must be ferretdb or indexed, not $DATABASE" ;;
	esac
	MAILDEV_BIN="${SWITCHYARD_MAILDEV_BIN:-$SY_CACHE/maildev/node_modules/.bin/maildev}"
	for bin in "$REDIS_BIN" "$FERRETDB_BIN" "$MAILDEV_BIN"; do
		[[ -x $bin ]] || die "$bin is missing after ./stack install"
	done
	install_centrifugo
	if [[ -n ${BENCH_SKIP_BUILD:-} ]]; then
		# Re-measuring with the binaries of an earlier run, unchanged.
		log "BENCH_SKIP_BUILD is set: using the release binaries in $BIN as they are"
	else
		log "cargo build --release --workspace --bins"
		cargo build --release --workspace --bins || die "cargo build --release failed"
	fi
	for bin in gateway auth-service chat-service mailer switchyard-launch loadgen bare-broadcast; do
		[[ -x $BIN/$bin ]] || die "the release build did not produce $BIN/$bin"
	done
}

# ---------------------------------------------------------------------------------------------------
# The systems under test
# ---------------------------------------------------------------------------------------------------

# This product: its own Redis, FerretDB and MailDev, two auth-services, a chat-service, a mailer.
start_product_backend() {
	pick_port && SY_REDIS_PORT=$PORT
	pick_port && SY_MONGO_PORT=$PORT
	pick_port && SY_SMTP_PORT=$PORT
	pick_port && SY_MAILDEV_PORT=$PORT
	pick_port && SY_FILES_PORT=$PORT
	PRODUCT=("$WORK/product" --redis-port "$SY_REDIS_PORT" --ferretdb-port "$SY_MONGO_PORT"
		--smtp-port "$SY_SMTP_PORT" --maildev-web-port "$SY_MAILDEV_PORT" --files-port "$SY_FILES_PORT"
		--auth-replicas 2 --chat-replicas 1 --mailer-replicas 1)
	launch "${PRODUCT[@]}" up --only redis,ferretdb,maildev,backends --redis-max-clients 100000 \
		--bin-dir "$BIN" --root "$ROOT" --port-timeout 60 "${SY_ENV[@]}" ||
		die "the product did not start (logs in $WORK/product/logs)"
}

# start_servers SYSTEM COUNT: COUNT fresh servers of SYSTEM; sets SERVER_PORTS and SERVER_PIDS.
start_servers() {
	local system=$1 count=$2 i name
	SERVER_PORTS=()
	SERVER_PIDS=()
	for ((i = 0; i < count; i++)); do
		pick_port
		name="$system-$i"
		case $system in
		switchyard)
			launch "${PRODUCT[@]}" --gateway-port "$PORT" up --only gateways --bin-dir "$BIN" \
				--root "$ROOT" "${SY_ENV[@]}" || die "gateway-$PORT did not start"
			SERVER_PORTS+=("$PORT")
			SERVER_PIDS+=("$(launch "${PRODUCT[@]}" pid "gateway-$PORT")")
			continue
			;;
		centrifugo | centrifugo-history)
			centrifugo_config "$PORT" "$system" >"$WORK/$name.json"
			start "$name" "$CENTRIFUGO_BIN" --config "$WORK/$name.json"
			wait_until "$name" "health" http_ok "http://127.0.0.1:$PORT/health"
			;;
		bare)
			start "$name" "$BIN/bare-broadcast" --listen "127.0.0.1:$PORT"
			wait_until "$name" "listening" port_open "$PORT"
			;;
		esac
		SERVER_PORTS+=("$PORT")
		SERVER_PIDS+=("${PID[$name]}")
	done
}

stop_servers() {
	local system=$1 i port
	if [[ $system == switchyard ]]; then
		for port in "${SERVER_PORTS[@]}"; do launch "${PRODUCT[@]}" stop "gateway-$port"; done
		return 0
	fi
	for ((i = 0; i < 8; i++)); do stop "$system-$i"; done
}

# Centrifugo's Redis: the same definition as the product's, in a deployment of its own.
start_centrifugo_redis() {
	pick_port && CF_REDIS_PORT=$PORT
	launch "$WORK/centrifugo" --redis-port "$CF_REDIS_PORT" up --only redis --redis-max-clients 100000 \
		--port-timeout 60 || die "Centrifugo's Redis did not start (logs in $WORK/centrifugo/logs)"
}

# centrifugo_config PORT SYSTEM: Centrifugo with its Redis engine, HMAC tokens, and a namespace
# clients may publish to; for centrifugo-history that namespace also keeps the last messages of each
# channel in Redis (a stream per channel), so that each publication is stored as Switchyard stores
# each message. The size and lifetime are large enough that no message of a run is dropped early.
centrifugo_config() {
	local history=""
	if [[ $2 == centrifugo-history ]]; then
		history=', "history_size": 10000, "history_ttl": "600s"'
	fi
	cat <<EOF
{
  "address": "127.0.0.1",
  "port": $1,
  "engine": "redis",
  "redis_address": "redis://127.0.0.1:$CF_REDIS_PORT",
  "token_hmac_secret_key": "$CENTRIFUGO_SECRET",
  "api_key": "bench-$RANDOM$RANDOM",
  "health": true,
  "log_level": "error",
  "namespaces": [
    {"name": "lg", "allow_subscribe_for_client": true, "allow_publish_for_client": true$history}
  ]
}
EOF
}

# ---------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------

LOADGEN_COMMANDS=()

# loadgen OUT ARGS...: one loadgen run; a failed run is logged and its report left out.
loadgen() {
	local out=$1
	shift
	mkdir -p "$out"
	LOADGEN_COMMANDS+=("loadgen $*")
	printf 'loadgen %s --out %s --source-ips %s\n' "$*" "$out" "$SOURCE_IPS" >"$out/command.txt"
	if ! "$BIN/loadgen" "$@" --out "$out" --source-ips "$SOURCE_IPS" >"$out/loadgen.log" 2>&1; then
		log "a loadgen run failed (see $out/loadgen.log): loadgen $*"
		tail -n 5 "$out/loadgen.log" >&2 || true
	fi
}

protocol_args() {
	case $1 in
	switchyard) echo "--protocol switchyard --maildev http://127.0.0.1:$SY_MAILDEV_PORT --accounts-file $WORK/accounts.json" ;;
	centrifugo | centrifugo-history) echo "--protocol centrifugo --centrifugo-secret $CENTRIFUGO_SECRET" ;;
	bare) echo "--protocol bare" ;;
	esac
}

watch_args() {
	case $1 in
	switchyard)
		local -a names=(chat-service auth-service-1 auth-service-2 ferretdb redis) pids
		mapfile -t pids < <(launch "${PRODUCT[@]}" pid "${names[@]}")
		local i watch=""
		for i in "${!names[@]}"; do watch+="${watch:+,}${names[i]}=${pids[i]}"; done
		echo "--watch $watch"
		;;
	centrifugo | centrifugo-history) echo "--watch redis=$(launch "$WORK/centrifugo" pid redis)" ;;
	bare) echo "" ;;
	esac
}

# idle SYSTEM CONNECTIONS NODES RUN: CONNECTIONS idle connections over NODES fresh servers, one
# loadgen process per server (each process stays under the open-file limit).
idle_run() {
	local system=$1 connections=$2 nodes=$3 run=$4 i per out
	start_servers "$system" "$nodes"
	per=$(((connections + nodes - 1) / nodes))
	local -a waits=()
	for ((i = 0; i < nodes; i++)); do
		out="$RESULTS/$system/idle-$connections/run$run/part$i"
		# shellcheck disable=SC2046 # word splitting of the argument lists is intended
		loadgen "$out" idle --target "ws://127.0.0.1:${SERVER_PORTS[i]}" --gateway-pids "${SERVER_PIDS[i]}" \
			--connections "$per" --users "$IDLE_USERS" --duration "$IDLE_SECS" --concurrency 256 \
			--max-runtime 900 --run-id "idle$connections-$run-$i" $(protocol_args "$system") &
		waits+=($!)
	done
	for i in "${waits[@]}"; do wait "$i" || true; done
	stop_servers "$system"
}

# traffic_run SYSTEM SCENARIO RUN: one fixed-rate run of fanout or direct on a fresh server; RUN
# `warmup` is the shorter run before the first, kept apart from the runs measured.
traffic_run() {
	local system=$1 scenario=$2 run=$3 out
	start_servers "$system" 1
	out="$RESULTS/$system/$scenario/run$run"
	local secs=$TRAFFIC_SECS
	if [[ $run == warmup ]]; then
		out="$RESULTS/$system/warmup-$scenario"
		secs=$WARMUP_SECS
	fi
	local -a args
	if [[ $scenario == fanout ]]; then
		args=(fanout --connections "$FANOUT_CONNECTIONS" --group-size "$FANOUT_GROUP" --rate "$FANOUT_RATE")
	else
		args=(direct --connections "$DIRECT_CONNECTIONS" --rate "$DIRECT_RATE")
	fi
	# shellcheck disable=SC2046
	loadgen "$out" "${args[@]}" --target "ws://127.0.0.1:${SERVER_PORTS[0]}" --gateway-pids "${SERVER_PIDS[0]}" \
		--duration "$secs" --max-runtime 900 --run-id "$scenario-$run" \
		$(protocol_args "$system") $(watch_args "$system")
	stop_servers "$system"
}

# capacity_run SYSTEM SHAPE RUN: the highest rate of one-to-one (direct) or group (fanout)
# messages held, then the overload and recovery steps, on one fresh server.
capacity_run() {
	local system=$1 shape=$2 run=$3 out
	start_servers "$system" 1
	out="$RESULTS/$system/capacity-$shape/run$run"
	local -a args
	if [[ $shape == fanout ]]; then
		args=(fanout --connections "$CAPACITY_FANOUT_CONNECTIONS" --group-size "$CAPACITY_GROUP")
	else
		args=(direct --connections "$CAPACITY_DIRECT_CONNECTIONS")
	fi
	# shellcheck disable=SC2046
	loadgen "$out" "${args[@]}" --capacity --rate "$CAPACITY_START" --step-factor "$CAPACITY_FACTOR" \
		--max-rate "$CAPACITY_MAX" --step-secs "$CAPACITY_STEP_SECS" --recovery-secs "$CAPACITY_RECOVERY_SECS" \
		--p99-limit-ms "$CAPACITY_P99_MS" --target "ws://127.0.0.1:${SERVER_PORTS[0]}" \
		--gateway-pids "${SERVER_PIDS[0]}" --max-runtime 1200 --run-id "capacity-$shape-$run" \
		$(protocol_args "$system") $(watch_args "$system")
	stop_servers "$system"
}

# wanted WORD LIST: WORD is one of the words of LIST.
wanted() { [[ " $2 " == *" $1 "* ]]; }

run_system() {
	local system=$1 run
	wanted "$system" "$SYSTEMS" || return 0
	log "== $system"
	if ((WARMUP_SECS > 0)); then
		for scenario in fanout direct; do
			if wanted "$scenario" "$SCENARIOS"; then
				log "$system: $scenario, warming up for ${WARMUP_SECS}s (not recorded)"
				traffic_run "$system" "$scenario" warmup
			fi
		done
	fi
	for ((run = 1; run <= RUNS; run++)); do
		# Centrifugo with history differs from Centrifugo only where messages are kept: it runs
		# everything but the idle connections.
		if [[ $system != centrifugo-history ]] && wanted idle "$SCENARIOS"; then
			log "$system: idle $IDLE_SMALL, run $run"
			idle_run "$system" "$IDLE_SMALL" 1 "$run"
			if ((IDLE_LARGE > 0)); then
				log "$system: idle $IDLE_LARGE over $NODES_LARGE servers, run $run"
				idle_run "$system" "$IDLE_LARGE" "$NODES_LARGE" "$run"
			fi
		fi
		if wanted fanout "$SCENARIOS"; then
			log "$system: fanout, run $run"
			traffic_run "$system" fanout "$run"
		fi
		if wanted direct "$SCENARIOS"; then
			log "$system: direct, run $run"
			traffic_run "$system" direct "$run"
		fi
		if wanted capacity "$SCENARIOS"; then
			log "$system: capacity, one-to-one and groups, run $run"
			if wanted direct "$CAPACITY_SHAPES"; then capacity_run "$system" direct "$run"; fi
			if wanted fanout "$CAPACITY_SHAPES"; then capacity_run "$system" fanout "$run"; fi
		fi
	done
}

# ---------------------------------------------------------------------------------------------------

main() {
	local hard soft
	hard=$(ulimit -Hn)
	ulimit -n "$hard" 2>/dev/null || true
	soft=$(ulimit -n)
	log "open-file limit: $soft (hard $hard)"
	((soft >= 20000)) || log "warning: an open-file limit of $soft caps connections per process"

	install_all
	local started_at
	started_at=$(date -u '+%Y-%m-%d %H:%M UTC')

	if wanted switchyard "$SYSTEMS"; then
		prepare_product
	fi
	run_system switchyard
	if wanted centrifugo "$SYSTEMS" || wanted centrifugo-history "$SYSTEMS"; then
		start_centrifugo_redis
	fi
	run_system centrifugo
	run_system centrifugo-history
	run_system bare
	summarize "$started_at" "$soft"
}

prepare_product() {
	start_product_backend
	# Sign up every user the product runs need once, through the real flow, and keep them.
	local users=$IDLE_USERS
	if wanted fanout "$SCENARIOS" && ((FANOUT_CONNECTIONS > users)); then users=$FANOUT_CONNECTIONS; fi
	if wanted direct "$SCENARIOS" && ((DIRECT_CONNECTIONS > users)); then users=$DIRECT_CONNECTIONS; fi
	if wanted capacity "$SCENARIOS" && ((CAPACITY_DIRECT_CONNECTIONS > users)); then users=$CAPACITY_DIRECT_CONNECTIONS; fi
	if wanted capacity "$SCENARIOS" && ((CAPACITY_FANOUT_CONNECTIONS > users)); then users=$CAPACITY_FANOUT_CONNECTIONS; fi
	start_servers switchyard 1
	log "switchyard: signing up $users users (Argon2id; takes a while)"
	# shellcheck disable=SC2046
	loadgen "$RESULTS/switchyard/prepare" storm --connections 1 --users "$users" \
		--target "ws://127.0.0.1:${SERVER_PORTS[0]}" --max-runtime 1200 --signup-concurrency 16 \
		$(protocol_args switchyard)
	[[ -s $WORK/accounts.json ]] || die "signing up the benchmark users failed (see $RESULTS/switchyard/prepare)"
	if wanted accounts "$SCENARIOS"; then
		log "switchyard: sign-up storm of $ACCOUNTS accounts"
		loadgen "$RESULTS/switchyard/accounts" accounts --connections "$ACCOUNTS" --concurrency 16 \
			--target "ws://127.0.0.1:${SERVER_PORTS[0]}" --maildev "http://127.0.0.1:$SY_MAILDEV_PORT" \
			--max-runtime 900 --run-id "accounts"
	fi
	stop_servers switchyard
}

# summarize START FD_LIMIT: docs/benchmarks.md from every report in $RESULTS.
summarize() {
	local started_at=$1 soft=$2
	log "writing $OUT_DOC"
	local versions
	versions=$(
		printf 'switchyard %s (commit %s)\n' "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
		printf 'centrifugo %s\n' "$("$CENTRIFUGO_BIN" version 2>/dev/null | head -n 1)"
		printf 'redis %s\n' "$("$REDIS_BIN" --version | head -n 1)"
		printf 'ferretdb %s\n' "$("$FERRETDB_BIN" --version 2>/dev/null | head -n 1)"
		printf 'rustc %s\n' "$(rustc --version)"
	)
	BENCH_STARTED="$started_at" BENCH_VERSIONS="$versions" BENCH_FD_LIMIT="$soft" \
		BENCH_COMMANDS="$(printf '%s\n' "${LOADGEN_COMMANDS[@]}" | sort -u | head -n 40)" \
		python3 "$ROOT/tests/loadgen/summarize.py" "$RESULTS" "$OUT_DOC"
	log "done: $OUT_DOC"
}

main "$@"
