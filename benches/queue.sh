#!/usr/bin/env bash
# queue.sh - many callers waiting in line for few secretaries.
#
# Usage: benches/queue.sh [--callers 500] [--secretaries 50] [--talk 12] [--window 5]
#                         [--bin PATH] [--keep]
#
# What it does, all on 127.0.0.1 and bounded in time:
#   1. a temp config with --secretaries secretaries (s1..sN, password "pw", company
#      "bench", 1 s of wrap-up, keep-alives off) and a plan that answers with a beep, then
#      a 300 s longest-idle `secretary` step: a caller who finds nobody free waits in the
#      queue hearing the hold music (default/hold.wav, 50 packets/s);
#   2. SIPp registers every secretary from one port (register.xml, one run each), then
#      another SIPp plays all their phones (queue_secretary.xml): each answers at once,
#      "talks" --talk seconds (no RTP) and hangs up;
#   3. a third SIPp places --callers calls at 100 calls/s (call.xml: INVITE, 200, ACK,
#      then waits as long as it takes for our BYE); every caller's SDP points at
#      rtp_sink, which counts the music packets;
#   4. once every caller is in (the first --secretaries talk, the rest wait), the server's
#      CPU is read over --window seconds (/proc/<pid>/stat) and its RSS compared with
#      before the calls: the cost of one waiting caller (its music) is that over the
#      number waiting;
#   5. at the end, from the records: every caller was served by a secretary, and for
#      each offer made while callers waited, the time from the secretary becoming free
#      (her hang-up plus her wrap-up) to our INVITE to her (p50, p99, max).
#
# Prints those figures and a final `RESULT {json}` line. Exit status 0 only if every
# caller was served.
#
# Needs: sipp, md5sum, awk, sqlite3, rustc (to build benches/rtp_sink.rs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "queue.sh: $*" >&2; exit 1; }

callers=500
secretaries=50
talk=12
window=5
bin="$root/target/release/permanence"
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --callers) callers="$2"; shift 2 ;;
        --secretaries) secretaries="$2"; shift 2 ;;
        --talk) talk="$2"; shift 2 ;;
        --window) window="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for v in callers secretaries talk window; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer"
done
((secretaries < callers)) || die "--secretaries must be fewer than --callers (or nobody waits)"
((window + 6 < talk)) || die "--window must end before the first conversations do (window + 6 < talk)"
[[ -x $bin ]] || die "no server binary at $bin (run: cargo build --release)"
for tool in sipp md5sum awk sqlite3 rustc; do command -v "$tool" >/dev/null || die "missing tool: $tool"; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

sip_port=15180
phone_port=15181
phone_media=15300
caller_port=15183
caller_media=16100
sink_port=17100
rounds=$(((callers + secretaries - 1) / secretaries))
budget=$((rounds * (talk + 2) + 60))

tmp="$(mktemp -d /tmp/permanence-queue.XXXXXX)"
pids=()
stop() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    sleep 1
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    if [[ $keep == 1 ]]; then echo "temp dir kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap stop EXIT
trap 'exit 130' INT TERM

rustc -O --edition 2024 "$here/rtp_sink.rs" -o "$tmp/rtp_sink" 2>"$tmp/rustc.log" ||
    { cat "$tmp/rustc.log" >&2; die "could not compile rtp_sink"; }

