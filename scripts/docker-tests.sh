#!/usr/bin/env bash
# What the tests' Docker path (testcontainers) needs: an engine, and the images, on a machine that may have
# neither a running engine nor a reachable image registry. `make test-docker` uses it.
#
#   scripts/docker-tests.sh engine        print the DOCKER_HOST to use: the engine the docker CLI reaches, else
#                                         a private dockerd started here (root; its socket, pid and log in
#                                         DOCKER_ENGINE_DIR; no bridge, no iptables: containers use the host
#                                         network); data in DOCKER_ENGINE_DATA, so images stay cached
#   scripts/docker-tests.sh engine-down   stop that private dockerd (never any other)
#   scripts/docker-tests.sh kafka-image   print the Kafka image to test with; build it first when needed
#
# The fixture (tests/kafka_broker.py) runs the official apache/kafka image at the version pinned in
# kafka/pom.xml. When the engine has it or can pull it, that is the image, and nothing is built. Otherwise
# (no registry reachable) this builds a stand-in, pixelpipe/kafka-local:<version>, that honours the same
# contract the fixture relies on (KAFKA_* variables become server.properties, CLUSTER_ID formats the storage,
# the broker logs to stdout): a Debian root file system from debootstrap (the mirror and release apt already
# uses), the JRE from apt inside it, and the Kafka jars that kafka/pom.xml resolves with Maven. The image is
# cached: it is rebuilt only when this script or kafka/pom.xml changes (their hash is a label on it).
#
# Environment (all optional):
#   DOCKER_HOST            the engine (the docker CLI's default otherwise)
#   DOCKER_ENGINE_DIR      the private engine's socket, pid, log (/run/pixelpipe-docker)
#   DOCKER_ENGINE_DATA     the private engine's images           (/var/lib/pixelpipe-docker)
#   KAFKA_LIB_DIR          the resolved jars                    (<repo>/.cache/kafka/lib)
#   DOCKER_IMAGES_CACHE    debootstrap's work dir               (<repo>/.cache/docker)
#   DEBIAN_MIRROR          where debootstrap fetches from       (the first Debian URI in apt's sources)
#   DEBIAN_SUITE           which release                        (this machine's, else bookworm)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$ROOT/kafka/pom.xml"
KAFKA_LIB_DIR="${KAFKA_LIB_DIR:-$ROOT/.cache/kafka/lib}"
CACHE="${DOCKER_IMAGES_CACHE:-$ROOT/.cache/docker}"
ENGINE_DIR="${DOCKER_ENGINE_DIR:-/run/pixelpipe-docker}"
ENGINE_DATA="${DOCKER_ENGINE_DATA:-/var/lib/pixelpipe-docker}"
ENGINE_HOST="unix://$ENGINE_DIR/docker.sock"

SCRIPT_TAG=docker-tests
SCRIPT_NAME=scripts/docker-tests.sh
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

kafka_version() { sed -n 's#.*<kafka.version>\(.*\)</kafka.version>.*#\1#p' "$POM" | head -n1; }

# Changes to what goes into the stand-in image rebuild it; nothing else does.
recipe_hash() { cat "${BASH_SOURCE[0]}" "$POM" | sha256sum | cut -c1-16; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

image_recipe() { docker image inspect --format '{{ index .Config.Labels "dev.pixelpipe.recipe" }}' "$1" 2>/dev/null; }

# -- the jars ------------------------------------------------------------------------------------------------

# scripts/kafka.sh resolves them (once per pom, offline first) into the same lib dir; its notes go to stderr,
# and so does anything else it prints (this script's stdout is an answer: an engine, an image).
resolve_jars() {
    KAFKA_LIB_DIR="$KAFKA_LIB_DIR" bash "$ROOT/scripts/kafka.sh" jars >&2
}

# -- the root file system ------------------------------------------------------------------------------------

debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri
    uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's#^URIs: *\(.*/debian\)/\?$#\1#p' | head -n1)"
    [[ -n "$uri" ]] || uri="$(sed -n 's#^deb \+\(http[^ ]*/debian\)/\? .*#\1#p' /etc/apt/sources.list 2>/dev/null | head -n1)"
    echo "${uri:-http://deb.debian.org/debian}"
}

