#!/usr/bin/env bash
# What the tests need beyond Python packages, from Debian's packages where missing; idempotent:
# - podman, runc and debootstrap: an exported bundle's Dockerfile is built and run in a test
#   (tests/e2e/test_bundle_image.py), on a base image made with debootstrap;
# - haproxy: tests/e2e/test_tls.py runs the TLS proxy configuration of docs/operations/tls.md;
# - chromium: the browser tests (tests/e2e/_browser.py) drive Debian's Chromium through Playwright;
#   no browser is ever downloaded (`playwright install` is never run);
# - the PostgreSQL server on 127.0.0.1:5432 (trust auth).
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null \
        || ! command -v runc >/dev/null; then
    echo "services: installing podman, runc and debootstrap from Debian's packages" >&2
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q podman runc debootstrap
fi

if ! command -v haproxy >/dev/null; then
    echo "services: installing haproxy from Debian's packages" >&2
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q haproxy
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "services: installing chromium from Debian's packages" >&2
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q chromium
fi

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if command -v pg_isready >/dev/null && pg_up; then
    exit 0
fi

if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL from Debian's packages" >&2
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q postgresql
    version=$(ls /etc/postgresql | sort -V | tail -1)
    conf=/etc/postgresql/$version/main
    # Tests connect as postgres over TCP on loopback with no password.
    as_root sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/; s/^(local\s+all\s+all\s+)\S+/\1trust/; s/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$conf/pg_hba.conf"
fi

version=$(ls /etc/postgresql | sort -V | tail -1)
echo "services: starting PostgreSQL $version" >&2
as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do
    pg_up && exit 0
    sleep 1
done
echo "services: PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
