# shellcheck shell=bash
# What scripts/kafka.sh and scripts/docker-tests.sh share, sourced by both: their notes and errors on stderr,
# the check for a tool, and the check that a pid file names a process of theirs. Set before sourcing:
#   SCRIPT_TAG   the prefix of every note (kafka, docker-tests)
#   SCRIPT_NAME  the script, for the default reason a tool is needed (scripts/kafka.sh)

say() { printf '%s: %s\n' "$SCRIPT_TAG" "$*" >&2; }
die() { say "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (${2:-needed by $SCRIPT_NAME})"; }

# owned_pid PID_FILE MARK: print the pid in PID_FILE if that process runs and its command line holds MARK.
# After a reboot (or a crash) the number may belong to anything: a script never signals a process it did not
# start.
owned_pid() {
    [[ -f "$1" ]] || return 1
    local pid
    pid="$(cat "$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
    echo "$pid"
}
