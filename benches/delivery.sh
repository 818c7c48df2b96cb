#!/usr/bin/env bash
# delivery.sh - messages reaching executives by e-mail: deliveries per second through the
# outbox to a local SMTP server, and the delay from "message saved" to "e-mail accepted".
#
# Usage: benches/delivery.sh [--seed 2000] [--calls 100] [--rate 10] [--hooks 1000]
#                            [--bin PATH] [--keep]
#
# What it does, all on 127.0.0.1 and bounded in time:
#   1. a temp config with [smtp] on a loopback port and a plan whose executive gets every
#      message at once by e-mail (a voicemail route, category urgent);
#   2. throughput: starts the server once to create the records, stops it, writes --seed
#      messages with a pending e-mail each straight into SQLite, starts Debian's aiosmtpd
#      (tests/smtp_sink.py keeps each message and when it was accepted) and the server,
#      and times the outbox draining: e-mails per second between the first and the last
#      accepted;
#   3. delay: SIPp leaves --calls urgent voicemails at --rate calls/s (3 s of tone each);
#      for each e-mail, the SMTP server's acceptance time minus the call's `ended_at`
#      (when the message was saved) gives the delay, p50/p99/max;
#   4. webhooks: --hooks messages with a webhook POST pending each, written into SQLite
#      while the server runs, to a receiver on loopback (Python's http.server answering
#      204 and noting each arrival): POSTs per second between the first and the last;
#   5. prints all three and a `RESULT {json}` line.
#
# Needs: sipp, sqlite3, /usr/bin/python3 with aiosmtpd (Debian python3-aiosmtpd).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "delivery.sh: $*" >&2; exit 1; }

seed=2000
calls=100
rate=10
hooks=1000
bin="$root/target/release/permanence"
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seed) seed="$2"; shift 2 ;;
        --calls) calls="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --hooks) hooks="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for v in seed calls rate hooks; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer"
done
((seed <= 100000 && calls <= 2000 && rate <= 50 && hooks <= 100000)) ||
    die "at most --seed 100000, --calls 2000, --rate 50, --hooks 100000"
[[ -x $bin ]] || die "no server binary at $bin (run: cargo build --release)"
for tool in sipp sqlite3; do command -v "$tool" >/dev/null || die "missing tool: $tool"; done
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || die "missing Debian's python3-aiosmtpd"

sip_port=15380
smtp_port=15325
hook_port=15326
caller_port=15383
caller_media=16300

tmp="$(mktemp -d /tmp/permanence-delivery.XXXXXX)"
pids=()
stop() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [[ $keep == 1 ]]; then echo "temp dir kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap stop EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/data" "$tmp/dialplans" "$tmp/sounds/bench" "$tmp/mail"
cp -r "$root/sounds/default" "$tmp/sounds/"
cp "$root/sounds/default/beep.wav" "$tmp/sounds/bench/prompt.wav"
cat >"$tmp/permanence.toml" <<CONFIG
[sip]
listen = "127.0.0.1:$sip_port"
[media]
rtp_port_min = 40000
rtp_port_max = 41999
[paths]
data = "data"
dialplans = "dialplans"
sounds = "sounds"
[smtp]
server = "127.0.0.1"
port = $smtp_port
security = "none"
from = "Permanence <permanence@bench.example>"
[[webhooks]]
url = "http://127.0.0.1:$hook_port/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONFIG
cat >"$tmp/dialplans/bench.toml" <<'PLAN'
[company]
id = "bench"
name = "Bench & Co"
numbers = ["+33180000009"]

[executives.boss]
name = "Boss"
reach = ["sip:boss@192.0.2.1"]
email = "boss@bench.example"
deliver = [{ category = "urgent", to = ["email"], when = "now" }]

[[route]]
name = "voicemail"
steps = [{ voicemail = { prompt = "bench/prompt.wav", max_seconds = 30 } }]
category = "urgent"
PLAN

