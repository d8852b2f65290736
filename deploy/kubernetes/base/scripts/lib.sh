#!/bin/sh
# Shared helpers for the kubectl-side scripts (sourced; POSIX sh, runs in the kubectl image).
# Never prints file contents: the directories handled here hold private keys.

log() {
  printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

die() {
  log "error: $*"
  exit 1
}

# apply_object KIND NAMESPACE NAME FROM-FILE... : create or update a generic Secret (KIND=secret)
# or a ConfigMap (KIND=configmap) from files. Each FROM-FILE is a kubectl --from-file value
# (FILE, key = basename, or KEY=FILE).
apply_object() {
  kind=$1
  ns=$2
  name=$3
  shift 3
  # Rewrite the remaining arguments in place into --from-file=... options.
  n=$#
  while [ "$n" -gt 0 ]; do
    set -- "$@" "--from-file=$1"
    shift
    n=$((n - 1))
  done
  case $kind in
    secret) set -- secret generic "$name" "$@" ;;
    configmap) set -- configmap "$name" "$@" ;;
    *) die "apply_object: unknown kind $kind" ;;
  esac
  kubectl -n "$ns" create "$@" --dry-run=client -o yaml \
    | kubectl -n "$ns" apply -f - >/dev/null \
    || die "could not store $kind $ns/$name"
  log "stored $kind $ns/$name"
}

apply_secret() {
  apply_object secret "$@"
}

apply_configmap() {
  apply_object configmap "$@"
}

# require_file PATH : fail with a clear message if a fedgate step did not produce PATH.
require_file() {
  [ -s "$1" ] || die "$1 is missing or empty: the fedgate init container that writes it failed or was skipped"
}