mkdir -p "$tmp/data" "$tmp/dialplans" "$tmp/sounds"
cp -r "$root/sounds/default" "$tmp/sounds/"
{
    cat <<EOF
[sip]
listen = "127.0.0.1:$sip_port"
transports = ["udp"]
[media]
address = "127.0.0.1"
rtp_port_min = 20000
rtp_port_max = 39999
[paths]
data = "data"
dialplans = "dialplans"
sounds = "sounds"
[limits]
max_calls = $((callers + 100))
max_calls_per_source = $((callers + 100))
# SIPp brings every call from one address: the per-source INVITE rate limit is off here.
max_invites_per_second_per_source = 0
[registrar]
keepalive_seconds = 0
max_expires = 7200
[distribution]
wrap_up_seconds = 1
EOF
    for i in $(seq 1 "$secretaries"); do
        ha1="$(printf '%s' "s$i:permanence:pw" | md5sum | cut -d' ' -f1)"
        printf '[[secretaries]]\nname = "S%d"\nusername = "s%d"\nha1_md5 = "%s"\nha1_sha256 = ""\ncompanies = ["bench"]\n' "$i" "$i" "$ha1"
    done
} >"$tmp/permanence.toml"
cat >"$tmp/dialplans/bench.toml" <<'EOF'
[company]
id = "bench"
name = "Bench Company"
numbers = ["+33199999999"]
language = "en"

[[route]]
name = "queue"
steps = [{ play = "default/beep.wav" }, { secretary = { timeout = 300, strategy = "longest-idle" } }, { hangup = {} }]
EOF
scenarios="$root/tests/scenarios"

RUST_LOG=warn,permanence::server=info "$bin" serve --config "$tmp/permanence.toml" 2>"$tmp/server.log" &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 100); do
    grep -q "Permanence listening" "$tmp/server.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "Permanence listening" "$tmp/server.log" || { cat "$tmp/server.log" >&2; die "server did not start"; }

echo "registering $secretaries secretaries..."
for i in $(seq 1 "$secretaries"); do
    timeout 10 sipp -sf "$scenarios/register.xml" -key username "s$i" -key expires 3600 -au "s$i" -ap pw \
        -m 1 -i 127.0.0.1 -p "$phone_port" -timeout 8s -timeout_error -nostdin "127.0.0.1:$sip_port" \
        >"$tmp/register.out" 2>&1 || { tail -20 "$tmp/register.out" >&2; die "registration of s$i failed"; }
done
(cd "$tmp" && exec timeout "$budget" sipp -sf "$scenarios/queue_secretary.xml" -m "$callers" \
    -i 127.0.0.1 -p "$phone_port" -mp "$phone_media" -d $((talk * 1000)) -key username s \
    -key rtp_port "$sink_port" -key offer 0 -nostdin "127.0.0.1:$sip_port" >"$tmp/phones.out" 2>&1) &
pids+=($!)
(exec timeout "$budget" "$tmp/rtp_sink" --port "$sink_port" --seconds "$budget" >"$tmp/sink.json") &
sink_pid=$!
pids+=("$sink_pid")
sleep 1

read_cpu() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
read_rss() { awk '/^VmRSS/ { print $2 }' "/proc/$server_pid/status"; }
hz="$(getconf CLK_TCK)"
rss_before="$(read_rss)"

echo "placing $callers calls at 100 calls/s for $secretaries secretaries talking $talk s each..."
# call.xml waits 120 s for our BYE; a caller at the back of this line waits longer.
sed 's/request="BYE" timeout="120000"/request="BYE" timeout="600000"/' "$scenarios/call.xml" >"$tmp/caller.xml"
(cd "$tmp" && exec timeout "$budget" sipp -sf "$tmp/caller.xml" -m "$callers" -l "$callers" \
    -r 100 -s +33199999999 -key caller +33612345678 -key rtp_port "$sink_port" -key offer 0 \
    -i 127.0.0.1 -p "$caller_port" -mp "$caller_media" -timeout "$((budget - 10))s" -timeout_error \
    -nostdin "127.0.0.1:$sip_port" >"$tmp/callers.out" 2>&1) &
callers_pid=$!
pids+=("$callers_pid")

sleep $((callers / 100 + 2))
db="$tmp/data/permanence.db"
waiting="$(sqlite3 "$db" "SELECT count(*) FROM events q WHERE q.kind = 'queued' AND NOT EXISTS (SELECT 1 FROM events d WHERE d.call_id = q.call_id AND d.kind = 'dequeued')")"
cpu1="$(read_cpu)"
t1="$(date +%s.%N)"
sleep "$window"
cpu2="$(read_cpu)"
t2="$(date +%s.%N)"
rss_held="$(read_rss)"

