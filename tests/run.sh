#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's.
# Installs what the tests drive when it is missing (SIPp: Debian package sip-tester; the
# baresip softphone: baresip-core; sqlite3; chromium and chromium-driver for the console;
# python3-aiosmtpd, a real SMTP server for e-mail deliveries),
# runs every unit and integration test, and ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
# The README's example of reading the records with SQLite's own shell (tests/docs.rs runs it).
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Certificates for the SIP over TLS test.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The console in a real browser (tests/console.rs), driven through WebDriver, in a
# network namespace with nothing but loopback (unshare from util-linux, ip from iproute2).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# Webhooks (tests/webhook.rs): the receiver's verification that docs/API.md shows.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# A real SMTP server for e-mail deliveries (tests/delivery.rs starts it on loopback).
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is required (https://rustup.rs)"; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --no-fail-fast 2>&1 | tee "$log" || status=$?

# One line for the whole run: cargo prints one "test result" per test binary.
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i
         if ($(i+1) ~ /^failed/) f += $i
         if ($(i+1) ~ /^ignored/) s += $i
       }
     }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit $status
