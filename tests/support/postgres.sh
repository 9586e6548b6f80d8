#!/usr/bin/env bash
# A throw-away PostgreSQL server on loopback for the request-log tests.
#
#   eval "$(tests/support/postgres.sh start)"   # exports PIPEHOST_TEST_POSTGRES_URL
#                                               # and PIPEHOST_TEST_POSTGRES_CA, _DIR
#   tests/support/postgres.sh stop              # stops it and removes its files
#
# Installs Debian's `postgresql` when missing (root, apt), makes a cluster
# in a temporary folder owned by the `postgres` user (the server refuses to
# run as root), starts it on a free loopback port with trust auth and TLS
# (a throw-away CA and a server certificate for 127.0.0.1 and localhost,
# made with openssl; the CA's PEM file is exported), and prints the export
# lines. Everything else goes to stderr. With
# PIPEHOST_REQUIRE_POSTGRES=1 (CI) a failure is an error; otherwise it
# prints a warning and nothing to export, and the tests say they skipped.
set -euo pipefail

state_file="${TMPDIR:-/tmp}/pipehost-test-postgres.$(id -u)"

fail() {
    echo "postgres.sh: $*" >&2
    if [[ "${PIPEHOST_REQUIRE_POSTGRES:-}" == 1 ]]; then
        exit 1
    fi
    echo "postgres.sh: the PostgreSQL request-log test will be skipped" >&2
    exit 0
}

bin_dir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    [[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

# A CA and a server certificate signed by it (SAN 127.0.0.1 and localhost),
# in $1: ca.pem, server.pem, server.key (0600, owned by the server's user).
make_certs() {
    local d=$1
    command -v openssl >/dev/null || return 1
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=pipehost test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign &&
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/server.ext" &&
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
            -days 2 -extfile "$d/server.ext" -out "$d/server.pem"
    } >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; return 1; }
    chmod 600 "$d/server.key" "$d/ca.key"
    chmod 644 "$d/ca.pem"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$d/server.key" "$d/server.pem"; fi
}

start() {
    local bin
    bin=$(bin_dir || true)
    if [[ -z "$bin" ]]; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "postgres.sh: installing Debian's postgresql" >&2
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2 \
                || fail "apt-get install postgresql failed"
            bin=$(bin_dir || true)
        fi
        [[ -n "$bin" ]] || fail "PostgreSQL is not installed (apt-get install postgresql)"
    fi
    local run_as=()
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        run_as=(runuser -u postgres --)
    fi
    local dir port
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pipehost-pg.XXXXXX")
    chmod 755 "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
    make_certs "$dir" || fail "openssl could not make the test certificates"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; fail "initdb failed"; }
    # One role logs in with a password (SCRAM, over TLS only), for the test
    # of SCRAM's channel binding; everything else is trusted.
    "${run_as[@]}" sed -i '1i hostssl all pipehost_scram 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c ssl=on -c ssl_cert_file=$dir/server.pem -c ssl_key_file=$dir/server.key" start >&2 \
        || { cat "$dir/server.log" >&2; fail "the server did not start"; }
    echo "$bin $dir" >"$state_file"
    echo "postgres.sh: PostgreSQL on 127.0.0.1:$port (data in $dir)" >&2
    echo "export PIPEHOST_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
    echo "export PIPEHOST_TEST_POSTGRES_CA=$dir/ca.pem"
    echo "export PIPEHOST_TEST_POSTGRES_DIR=$dir"
}

# Stops the server this shell started (PIPEHOST_TEST_POSTGRES_DIR, exported
# by start), else the last one started (the state file), so that two runs
# at once (two `./x test`) each stop their own.
stop() {
    local bin dir run_as=()
    if [[ -n "${PIPEHOST_TEST_POSTGRES_DIR:-}" ]]; then
        dir=$PIPEHOST_TEST_POSTGRES_DIR
        bin=$(bin_dir || true)
    elif [[ -f "$state_file" ]]; then
        read -r bin dir <"$state_file"
    else
        return 0
    fi
    [[ "$dir" == */pipehost-pg.* && -n "$bin" ]] || { echo "postgres.sh: not a test server: $dir" >&2; return 1; }
    [[ $(id -u) -eq 0 ]] && run_as=(runuser -u postgres --)
    [[ -d "$dir/data" ]] && { "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true; }
    rm -rf "$dir"
    if [[ -f "$state_file" && "$(cut -d' ' -f2 "$state_file")" == "$dir" ]]; then
        rm -f "$state_file"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
