#!/bin/sh
# Makes the test-only PKI of the TLS tests in directory $1 (created): a CA,
# a server certificate for localhost/127.0.0.1, a client certificate, and a
# second CA with a server certificate of its own. Keys are P-256, unencrypted
# except client-enc.key (password "secret"); all of it lives for two days.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {  # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {  # name subject ca extensions
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial \
    -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "/CN=aiocomm test CA"
ca other-ca "/CN=aiocomm other test CA"
leaf server "/CN=localhost" ca "subjectAltName=DNS:localhost,IP:127.0.0.1"
leaf client "/CN=client" ca "extendedKeyUsage=clientAuth"
leaf other-server "/CN=localhost" other-ca "subjectAltName=DNS:localhost,IP:127.0.0.1"
openssl pkey -in client.key -out client-enc.key -aes256 -passout pass:secret
