# Sourced by scripts/dev and scripts/test: `setup_venv [EXTRA]` makes a virtualenv with the project (and an
# extra); `setup_server_extensions` installs the PostgreSQL extensions notifyd's schema creates (pg_partman);
# `setup_test_tools` adds what only the tests need: pgTAP for the SQL tests, Chromium for the browser tests,
# systemd-analyze for the unit files, TypeScript for the type check of the browser modules, PgBouncer for the
# transaction-pooling tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TYPESCRIPT=5.9.3  # tests/test_js_types.py checks this is the version it runs

setup_venv() {
    if [ ! -x .venv/bin/python ]; then
        "${PYTHON:-python3}" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${1:-}"
}

# Debian's postgresql-NN-<package> for every local PostgreSQL major version whose extension directory lacks
# <extension>.control (as root, where apt-get exists).
install_extension_packages() {
    local extension=$1 package=$2 purpose=$3
    for bindir in /usr/lib/postgresql/*/bin; do
        [ -d "$bindir" ] || continue
        major=$(basename "$(dirname "$bindir")")
        if [ ! -f "/usr/share/postgresql/$major/extension/$extension.control" ] && [ "$(id -u)" = 0 ] \
            && command -v apt-get >/dev/null; then
            echo "setup: installing $extension for PostgreSQL $major ($purpose)" >&2
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$major-$package" >/dev/null
        fi
    done
}

setup_server_extensions() {
    # pg_partman manages the partitions of notify.notifications (a server elsewhere needs it there:
    # `notifyd migrate` says what to install).
    install_extension_packages pg_partman partman "the partitioned notifications table"
}

setup_test_tools() {
    # The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
    if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing chromium for the browser tests" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi

    # tests/test_deploy.py checks the systemd units with systemd-analyze (Debian's systemd).
    if ! command -v systemd-analyze >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing systemd for systemd-analyze" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    fi

    # tests/test_js_types.py type-checks notifyd/static with tsc, from npm into .tools/ (git-ignored). Pinned to
    # 5.9.x: the stable compiler written in JS, whose checkJs (types from JSDoc comments) is mature and which runs on
    # the Node 20 we have; the registry's latest, 7.x, is the native port, newer than that check needs.
    if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing npm (Debian's) for the TypeScript check" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    fi
    if [ "$(.tools/node_modules/.bin/tsc --version 2>/dev/null)" != "Version $TYPESCRIPT" ] && command -v npm >/dev/null; then
        echo "setup: installing TypeScript $TYPESCRIPT into .tools/" >&2
        npm install --prefix .tools --no-audit --no-fund --no-save --silent "typescript@$TYPESCRIPT" >/dev/null
    fi

    # tests/test_alerts.py runs `promtool test rules` on deploy/prometheus/: Debian's prometheus package ships it.
    # Only the binary is taken out of the package (apt-get download + dpkg -x), so no Prometheus daemon starts.
    if [ ! -x .tools/prometheus/promtool ] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
        echo "setup: extracting promtool from Debian's prometheus package into .tools/" >&2
        unpacked=$(mktemp -d)
        (cd "$unpacked" && apt-get download -qq prometheus >/dev/null && dpkg -x prometheus_*.deb root)
        mkdir -p .tools/prometheus
        cp "$unpacked/root/usr/bin/promtool" .tools/prometheus/promtool
        rm -rf "$unpacked"
    fi

    # tests/test_pgbouncer.py starts Debian's PgBouncer on a port of its own (the package's own service, where systemd
    # runs one, listens on 6432 and is not used).
    if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null; then
        echo "setup: installing pgbouncer for the transaction-pooling tests" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
    fi

    # pgTAP comes from Debian's postgresql-NN-pgtap, one per local PostgreSQL major version.
    install_extension_packages pgtap pgtap "the SQL tests"
}