echo "draining the queue ($rounds rounds of $talk s)..."
callers_ok=0
wait "$callers_pid" && callers_ok=1
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" || true
kill -TERM "$sink_pid" 2>/dev/null || true

served="$(sqlite3 "$db" "SELECT count(*) FROM calls WHERE handled_by IS NOT NULL")"
# For each offer to a secretary who had hung up before (and while callers waited): how
# long after her wrap-up ended (hang-up + 1 s) our INVITE went to her, in ms.
sqlite3 -separator ' ' "$db" "
    WITH seat AS (
        SELECT id, call_id, kind, json_extract(data, '\$.to') AS who, julianday(at) AS at
        FROM events
        WHERE kind IN ('secretary-offered', 'secretary-hung-up', 'bye-sent',
                       'secretary-cancelled', 'secretary-declined')),
    offers AS (
        SELECT o.who, o.at,
               (SELECT p.kind FROM seat p WHERE p.who = o.who AND p.id < o.id
                ORDER BY p.id DESC LIMIT 1) AS before_kind,
               (SELECT p.at FROM seat p WHERE p.who = o.who AND p.id < o.id
                ORDER BY p.id DESC LIMIT 1) AS before_at
        FROM seat o
        WHERE o.kind = 'secretary-offered'
          AND o.call_id IN (SELECT call_id FROM events WHERE kind = 'queued'))
    -- Only offers to a secretary whose last call had just ended (hung up by her or by
    -- the caller): she became free when her wrap-up ended.
    SELECT (at - before_at) * 86400000.0 - 1000 FROM offers
    WHERE before_kind IN ('secretary-hung-up', 'bye-sent')" |
    sort -g >"$tmp/delays.txt"

awk -v calls="$callers" -v served="$served" -v waiting="$waiting" -v c1="$cpu1" -v c2="$cpu2" \
    -v t1="$t1" -v t2="$t2" -v hz="$hz" -v r0="$rss_before" -v r1="$rss_held" -v ok="$callers_ok" \
    -v sink="$(cat "$tmp/sink.json" 2>/dev/null)" '
{ d[NR] = $1 }
END {
    n = NR
    p50 = n ? d[int((n - 1) * 0.50) + 1] : -1
    p99 = n ? d[int((n - 1) * 0.99) + 1] : -1
    max = n ? d[n] : -1
    cpu = (c2 - c1) / hz / (t2 - t1) * 100
    per = waiting ? (c2 - c1) / hz / (t2 - t1) / waiting * 1e6 : 0
    rss = (r1 - r0) / calls
    match(sink, /"packets":[0-9]+/); packets = substr(sink, RSTART + 10, RLENGTH - 10)
    printf "callers served by a secretary       %d of %d\n", served, calls
    printf "callers waiting during the window   %d\n", waiting
    printf "server CPU while they wait          %.1f %% of one core\n", cpu
    printf "CPU per waiting caller              %.1f us per second of wait\n", per
    printf "RSS per caller (waiting or talking) %.1f KiB\n", rss
    printf "music packets the callers received  %s\n", packets
    printf "free secretary -> next INVITE       p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d offers)\n", p50, p99, max, n
    printf "RESULT {\"callers\":%d,\"served\":%d,\"waiting\":%d,\"cpu_pct\":%.1f,\"cpu_us_per_waiting_s\":%.1f,\"rss_kib_per_call\":%.1f,\"offer_p50_ms\":%.0f,\"offer_p99_ms\":%.0f,\"offer_max_ms\":%.0f,\"offers\":%d,\"ok\":%d}\n", calls, served, waiting, cpu, per, rss, p50, p99, max, n, ok
}' "$tmp/delays.txt"
[[ $callers_ok == 1 && $served == "$callers" ]]
