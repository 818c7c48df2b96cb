#!/usr/bin/env bash
# console.sh - the company card under load: how long after the INVITE reaches a
# secretary's phone her console shows the call's card, with N consoles connected.
#
# Usage: benches/console.sh [--rate 200] [--seconds 20] [--secretaries 50] [--bin PATH]
#                           [--keep]
#
# What it does, all on 127.0.0.1 and bounded in time:
#   1. a temp config with --secretaries secretaries (s1..sN, password "pw", company
#      "bench", the console on [web]) and a plan that answers with a beep, then rings one
#      secretary at a time (longest-idle) for at most 2 s, then hangs up;
#   2. SIPp registers every secretary, each from its own port;
#   3. benches/console_client.rs (cargo bench, release) takes those ports as phones that
#      ring and never answer, logs every secretary in and opens her live board (one
#      WebSocket each), and notes when each INVITE reaches a phone and when that call's
#      card reaches the same secretary's console;
#   4. SIPp places --rate calls/s for --seconds (call.xml; the beep goes to rtp_sink);
#   5. prints the card delay (card time minus INVITE time; negative when the card came
#      first) p50/p99/max, the server's CPU over the load, and a `RESULT {json}` line.
#
# Needs: sipp, md5sum, sqlite3, rustc, cargo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "console.sh: $*" >&2; exit 1; }

rate=200
seconds=20
secretaries=50
bin="$root/target/release/permanence"
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rate) rate="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --secretaries) secretaries="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for v in rate seconds secretaries; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer"
done
((secretaries <= 200)) || die "--secretaries: at most 200"
[[ -x $bin ]] || die "no server binary at $bin (run: cargo build --release)"
for tool in sipp md5sum sqlite3 rustc cargo; do command -v "$tool" >/dev/null || die "missing tool: $tool"; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

sip_port=15280
web_port=15281
phone_port=15400
caller_port=15283
caller_media=16200
sink_port=17200
calls=$((rate * seconds))
budget=$((seconds + 60))

tmp="$(mktemp -d /tmp/permanence-console.XXXXXX)"
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

rustc -O --edition 2024 "$here/rtp_sink.rs" -o "$tmp/rtp_sink" 2>"$tmp/rustc.log" ||
    { cat "$tmp/rustc.log" >&2; die "could not compile rtp_sink"; }
(cd "$root" && cargo bench --bench console_client --no-run) >"$tmp/cargo.log" 2>&1 ||
    { tail -20 "$tmp/cargo.log" >&2; die "could not build console_client"; }

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
max_calls = $((rate * 10 + 100))
max_calls_per_source = $((rate * 10 + 100))
max_invites_per_second_per_source = 0
[registrar]
keepalive_seconds = 0
max_expires = 7200
[web]
listen = "127.0.0.1:$web_port"
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
answer_as = "Bench Company, bonjour"

[card]
instructions = "Take a message."

[[route]]
name = "ring"
steps = [{ play = "default/beep.wav" }, { secretary = { timeout = 2, strategy = "longest-idle" } }, { hangup = {} }]
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
        -m 1 -i 127.0.0.1 -p $((phone_port + i)) -timeout 8s -timeout_error -nostdin "127.0.0.1:$sip_port" \
        >"$tmp/register.out" 2>&1 || { tail -20 "$tmp/register.out" >&2; die "registration of s$i failed"; }
done

(cd "$root" && exec cargo bench --bench console_client -- --web "127.0.0.1:$web_port" \
    --secretaries "$secretaries" --phone-port "$phone_port" --seconds $((seconds + 15))) \
    >"$tmp/client.out" 2>"$tmp/client.err" &
client_pid=$!
pids+=("$client_pid")
for _ in $(seq 200); do
    grep -q READY "$tmp/client.out" 2>/dev/null && break
    kill -0 "$client_pid" 2>/dev/null || { cat "$tmp/client.err" >&2; die "console_client ended"; }
    sleep 0.1
done
grep -q READY "$tmp/client.out" || die "console_client not ready"

(exec timeout "$budget" "$tmp/rtp_sink" --port "$sink_port" --seconds "$budget" >"$tmp/sink.json") &
pids+=($!)

read_cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$server_pid/stat"; }
hz="$(getconf CLK_TCK)"
echo "placing $calls calls at $rate calls/s with $secretaries consoles connected..."
cpu1="$(read_cpu)"
t1="$(date +%s.%N)"
(cd "$tmp" && exec timeout "$budget" sipp -sf "$scenarios/call.xml" -m "$calls" -l "$calls" \
    -r "$rate" -s +33199999999 -key caller +33612345678 -key rtp_port "$sink_port" -key offer 0 \
    -i 127.0.0.1 -p "$caller_port" -mp "$caller_media" -timeout "$((budget - 5))s" -timeout_error \
    -nostdin "127.0.0.1:$sip_port" >"$tmp/callers.out" 2>&1) && sipp_rc=0 || sipp_rc=$?
cpu2="$(read_cpu)"
t2="$(date +%s.%N)"
wait "$client_pid" || true

db="$tmp/data/permanence.db"
done_calls="$(sqlite3 "$db" "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL")"
client="$(sed -n 's/^RESULT //p' "$tmp/client.out")"
[[ -n $client ]] || { cat "$tmp/client.err" >&2; die "no result from console_client"; }
cpu_pct="$(awk -v a="$cpu1" -v b="$cpu2" -v t1="$t1" -v t2="$t2" -v hz="$hz" 'BEGIN { printf "%.1f", 100 * (b - a) / hz / (t2 - t1) }')"
echo "calls ended: $done_calls of $calls (SIPp exit status $sipp_rc: 0 when every call succeeded)"
echo "server CPU during the load: $cpu_pct % of one core"
echo "card delay after the INVITE: $client"
echo "RESULT {\"rate\":$rate,\"seconds\":$seconds,\"consoles\":$secretaries,\"calls_ended\":$done_calls,\"server_cpu_pct\":$cpu_pct,\"card\":$client}"
