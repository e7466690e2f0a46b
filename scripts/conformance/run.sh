#!/usr/bin/env bash
# make conformance: the W3C test suites against vcgate (docs/conformance.md).
#
# Installs the suites from the offline kit (W3C_KIT, default ../shared/w3c next to the
# repository; npm registry only), starts `vcgate serve --vc-api` over HTTPS on a free
# 127.0.0.1 port with a fresh issuer key, runs every suite (the VC-API ones once per issuing
# profile) and the vc-jose-cose suite through `vcgate conformance jose`, then prints one line
# per suite and the failing positive tests, and compares with scripts/conformance/expected.json:
# exit 1 when a test that passed there fails now. UPDATE=1 rewrites expected.json instead.
#
#   W3C_KIT    the kit (README.md there)            W3C_WORK  where suites are installed
#   VCGATE     the vcgate command (default .venv/bin/vcgate)   REPORTS  report folder
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIT=${W3C_KIT:-$ROOT/../shared/w3c}
[ -f "$KIT/setup.sh" ] || KIT=/work/shared/w3c
[ -f "$KIT/setup.sh" ] || { echo "conformance: the W3C kit is not at \$W3C_KIT ($KIT); set W3C_KIT" >&2; exit 2; }
export W3C_WORK=${W3C_WORK:-$ROOT/.conformance/w3c}
VCGATE=${VCGATE:-$ROOT/.venv/bin/vcgate}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
REPORTS=${REPORTS:-$ROOT/.conformance/reports}
TMP=$(mktemp -d)
mkdir -p "$REPORTS"
rm -f "$REPORTS"/*.json "$REPORTS"/*.log

"$KIT/setup.sh" > "$REPORTS/setup.log" 2>&1 || { cat "$REPORTS/setup.log" >&2; exit 2; }

# A fresh issuer key and a self-signed TLS certificate (the bitstring suite fetches status lists
# over https only).
ISSUER_ID=$("$VCGATE" key new --out "$TMP/issuer.key" --unencrypted 2>/dev/null)
"$PYTHON" - "$TMP" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import ipaddress
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256()))
open(f"{sys.argv[1]}/tls.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(f"{sys.argv[1]}/tls.key", "wb").write(key.private_bytes(serialization.Encoding.PEM,
     serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
PY
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VCGATE" serve --vc-api --issuer-key "$TMP/issuer.key" --host 127.0.0.1 --port "$PORT" \
  --tls-cert "$TMP/tls.pem" --tls-key "$TMP/tls.key" > "$REPORTS/vcgate-serve.log" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
BASE=https://127.0.0.1:$PORT
for attempt in $(seq 1 150); do
  # any HTTP answer (here a 400 for a malformed did:key) means the server is up
  "$PYTHON" - "$BASE" 2>/dev/null <<'PY' && break
import ssl, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/1.0/identifiers/did:key:z", context=ssl._create_unverified_context(), timeout=1)
except urllib.error.HTTPError:
    pass
PY
  kill -0 "$SERVER" 2>/dev/null && [ "$attempt" -lt 150 ] || { cat "$REPORTS/vcgate-serve.log" >&2; exit 2; }
  sleep 0.2
done

export ISSUER_ID IMPL_NAME=vcgate
run() {  # run NAME SUITE PROFILE TAGS
  local name=$1 suite=$2 profile=$3 tags=$4
  BASE_URL=$BASE/$profile VC_TAGS=$tags "$KIT/run.sh" "$suite" "$REPORTS/$name.json" > /dev/null 2>&1 || true
}
run did-key did-key-test-suite "" did-key
run vc-di-eddsa-rdfc vc-di-eddsa-test-suite eddsa-rdfc-2022 eddsa-rdfc-2022
run vc-di-eddsa-jcs vc-di-eddsa-test-suite eddsa-jcs-2022 eddsa-jcs-2022
run vc-data-model-2.0-di vc-data-model-2.0-test-suite eddsa-rdfc-2022 vc2.0
run vc-data-model-2.0-jose vc-data-model-2.0-test-suite vc-jose vc2.0,EnvelopingProof
run vc-bitstring-status-list vc-bitstring-status-list-test-suite eddsa-rdfc-2022 BitstringStatusList
JOSE_CLI="$VCGATE conformance jose" "$KIT/run.sh" vc-jose-cose-test-suite "$REPORTS/vc-jose-cose.json" > /dev/null 2>&1 || true

# not exec: the EXIT trap must still stop the server
"$PYTHON" "$ROOT/scripts/conformance/report.py" --reports "$REPORTS" --baseline "$KIT/baseline.txt" \
  --expected "$ROOT/scripts/conformance/expected.json" ${UPDATE:+--update}
