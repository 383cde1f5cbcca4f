#!/bin/sh
# Cron wrapper of the alert watcher: one pass of `skyscan watch --once`, its output appended to a log.
#
# usage: skyscan-watch-cron.sh WATCH_CONFIG [CRON_LOG]
#
# Cron starts jobs with a minimal environment, so this script sets PATH itself:
#   SKYSCAN_VENV    a virtual environment holding skyscan (its bin/ goes first on PATH)
#   SKYSCAN_SETUP   optional file sourced first (site environment, modules, proxies, HTCondor config)
#   CRON_LOG        default $HOME/skyscan-watch-cron.log; the watcher keeps its own rotated log as well
#                   (log_file in the configuration), this one catches what happens before it can start.
# The watcher takes its own lock: overlapping cron calls exit 0 at once. Exit code: the watcher's
# (0 normally, 2 bad configuration, 1 catalog database unusable, 127 skyscan not found).
set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 WATCH_CONFIG [CRON_LOG]" >&2
    exit 2
fi
config=$1
log=${2:-${CRON_LOG:-${HOME:-/tmp}/skyscan-watch-cron.log}}

PATH=/usr/local/bin:/usr/bin:/bin${PATH:+:$PATH}
if [ -n "${SKYSCAN_VENV:-}" ]; then
    PATH=$SKYSCAN_VENV/bin:$PATH
    VIRTUAL_ENV=$SKYSCAN_VENV
    export VIRTUAL_ENV
fi
export PATH
umask 022
# cron's working directory is $HOME; relative paths in the configuration are resolved from its own folder

stamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }

{
    if [ -n "${SKYSCAN_SETUP:-}" ]; then
        # shellcheck disable=SC1090
        . "$SKYSCAN_SETUP" || echo "$(stamp) cron: sourcing $SKYSCAN_SETUP failed" >&2
    fi
    if ! command -v skyscan >/dev/null 2>&1; then
        echo "$(stamp) cron: skyscan not found on PATH ($PATH); set SKYSCAN_VENV" >&2
        exit 127
    fi
    skyscan watch --config "$config" --once
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "$(stamp) cron: skyscan watch exited with code $rc" >&2
    fi
    exit "$rc"
} </dev/null >>"$log" 2>&1
