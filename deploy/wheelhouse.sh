#!/usr/bin/env bash
# Fill a wheelhouse for deploy/Dockerfile, which installs with no network: every wheel of the
# committed lock (checked against its hashes), pip's own wheel (a base image may have python3
# without pip), and cloche's wheel with its hash in cloche.txt.
#
# Usage: deploy/wheelhouse.sh [DEST]   (default deploy/wheels; PYTHON picks a python with pip)
# The lock's wheels are downloaded again only when requirements/image.txt changed.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
dest="$(mkdir -p "${1:-$repo/deploy/wheels}" && cd "${1:-$repo/deploy/wheels}" && pwd)"
python="${PYTHON:-python3}"
lock="$repo/requirements/image.txt"
lock_sha="$(sha256sum "$lock" | cut -d' ' -f1)"

if [[ "$(cat "$dest/.lock-sha256" 2>/dev/null)" != "$lock_sha" ]]; then
    # The image runs Python 3.11 on glibc Linux like the lock; binary wheels only, since the
    # build has no compilers.
    "$python" -m pip download --disable-pip-version-check --no-input --progress-bar off \
        --only-binary=:all: --python-version 3.11 --require-hashes -r "$lock" -d "$dest"
    # A separate call: in hash mode pip refuses a requirement without a hash.
    pip_version="$("$python" -m pip --version | cut -d' ' -f2)"
    "$python" -m pip download --disable-pip-version-check --no-input --progress-bar off \
        --only-binary=:all: --no-deps "pip==$pip_version" -d "$dest"
    echo "$lock_sha" > "$dest/.lock-sha256"
fi

# cloche's wheel is rebuilt every time: it is the code being shipped.
rm -f "$dest"/cloche-*.whl
"$python" -m pip wheel --disable-pip-version-check --no-input --no-deps -q -w "$dest" "$repo"
wheel="$(cd "$dest" && ls cloche-*.whl)"
version="$(echo "$wheel" | cut -d- -f2)"
# With a hash, cloche installs in the same --require-hashes call as its dependencies.
echo "cloche==$version --hash=sha256:$(sha256sum "$dest/$wheel" | cut -d' ' -f1)" \
    > "$dest/cloche.txt"
echo "wheelhouse ready in $dest"
