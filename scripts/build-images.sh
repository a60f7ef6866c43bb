#!/usr/bin/env bash
# Builds the webhook service's images locally, with no container registry:
#
#   dlgate-base:bookworm     debootstrap --variant=minbase (python3 3.11, git) + docker import
#   dlgate-deps:<key>        the base + a venv of dlgate's dependencies, installed offline from a
#                            wheelhouse built on the host (key: constraints.txt + pyproject.toml)
#   dlgate-runner:<src>      the deps + the dlgate wheel of this tree (src: hash of the sources);
#                            the sandbox the worker runs the gate in. Also tagged :latest.
#   dlgate-service:<src>     Dockerfile: the runner + a non-root user + gunicorn. Also :latest.
#
# Idempotent: a layer whose inputs did not change is kept (the base is debootstrapped once; the
# wheelhouse and deps image are rebuilt only when the pins change). Prints how long each step
# took and writes the figures to build/images/timings.txt. Needs root for debootstrap.
#
#   scripts/build-images.sh            everything
#   scripts/build-images.sh runner     stop after the runner image (what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-service}
case $target in runner | service) ;; *) echo "usage: $0 [runner|service]" >&2; exit 2 ;; esac

BASE=dlgate-base:bookworm
PY=${PY:-.venv/bin/python}
work=build/images
wheelhouse=build/wheelhouse
mkdir -p "$work"
timings=$work/timings.txt
: >"$timings"

command -v docker >/dev/null || { echo "build-images: docker is not installed (scripts/system-deps.sh installs it)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "build-images: the Docker engine is not running (scripts/system-deps.sh starts it)" >&2; exit 1; }

step_start=0
begin() { step_start=$SECONDS; echo "build-images: $1" >&2; }
took() { local s=$((SECONDS - step_start)); echo "build-images: $1 took ${s}s" >&2; echo "$1 ${s}s" >>"$timings"; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror the host's apt already uses; DEBIAN_MIRROR overrides it.
mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -z $uri ]] && uri=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [[ -n $uri ]] || { echo "build-images: no Debian mirror found; set DEBIAN_MIRROR" >&2; exit 1; }
  echo "$uri"
}

# 1. The base: a minimal Debian with the interpreter the host venv uses (3.11 in bookworm).
if have_image "$BASE"; then
  echo "build-images: $BASE exists, debootstrap skipped" >&2
  echo "base 0s (cached)" >>"$timings"
else
  command -v debootstrap >/dev/null || { echo "build-images: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  begin "debootstrap bookworm into $work/rootfs"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,git,ca-certificates \
    bookworm "$work/rootfs" "$(mirror)" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; echo "build-images: debootstrap failed; log in $work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/*.bin \
    "$work/rootfs"/var/cache/apt/archives/*.deb
  tar -C "$work/rootfs" --numeric-owner -c . |
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
  took base
fi

# 2. The wheelhouse: every dependency as a wheel, resolved with the project's pins. torch is
# the pinned CPU build (a bare `torch` would resolve to a multi-GB CUDA build).
deps_key=$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-12)
DEPS=dlgate-deps:$deps_key
if [[ -f $wheelhouse/.key && $(cat "$wheelhouse/.key") == "$deps_key" ]]; then
  echo "build-images: wheelhouse up to date ($deps_key)" >&2
  echo "wheelhouse 0s (cached)" >>"$timings"
else
  begin "wheelhouse for $deps_key"
  rm -rf "$wheelhouse" && mkdir -p "$wheelhouse"
  "$PY" -m pip wheel -q -w "$wheelhouse" -c constraints.txt torch==2.13.0 '.[torch,service]' rq \
    >"$work/wheelhouse.log" 2>&1 ||
    { tail -20 "$work/wheelhouse.log" >&2; echo "build-images: pip wheel failed; log in $work/wheelhouse.log" >&2; exit 1; }
  rm -f "$wheelhouse"/dlgate-*.whl
  echo "$deps_key" >"$wheelhouse/.key"
  took wheelhouse
fi

# 3. The dependencies, installed offline (no network in the build container) into a venv.
if have_image "$DEPS"; then
  echo "build-images: $DEPS exists" >&2
  echo "deps 0s (cached)" >>"$timings"
else
  begin "installing the wheelhouse into $DEPS"
  name=dlgate-deps-build-$$
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run --name "$name" --network none -v "$PWD/$wheelhouse:/wheelhouse:ro" "$BASE" \
    sh -c 'python3 -m venv /opt/dlgate && /opt/dlgate/bin/pip install -q --no-index --no-deps \
           --disable-pip-version-check /wheelhouse/*.whl && rm -rf /root/.cache'
  docker commit \
    --change 'ENV PATH=/opt/dlgate/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV VIRTUAL_ENV=/opt/dlgate' --change 'CMD ["/bin/bash"]' "$name" "$DEPS" >/dev/null
  docker rm "$name" >/dev/null
  took deps
fi

# 4. The runner: this tree's dlgate on top. Rebuilt whenever a source file changes.
src_key=$(find dlgate checks service pyproject.toml -type f \( -name '*.py' -o -name '*.json' \
  -o -name '*.toml' -o -name '*.typed' \) -not -path '*/__pycache__/*' -print0 |
  sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
RUNNER=dlgate-runner:$src_key
if have_image "$RUNNER"; then
  echo "build-images: $RUNNER exists" >&2
  echo "runner 0s (cached)" >>"$timings"
else
  begin "runner image $RUNNER"
  ctx=$work/runner-context
  rm -rf "$ctx" && mkdir -p "$ctx"
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$ctx" . >"$work/runner.log" 2>&1 ||
    "$PY" -m pip wheel -q --no-deps -w "$ctx" . >>"$work/runner.log" 2>&1 ||
    { tail -20 "$work/runner.log" >&2; echo "build-images: building the dlgate wheel failed" >&2; exit 1; }
  DOCKER_BUILDKIT=0 docker build -q --build-arg "DEPS=$DEPS" --label "org.dlgate.source=$src_key" \
    -t "$RUNNER" -f docker/runner.Dockerfile "$ctx" >/dev/null
  took runner
fi
docker tag "$RUNNER" dlgate-runner:latest
echo "$RUNNER" >"$work/runner.tag"

# 5. The service image (Dockerfile at the top level), from the runner.
if [[ $target == service ]]; then
  SERVICE=dlgate-service:$src_key
  if have_image "$SERVICE"; then
    echo "build-images: $SERVICE exists" >&2
    echo "service 0s (cached)" >>"$timings"
  else
    begin "service image $SERVICE"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "RUNNER=$RUNNER" -t "$SERVICE" -f Dockerfile docker >/dev/null
    took service
  fi
  docker tag "$SERVICE" dlgate-service:latest
  echo "$SERVICE" >"$work/service.tag"
fi
echo "build-images: ok ($(paste -sd, "$timings"))" >&2