debian_suite() {
    if [[ -n "${DEBIAN_SUITE:-}" ]]; then echo "$DEBIAN_SUITE"; return; fi
    # shellcheck disable=SC1091
    local codename
    codename="$( (. /etc/os-release 2>/dev/null && [[ "${ID:-}" == debian ]] && echo "${VERSION_CODENAME:-}") || true)"
    echo "${codename:-bookworm}"
}

# The broker's entrypoint: the part of the apache/kafka image's contract the fixture uses.
write_entrypoint() {
    cat >"$1" <<'EOF'
#!/bin/bash
# Entrypoint of pixelpipe/kafka-local (scripts/docker-tests.sh): as in the apache/kafka image, every
# KAFKA_FOO_BAR variable is the server property foo.bar ('__' stands for '_', '___' for '-'), CLUSTER_ID
# formats the storage on first start, and the broker logs to stdout.
set -euo pipefail
conf=/opt/kafka/config/server.properties
mkdir -p /opt/kafka/config
: >"$conf"
for name in $(compgen -e); do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_OPTS | KAFKA_LOG4J_OPTS | KAFKA_VERSION) continue ;;
        KAFKA_*) ;;
        *) continue ;;
    esac
    key="${name#KAFKA_}"
    key="${key,,}"
    key="${key//___/-}"
    key="${key//__/@}"
    key="${key//_/.}"
    key="${key//@/_}"
    printf '%s=%s\n' "$key" "${!name}" >>"$conf"
