#!/usr/bin/env bash
# A gateway cluster on loopback: N nodes in production mode on a fresh PostgreSQL database, sharing Redis, behind
# nginx with the same proxy settings as deploy/compose (deploy/nginx/gateway-proxy.conf). For trying the cluster
# by hand, for load and fault tests, and for the e2e test that drives three nodes through nginx in CI.
#
#   deploy/local-cluster.sh start [N]     # N nodes (default 3); prints the load balancer's URL and the operator
#   deploy/local-cluster.sh status        # every process, and each node's /readyz
#   deploy/local-cluster.sh stop          # SIGTERM to every node, nginx quits, the database is dropped
#
# Settings (environment):
#   CLUSTER_DIR      state directory (default /tmp/gw-local-cluster): env, logs, pid files, nginx config
#   GATEWAY_BIN      the gateway binary (default target/release/gateway, else target/debug/gateway)
#   BASE_PORT        node i listens on BASE_PORT+i (default 18600); nginx on LB_PORT (default BASE_PORT)
#   POSTGRES_URL     an admin connection to a running PostgreSQL (default postgres://postgres@127.0.0.1:5432/postgres);
#                    a fresh database gw_cluster_<id> is created there, and dropped by `stop` (KEEP_DB=1 keeps it)
#   REDIS_URL        a running Redis (default redis://127.0.0.1:6379); when nothing answers there, a private
#                    redis-server is started on BASE_PORT+99. Keys are prefixed per cluster, so runs never meet.
#   NGINX_BIN        default: nginx on PATH, else /usr/sbin/nginx
#   READY_TIMEOUT    seconds to wait for each /readyz (default 60)
#   GATEWAY_LOG_LEVEL, GATEWAY_REDIS_LOCAL_FIRST   passed to the nodes (every other GATEWAY_* of the caller is not)
#
# Needs: curl, psql, nginx (Debian: apt-get install nginx), redis-server only if no Redis runs. Only loopback
# addresses are used. Synchronisation is by polling /readyz (and Redis's PING) with a deadline, never a fixed wait.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CLUSTER_DIR=${CLUSTER_DIR:-/tmp/gw-local-cluster}
BASE_PORT=${BASE_PORT:-18600}
LB_PORT=${LB_PORT:-$BASE_PORT}
POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
READY_TIMEOUT=${READY_TIMEOUT:-60}
OPERATOR_EMAIL=${OPERATOR_EMAIL:-ops@cluster.local}

die() { echo "local-cluster: $*" >&2; exit 1; }
log() { echo "local-cluster: $*" >&2; }

gateway_bin() {
    if [ -n "${GATEWAY_BIN:-}" ]; then echo "$GATEWAY_BIN"; return; fi
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    for candidate in "$target/release/gateway" "$target/debug/gateway"; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    die "no gateway binary: build one (cargo build --release -p gateway) or set GATEWAY_BIN"
}

nginx_bin() {
    if [ -n "${NGINX_BIN:-}" ]; then echo "$NGINX_BIN"; return; fi
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } \
        || die "nginx is not installed (Debian: apt-get install nginx)"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Polls `curl $1` until it answers 2xx, for at most READY_TIMEOUT seconds, while the process of pid file $2 lives.
wait_ready() {
    local url=$1 pidfile=$2 deadline=$((SECONDS + READY_TIMEOUT))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        alive "$pidfile" || die "process of $pidfile exited before $url answered (see $CLUSTER_DIR/*.log)"
        [ "$SECONDS" -lt "$deadline" ] || die "$url not ready within ${READY_TIMEOUT}s"
        sleep 0.1
    done
}

redis_answers() {  # $1: host, $2: port
    local reply
    reply=$( (exec 3<>"/dev/tcp/$1/$2" && printf 'PING\r\n' >&3 && head -c 5 <&3) 2>/dev/null) || return 1
    [ "$reply" = "+PONG" ]
}