serve() {
    "$bin" serve --config "$tmp/permanence.toml" 2>>"$tmp/server.log" &
    server=$!
    pids+=("$server")
    for _ in $(seq 1 100); do
        grep -q "Permanence listening" "$tmp/server.log" && return 0
        sleep 0.1
    done
    die "the server did not start: $(tail -5 "$tmp/server.log")"
}
count_mail() { find "$tmp/mail" -name '*.eml' | wc -l; }
wait_mail() { # count, seconds
    local deadline=$((SECONDS + $2))
    while (($(count_mail) < $1 && SECONDS < deadline)); do sleep 0.2; done
    (($(count_mail) >= $1)) || die "only $(count_mail) of $1 e-mails arrived; see $tmp/server.log"
}

# 1. The records, created by the server itself.
serve
kill -TERM "$server"; wait "$server" || true

# 2. Throughput: --seed messages, each with an e-mail waiting in the outbox.
sqlite3 "$tmp/data/permanence.db" <<SQL
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $seed)
INSERT INTO calls (id, company, dialled, caller, started_at, ended_at, outcome, sip_call_id)
  SELECT 1000000 + i, 'bench', '+33180000009', '+336' || printf('%08d', i),
         strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
         'voicemail', 'seed-' || i FROM n;
INSERT INTO messages (call_id, company, caller, category, status, created_at, updated_at)
  SELECT id, company, caller, 'urgent', 'new', started_at, started_at FROM calls WHERE id > 1000000;
INSERT INTO outbox (event, channel, target, company, executive, message_id, payload, status,
                    next_attempt, retry_since, created_at)
  SELECT 'message:' || id || ':urgent:boss', 'email', 'boss@bench.example', 'bench', 'boss', id,
         '{"company_name":"Bench & Co","language":"fr","timezone":"Europe/Paris","executive_name":"Boss","fields":[]}',
         'pending', created_at, created_at, created_at
  FROM messages WHERE call_id > 1000000;
COMMIT;
SQL
PYTHONPATH="$root/tests" /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c smtp_sink.Save "$tmp/mail" &
pids+=("$!")
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null && break; sleep 0.1; done
serve
wait_mail "$seed" $((seed / 5 + 60))
cpu_after_seed=$(awk '{print $14 + $15}' "/proc/$server/stat")

