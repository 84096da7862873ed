#!/bin/sh
# Makes the test-only PKI of the TLS tests in directory $1 (created): a CA,
# a server certificate for localhost/127.0.0.1, a client certificate, an
# expired server certificate (2020), and a second CA with a server and a
# client certificate of its own. Keys are P-256, unencrypted
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
leaf other-client "/CN=other client" other-ca "extendedKeyUsage=clientAuth"
# Expired: `openssl ca` is the one that takes explicit dates.
mkdir -p ca-db
: > ca-db/index.txt
echo 1000 > ca-db/serial
cat > ca.cnf <<'EOF_CNF'
[ca]
default_ca = test
[test]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
EOF_CNF
key expired.key
openssl req -new -key expired.key -out expired.csr -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200102000000Z -notext 2>/dev/null
rm -rf ca-db ca.cnf expired.csr
openssl pkey -in client.key -out client-enc.key -aes256 -passout pass:secret