start_redis() {
    local hostport=${REDIS_URL#redis://}
    hostport=${hostport%%/*}
    local host=${hostport%:*} port=${hostport##*:}
    if redis_answers "$host" "$port"; then
        echo "$REDIS_URL" >"$CLUSTER_DIR/redis-url"
        return
    fi
    command -v redis-server >/dev/null || die "no Redis at $REDIS_URL and redis-server is not installed"
    port=$((BASE_PORT + 99))
    log "no Redis at $REDIS_URL: starting a private one on 127.0.0.1:$port"
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$CLUSTER_DIR" \
        --logfile "$CLUSTER_DIR/redis.log" --pidfile "$CLUSTER_DIR/redis.pid" --daemonize yes >/dev/null
    local deadline=$((SECONDS + READY_TIMEOUT))
    until redis_answers 127.0.0.1 "$port"; do
        [ "$SECONDS" -lt "$deadline" ] || die "the private Redis did not answer within ${READY_TIMEOUT}s"
        sleep 0.1
    done
    echo "redis://127.0.0.1:$port" >"$CLUSTER_DIR/redis-url"
}

secret() { openssl rand -base64 32; }

write_env() {
    local id=$1 database_url=$2 redis_url=$3
    # One set of secrets for every node: production mode requires them, and nodes sharing a database must share them.
    umask 077
    cat >"$CLUSTER_DIR/env" <<EOF
GATEWAY_MODE=production
GATEWAY_DATABASE_URL=$database_url
GATEWAY_REDIS_URL=$redis_url
GATEWAY_REDIS_KEY_PREFIX=gw-cluster-$id:
GATEWAY_REDIS_LOCAL_FIRST=${GATEWAY_REDIS_LOCAL_FIRST:-true}
GATEWAY_ADMIN_EMAIL=$OPERATOR_EMAIL
GATEWAY_ADMIN_PASSWORD=$(openssl rand -hex 16)
GATEWAY_AUTH_JWT_SECRET=$(secret)
GATEWAY_AUTH_API_KEY_PEPPER=$(secret)
GATEWAY_SESSIONS_ENCRYPTION_KEY=$(secret)
GATEWAY_SERVER_TRUSTED_PROXIES=["127.0.0.1/32"]
GATEWAY_LOG_FORMAT=json
GATEWAY_LOG_LEVEL=${GATEWAY_LOG_LEVEL:-info}
GATEWAY_WHATSAPP_ENABLED=false
EOF
    umask 022
}

start_node() {
    local i=$1 bin=$2
    local port=$((BASE_PORT + i))
    mkdir -p "$CLUSTER_DIR/node-$i"
    (
        # Only this cluster's settings: a GATEWAY_* variable of the caller's shell would be refused or, worse, apply.
        for name in $(compgen -e); do case $name in GATEWAY_*) unset "$name" ;; esac; done
        set -a
        # shellcheck disable=SC1091
        . "$CLUSTER_DIR/env"
        set +a
        export GATEWAY_SERVER_LISTEN=127.0.0.1:$port GATEWAY_DATA_DIR=$CLUSTER_DIR/node-$i
        exec "$bin" serve >"$CLUSTER_DIR/node-$i.log" 2>&1 </dev/null
    ) &
    echo $! >"$CLUSTER_DIR/node-$i.pid"
}

write_nginx_conf() {
    local nodes=$1 dir=$CLUSTER_DIR/nginx
    mkdir -p "$dir"/{client,proxy,fastcgi,uwsgi,scgi}
    # nginx started as root hands its workers to `nobody`; they write only these temporary directories.
    chmod 0777 "$dir"/{client,proxy,fastcgi,uwsgi,scgi}
    {
        echo "# Generated by deploy/local-cluster.sh: the nodes on loopback, the proxy settings of deploy/compose."
        echo "daemon off;"
        echo "worker_processes 1;"
        echo "pid $dir/nginx.pid;"
        echo "error_log $CLUSTER_DIR/nginx-error.log warn;"
        echo "events { worker_connections 1024; }"
        echo "http {"
        # The node that answered first on each line, so a test (or you) can see the requests spread.
        echo "  log_format upstream '\$upstream_addr \$status \"\$request\" \$request_time';"
        echo "  access_log $CLUSTER_DIR/nginx-access.log upstream;"
        echo "  client_body_temp_path $dir/client;"
        echo "  proxy_temp_path $dir/proxy;"
        echo "  fastcgi_temp_path $dir/fastcgi;"
        echo "  uwsgi_temp_path $dir/uwsgi;"
        echo "  scgi_temp_path $dir/scgi;"
        echo "  upstream gateways {"
        for i in $(seq 1 "$nodes"); do echo "    server 127.0.0.1:$((BASE_PORT + i));"; done
        echo "    keepalive 32;"
        echo "  }"
        echo "  server {"
        echo "    listen 127.0.0.1:$LB_PORT;"
        echo "    location / {"
        echo "      include $ROOT/deploy/nginx/gateway-proxy.conf;"
        echo "    }"
        echo "  }"
        echo "}"
    } >"$dir/nginx.conf"
}

cmd_start() {
    local nodes=${1:-3}
    [[ "$nodes" =~ ^[1-9][0-9]?$ ]] || die "N must be a number from 1 to 99"
    if compgen -G "$CLUSTER_DIR/*.pid" >/dev/null; then
        for pidfile in "$CLUSTER_DIR"/*.pid; do
            alive "$pidfile" && die "a cluster is running in $CLUSTER_DIR ($(basename "$pidfile")); stop it first"
        done
    fi
    local bin nginx
    bin=$(gateway_bin)
    nginx=$(nginx_bin)
    command -v psql >/dev/null || die "psql is needed to create the cluster's database"
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR"
    local id
    id=$(date +%s)$$
    local database=gw_cluster_$id
    psql -q -v ON_ERROR_STOP=1 "$POSTGRES_URL" -c "CREATE DATABASE $database" >/dev/null \
        || die "cannot create a database at $POSTGRES_URL"
    echo "$database" >"$CLUSTER_DIR/database"
    echo "$POSTGRES_URL" >"$CLUSTER_DIR/postgres-admin-url"
    local database_url=${POSTGRES_URL%/*}/$database
    start_redis
    write_env "$id" "$database_url" "$(cat "$CLUSTER_DIR/redis-url")"
    echo "$nodes" >"$CLUSTER_DIR/nodes"

    # The first node alone: it applies the migrations and creates the operator; then the others, together.
    start_node 1 "$bin"
    wait_ready "http://127.0.0.1:$((BASE_PORT + 1))/readyz" "$CLUSTER_DIR/node-1.pid"
    for i in $(seq 2 "$nodes"); do start_node "$i" "$bin"; done
    for i in $(seq 2 "$nodes"); do
        wait_ready "http://127.0.0.1:$((BASE_PORT + i))/readyz" "$CLUSTER_DIR/node-$i.pid"
    done

    write_nginx_conf "$nodes"
    "$nginx" -t -q -c "$CLUSTER_DIR/nginx/nginx.conf" -p "$CLUSTER_DIR/nginx" 2>"$CLUSTER_DIR/nginx-test.log" \
        || { cat "$CLUSTER_DIR/nginx-test.log" >&2; die "nginx refused its configuration"; }
    "$nginx" -c "$CLUSTER_DIR/nginx/nginx.conf" -p "$CLUSTER_DIR/nginx" >"$CLUSTER_DIR/nginx.log" 2>&1 </dev/null &
    echo $! >"$CLUSTER_DIR/nginx.pid"
    wait_ready "http://127.0.0.1:$LB_PORT/readyz" "$CLUSTER_DIR/nginx.pid"

    local password
    password=$(sed -n 's/^GATEWAY_ADMIN_PASSWORD=//p' "$CLUSTER_DIR/env")
    echo "url=http://127.0.0.1:$LB_PORT"
    echo "nodes=$(for i in $(seq 1 "$nodes"); do printf 'http://127.0.0.1:%s ' $((BASE_PORT + i)); done)"
    echo "operator_email=$OPERATOR_EMAIL"
    echo "operator_password=$password"
    echo "state=$CLUSTER_DIR"
}

cmd_status() {
    [ -f "$CLUSTER_DIR/nodes" ] || { echo "no cluster in $CLUSTER_DIR"; return 1; }
    local nodes down=0
    nodes=$(cat "$CLUSTER_DIR/nodes")
    for i in $(seq 1 "$nodes"); do
        local state=down
        if alive "$CLUSTER_DIR/node-$i.pid"; then
            if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$((BASE_PORT + i))/readyz"; then
                state=ready
            else
                state="running, not ready"
            fi
        fi
        [ "$state" = ready ] || down=1
        echo "node-$i 127.0.0.1:$((BASE_PORT + i)) pid $(cat "$CLUSTER_DIR/node-$i.pid" 2>/dev/null || echo -) $state"
    done
    if alive "$CLUSTER_DIR/nginx.pid"; then echo "nginx 127.0.0.1:$LB_PORT up"; else echo "nginx down"; down=1; fi
    echo "database $(cat "$CLUSTER_DIR/database") redis $(cat "$CLUSTER_DIR/redis-url")"
    return "$down"
}

# Sends $2 to the process of pid file $1 and waits (polling, with a deadline) until it is gone.
stop_process() {
    local pidfile=$1 signal=$2
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    local pid deadline=$((SECONDS + 40))
    pid=$(cat "$pidfile")
    kill "-$signal" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$(basename "$pidfile" .pid) did not exit within 40 s of SIG$signal; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.1
    done
    rm -f "$pidfile"
}

cmd_stop() {
    [ -d "$CLUSTER_DIR" ] || { echo "no cluster in $CLUSTER_DIR"; return 0; }
    stop_process "$CLUSTER_DIR/nginx.pid" QUIT
    for pidfile in "$CLUSTER_DIR"/node-*.pid; do
        [ -e "$pidfile" ] && stop_process "$pidfile" TERM &
    done
    wait
    if [ -f "$CLUSTER_DIR/redis.pid" ]; then stop_process "$CLUSTER_DIR/redis.pid" TERM; fi
    if [ -f "$CLUSTER_DIR/database" ] && [ "${KEEP_DB:-0}" != 1 ]; then
        psql -q "$(cat "$CLUSTER_DIR/postgres-admin-url")" \
            -c "DROP DATABASE IF EXISTS $(cat "$CLUSTER_DIR/database") WITH (FORCE)" >/dev/null \
            || log "could not drop database $(cat "$CLUSTER_DIR/database")"
        rm -f "$CLUSTER_DIR/database"
    fi
    echo "stopped"
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    *) echo "usage: $0 start [N] | status | stop" >&2; exit 64 ;;
esac