# 3. Delay: urgent voicemails through SIPp.
/usr/bin/python3 - "$tmp/tone.pcap" <<'PY'
import math, struct, sys
# 3 s of a 1 kHz tone as PCMU RTP in a pcap (what SIPp's play_pcap_audio sends).
def ulaw(sample):  # G.711 mu-law
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), 32635) + 0x84
    exponent, mask = 7, 0x4000
    while exponent > 0 and not sample & mask:
        exponent, mask = exponent - 1, mask >> 1
    return ~(sign | (exponent << 4) | ((sample >> (exponent + 3)) & 0x0F)) & 0xFF
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
for k in range(150):
    payload = bytes(ulaw(int(12000 * math.sin(2 * math.pi * 1000 * (k * 160 + j) / 8000))) for j in range(160))
    rtp = struct.pack("!BBHII", 0x80, 0, k, k * 160, 0x1234) + payload
    udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([127,0,0,1]), bytes([127,0,0,1])) + udp
    frame = b"\0" * 12 + b"\x08\x00" + ip
    t = k * 20000
    out.write(struct.pack("<IIII", t // 1000000, t % 1000000, len(frame), len(frame)) + frame)
PY
sipp -sf "$root/tests/scenarios/voicemail_hangup.xml" -s +33180000009 \
    -key caller +33612345678 -key rtp_port 9 -key offer "0 101" -key audio_pcap "$tmp/tone.pcap" \
    -i 127.0.0.1 -p "$caller_port" -mp "$caller_media" -m "$calls" -r "$rate" -l 200 \
    -timeout $((calls / rate + 60))s -timeout_error -nostdin "127.0.0.1:$sip_port" \
    >"$tmp/sipp.log" 2>&1 || die "SIPp failed: $(tail -5 "$tmp/sipp.log")"
wait_mail $((seed + calls)) 60

# 4. Webhooks: a receiver that notes each POST, then --hooks deliveries queued at once.
/usr/bin/python3 - "$hook_port" "$tmp/hooks.log" <<'PY' &
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[2], "a", buffering=1)
class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        log.write("%f %s\n" % (time.time(), self.headers.get("webhook-id")))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
class Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops SYNs of concurrent senders: 1 s retries
    daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
PY
pids+=("$!")
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$hook_port") 2>/dev/null && break; sleep 0.1; done
sqlite3 "$tmp/data/permanence.db" <<SQL
PRAGMA busy_timeout = 5000;
BEGIN;
INSERT INTO outbox (event, channel, target, company, executive, message_id, payload, status,
                    next_attempt, retry_since, created_at)
  SELECT 'message:' || id || ':urgent:boss', 'webhook', 'http://127.0.0.1:$hook_port/hook',
         'bench', 'boss', id,
         '{"company_name":"Bench & Co","language":"fr","timezone":"Europe/Paris","executive_name":"Boss","fields":[]}',
         'pending', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
         strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
  FROM messages ORDER BY id LIMIT $hooks;
COMMIT;
SQL
deadline=$((SECONDS + hooks / 5 + 60))
while (($(wc -l <"$tmp/hooks.log" 2>/dev/null || echo 0) < hooks && SECONDS < deadline)); do sleep 0.2; done
(($(wc -l <"$tmp/hooks.log") >= hooks)) || die "only $(wc -l <"$tmp/hooks.log") of $hooks webhooks arrived"

/usr/bin/python3 - "$tmp" "$seed" "$cpu_after_seed" <<'PY'
import email, glob, json, os, sqlite3, sys
from datetime import datetime
tmp, seed, cpu_ticks = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
db = sqlite3.connect(os.path.join(tmp, "data/permanence.db"))
def at(text): return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
accepted = {}
for path in glob.glob(os.path.join(tmp, "mail/*.eml")):
    meta = json.load(open(path[:-4] + ".json"))
    with open(path, "rb") as f:
        mid = email.message_from_binary_file(f)["Message-ID"]
    accepted[int(mid.strip("<>").split(".")[1])] = meta["accepted"]
seeded, delays = [], []
for row, sip, ended in db.execute(
        "SELECT o.id, c.sip_call_id, c.ended_at FROM outbox o JOIN messages m ON m.id = o.message_id "
        "JOIN calls c ON c.id = m.call_id"):
    if row not in accepted: continue
    if sip.startswith("seed-"): seeded.append(accepted[row])
    else: delays.append(accepted[row] - at(ended))
seeded.sort(); delays.sort()
span = seeded[-1] - seeded[0]
rate = (len(seeded) - 1) / span if span > 0 else float("inf")
q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))] * 1000
hz = os.sysconf("SC_CLK_TCK")
result = {"seeded": len(seeded), "emails_per_second": round(rate, 1),
          "server_cpu_ms_per_email": round(cpu_ticks / hz * 1000 / len(seeded), 2),
          "calls": len(delays), "delay_p50_ms": round(q(0.5)), "delay_p99_ms": round(q(0.99)),
          "delay_max_ms": round(delays[-1] * 1000)}
print(f"throughput: {len(seeded)} e-mails in {span:.2f} s: {rate:.1f} e-mails/s "
      f"({result['server_cpu_ms_per_email']} ms server CPU each)")
print(f"delay from message saved to e-mail accepted ({len(delays)} voicemails): "
      f"p50 {result['delay_p50_ms']} ms, p99 {result['delay_p99_ms']} ms, max {result['delay_max_ms']} ms")
hooks = sorted(float(l.split()[0]) for l in open(os.path.join(tmp, "hooks.log")))
hook_span = hooks[-1] - hooks[0]
result["webhooks"] = len(hooks)
result["webhooks_per_second"] = round((len(hooks) - 1) / hook_span, 1) if hook_span > 0 else None
print(f"webhooks: {len(hooks)} POSTs in {hook_span:.2f} s: {result['webhooks_per_second']} per second")
print("RESULT " + json.dumps(result))
PY
