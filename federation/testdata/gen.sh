#!/bin/sh
# Regenerates the key and certificate fixtures in this directory with openssl.
# rcgen (ring) cannot generate RSA keys or write SEC1/PKCS#1 PEM, so these are checked in:
#   rsa-key.pkcs1.pem / rsa-key.pkcs8.pem  the same RSA-2048 key, PKCS#1 and PKCS#8
#   ec-key.sec1.pem   / ec-key.pkcs8.pem   the same P-256 key, SEC1 and PKCS#8
#   rsa-ca.pem                             a self-signed RSA root for spiffe://rsa.test (100 years)
set -eu
cd "$(dirname "$0")"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-key.pkcs8.pem
openssl pkey -in rsa-key.pkcs8.pem -traditional -out rsa-key.pkcs1.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec-key.pkcs8.pem
openssl pkey -in ec-key.pkcs8.pem -traditional -out ec-key.sec1.pem
openssl req -x509 -new -key rsa-key.pkcs8.pem -sha256 -days 36500 -subj "/O=rsa.test" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectAltName=URI:spiffe://rsa.test" \
  -out rsa-ca.pem
