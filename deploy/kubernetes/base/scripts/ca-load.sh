#!/bin/sh
# Copies the CA directory stored in the Secret fedgate-ca (mounted read-only at $CA_IN) into a
# writable private directory $WORK/ca for `fedgate ca rotate` / `fedgate ca issue`.
set -eu
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scripts/lib.sh

: "${CA_IN:?}" "${WORK:?}"
require_file "$CA_IN/ca.pem"
require_file "$CA_IN/ca.key"
require_file "$CA_IN/bundle.json"

umask 077
mkdir -p "$WORK/ca"
for f in "$CA_IN"/*; do
  # Secret volumes hold symlinks into a ..data directory; copy the targets, not the links.
  [ -f "$f" ] && cp -L "$f" "$WORK/ca/"
done
chmod 0600 "$WORK"/ca/*.key
log "loaded CA directory from $CA_IN into $WORK/ca"