done
grep -q '^log\.dirs=' "$conf" || echo "log.dirs=/var/lib/kafka/data" >>"$conf"
cat >/opt/kafka/config/log4j2.properties <<'LOG'
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
LOG
cp=/opt/kafka/libs/*
log4j=-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties
storage_tool=org.apache.kafka.tools.StorageTool
core="$(compgen -G '/opt/kafka/libs/kafka_*.jar' | head -n1)"
if unzip -Z1 "$core" kafka/tools/StorageTool.class >/dev/null 2>&1; then storage_tool=kafka.tools.StorageTool; fi
java -Xmx256m "$log4j" -cp "$cp" "$storage_tool" format --ignore-formatted \
    --cluster-id "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" --config "$conf"
# shellcheck disable=SC2086  # the *_OPTS are lists of flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} ${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20} \
    ${KAFKA_OPTS:-} -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true "$log4j" -cp "$cp" kafka.Kafka "$conf"
EOF
    chmod 0755 "$1"
}

build_kafka() {
    local image="$1" version="$2" recipe="$3"
    need debootstrap "debootstrap builds the image's Debian root file system"
    [[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
    resolve_jars
    local suite mirror rootfs
    suite="$(debian_suite)"
    mirror="$(debian_mirror)"
    rootfs="$CACHE/kafka-rootfs"
    mkdir -p "$CACHE"
    (
        flock 9
        rm -rf "$rootfs"
        say "debootstrap $suite from $mirror with a JRE (a few minutes)"
        # minbase plus the JRE: nothing else runs in this image. unzip tells the 3.x/4.x StorageTool apart.
        debootstrap --variant=minbase --include=openjdk-17-jre-headless,unzip "$suite" "$rootfs" "$mirror" \
            >"$CACHE/debootstrap.log" 2>&1 || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        mkdir -p "$rootfs/opt/kafka/libs" "$rootfs/etc/kafka/docker" "$rootfs/var/lib/kafka/data"
        cp "$KAFKA_LIB_DIR"/*.jar "$rootfs/opt/kafka/libs/"
        write_entrypoint "$rootfs/etc/kafka/docker/run"
        say "importing $image"
        local previous
        previous="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
        tar -C "$rootfs" -c . | docker import \
            --change 'CMD ["/etc/kafka/docker/run"]' \
            --change "ENV KAFKA_VERSION=$version" \
            --change 'WORKDIR /opt/kafka' \
            --change "LABEL dev.pixelpipe.recipe=$recipe" \
            - "$image" >/dev/null
        rm -rf "$rootfs"
        # The build it replaces would stay behind untagged (400 MB each time).
        if [[ -n "$previous" ]]; then docker image rm "$previous" >/dev/null 2>&1 || true; fi
    ) 9>"$CACHE/.lock"
}

# -- the engine ----------------------------------------------------------------------------------------------

answers() { DOCKER_HOST="$1" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

engine_pid() { owned_pid "$ENGINE_DIR/dockerd.pid" "--host $ENGINE_HOST"; }

cmd_engine() {
    need docker "the docker CLI talks to the engine (Debian: apt-get install docker.io)"
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        answers "$DOCKER_HOST" || die "no Docker engine answers on DOCKER_HOST=$DOCKER_HOST"
        echo "$DOCKER_HOST"
        return 0
    fi
    if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
        docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || echo unix:///var/run/docker.sock
        return 0
    fi
    if answers "$ENGINE_HOST"; then
        echo "$ENGINE_HOST"
        return 0
    fi
    need dockerd "no Docker engine runs, and none can be started here (Debian: apt-get install docker.io)"
    [[ "$(id -u)" == 0 ]] || die "no Docker engine runs, and starting one needs root"
    mkdir -p "$ENGINE_DIR" "$ENGINE_DATA"
    say "starting a private dockerd on $ENGINE_HOST (log: $ENGINE_DIR/dockerd.log)"
    # Its own socket, pid file, exec and data roots: it never takes over /var/run/docker.sock, so other
    # `make test` runs on this machine do not switch to the Docker path. No bridge and no iptables rules:
    # the tests' containers use the host network and listen on loopback only.
    setsid dockerd --host "$ENGINE_HOST" --pidfile "$ENGINE_DIR/dockerd.pid" --exec-root "$ENGINE_DIR/exec" \
        --data-root "$ENGINE_DATA" --bridge=none --iptables=false --ip6tables=false \
        </dev/null >>"$ENGINE_DIR/dockerd.log" 2>&1 &
    local start=$SECONDS
    until answers "$ENGINE_HOST"; do
        ((SECONDS - start < 60)) || { tail -n 20 "$ENGINE_DIR/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
        sleep 0.5
    done
    echo "$ENGINE_HOST"
}

cmd_engine_down() {
    local pid
    if ! pid="$(engine_pid)"; then
        say "the private dockerd is not running"
        return 0
    fi
    say "stopping the private dockerd (pid $pid)"
    kill -TERM "$pid"
    local start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS - start < 30)) || die "dockerd (pid $pid) still runs after 30 s"
        sleep 0.3
    done
}

# -- the images ----------------------------------------------------------------------------------------------

cmd_kafka_image() {
    need docker "the docker CLI talks to the engine"
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-})"
    local version official local_image recipe
    version="$(kafka_version)"
    [[ -n "$version" ]] || die "no <kafka.version> in $POM"
    official="apache/kafka:$version"
    if have_image "$official" || docker pull -q "$official" >/dev/null 2>&1; then
        echo "$official"
        return 0
    fi
    local_image="pixelpipe/kafka-local:$version"
    recipe="$(recipe_hash)"
    if [[ "$(image_recipe "$local_image")" != "$recipe" ]]; then
        say "$official cannot be pulled: building the stand-in $local_image"
        build_kafka "$local_image" "$version" "$recipe"
    fi
    echo "$local_image"
}

case "${1:-}" in
    engine) cmd_engine ;;
    engine-down) cmd_engine_down ;;
    kafka-image) cmd_kafka_image ;;
    *)
        echo "usage: $0 engine|engine-down|kafka-image" >&2
        exit 2
        ;;
esac
