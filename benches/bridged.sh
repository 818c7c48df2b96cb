#!/usr/bin/env bash
# bridged.sh - concurrent bridged calls: caller <-> server <-> secretary, RTP both ways.
#
# Usage: benches/bridged.sh [--calls 500] [--ramp 10] [--hold 20] [--bin PATH] [--keep]
#
# What it does, all on 127.0.0.1 and bounded in time:
#   1. a temp config with --calls secretaries (s1..sN, password "pw", serving company
#      "bench") and a plan whose only step is `secretary` (longest-idle: one INVITE per
#      call); keep-alives off, no wrap-up;
#   2. SIPp registers every secretary from one port (tests/scenarios/register.xml, digest
#      auth; one SIPp run per secretary), then another SIPp binds that port and plays
#      all their phones (bench_secretary.xml): it answers every INVITE at once and, with
#      -rtp_echo, sends every RTP packet it receives back to the server;
#   3. a third SIPp places --calls calls over --ramp seconds (bench_talk.xml); each
#      streams a 600 Hz PCMU tone (SIPp rtp_stream) for ramp + hold + 10 s, then hangs up.
#      So every packet a caller sends is relayed twice by the server: to the secretary,
#      and (echoed) back to the caller;
#   4. once every call is up, the server's CPU is read over --hold seconds
#      (/proc/<pid>/stat utime+stime) and its RSS (VmRSS) compared with before the calls;
#   5. at the end the server's log gives `rtp_relayed` (packets relayed, both directions).
#
# Prints: calls answered by a secretary (from SQLite), server CPU % of one core with all
# calls bridged, CPU per bridged call, RSS per bridged call, packets relayed per call and
# per call-second, and a final `RESULT {json}` line. Exit status 0 only if every call
# succeeded.
#
# Needs: sipp (with RTPSTREAM, Debian's sip-tester 3.6), sox, md5sum, awk, sqlite3 is not
# needed (the server's CLI reads the records).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "bridged.sh: $*" >&2; exit 1; }

calls=500
ramp=10
hold=20
# Where `cargo build --release` put it (CARGO_TARGET_DIR when set).
bin="${CARGO_TARGET_DIR:-$root/target}/release/permanence"
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --calls) calls="$2"; shift 2 ;;
        --ramp) ramp="$2"; shift 2 ;;
        --hold) hold="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for v in calls ramp hold; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer"
done
[[ -x $bin ]] || die "no server binary at $bin (run: cargo build --release)"
for tool in sipp sox md5sum awk; do command -v "$tool" >/dev/null || die "missing tool: $tool"; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

sip_port=15080
phone_port=15081
phone_media=15200
caller_port=15083
caller_media=16000
talk=$((ramp + hold + 10))

tmp="$(mktemp -d /tmp/permanence-bridged.XXXXXX)"
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
max_calls = $((calls + 100))
# SIPp brings every call from one address: the per-source INVITE rate limit is off here.
max_invites_per_second_per_source = 0
[registrar]
keepalive_seconds = 0
max_expires = 7200
[distribution]
wrap_up_seconds = 0
EOF
    for i in $(seq 1 "$calls"); do
        ha1="$(printf '%s' "s$i:permanence:pw" | md5sum | cut -d' ' -f1)"
        printf '[[secretaries]]\nname = "S%d"\nusername = "s%d"\nha1_md5 = "%s"\nha1_sha256 = ""\ncompanies = ["bench"]\n' "$i" "$i" "$ha1"
    done
} >"$tmp/permanence.toml"
cat >"$tmp/dialplans/bench.toml" <<'EOF'
[company]
id = "bench"
name = "Bench Company"
numbers = ["+33199999999"]
country = "FR"
timezone = "Europe/Paris"
language = "en"

[[route]]
name = "secretaries"
steps = [{ secretary = { timeout = 30, strategy = "longest-idle" } }, { hangup = {} }]
EOF
sox -n -r 8000 -c 1 -e u-law "$tmp/tone.wav" synth 10 sine 600 vol 0.5
# The floor (benches/floor.rs): one sendto and one recvfrom of a 172-byte datagram on this
# machine, before and after the calls; a relayed packet costs at least one of each.
command -v rustc >/dev/null || die "missing rustc (to build benches/floor.rs)"
rustc -O --edition 2024 "$here/floor.rs" -o "$tmp/floor" 2>"$tmp/rustc-floor.log" ||
    { cat "$tmp/rustc-floor.log" >&2; die "could not compile floor"; }
"$tmp/floor" --packets 100000 >"$tmp/floor_before.json" || die "the floor benchmark failed"
scenarios="$root/tests/scenarios"

RUST_LOG=warn,permanence::server=info "$bin" serve --config "$tmp/permanence.toml" 2>"$tmp/server.log" &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 100); do
    grep -q "Permanence listening" "$tmp/server.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "Permanence listening" "$tmp/server.log" || { cat "$tmp/server.log" >&2; die "server did not start"; }

echo "registering $calls secretaries (one SIPp each: SIPp 3.6 cannot take digest credentials from -inf)..."
for i in $(seq 1 "$calls"); do
    timeout 10 sipp -sf "$scenarios/register.xml" -key username "s$i" -key expires 3600 -au "s$i" -ap pw \
        -m 1 -i 127.0.0.1 -p "$phone_port" -timeout 8s -timeout_error -nostdin "127.0.0.1:$sip_port" \
        >"$tmp/register.out" 2>&1 || { tail -20 "$tmp/register.out" >&2; die "registration of s$i failed"; }
done

(cd "$tmp" && exec timeout $((talk + ramp + 120)) sipp -sf "$scenarios/bench_secretary.xml" -m "$calls" \
    -i 127.0.0.1 -p "$phone_port" -mp "$phone_media" -rtp_echo -timeout $((talk + ramp + 100))s \
    -nostdin -trace_err "127.0.0.1:$sip_port" >"$tmp/phones.out" 2>&1) &
phones_pid=$!
pids+=("$phones_pid")
sleep 1

read_cpu() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
read_rss() { awk '/^VmRSS/ { print $2 }' "/proc/$server_pid/status"; }
hz="$(getconf CLK_TCK)"
rss_before="$(read_rss)"

rate="$(awk -v c="$calls" -v r="$ramp" 'BEGIN { printf "%.3f", c / r }')"
echo "placing $calls calls at $rate calls/s, each talking $talk s..."
# SIPp reads rtp_stream files when it loads the scenario: the path goes in literally.
sed "s|\[audio_wav\]|$tmp/tone.wav|" "$scenarios/bench_talk.xml" >"$tmp/bench_talk.xml"
(cd "$tmp" && exec timeout $((talk + ramp + 120)) sipp -sf "$tmp/bench_talk.xml" -m "$calls" -l "$calls" \
    -r "$rate" -d $((talk * 1000)) -s +33199999999 -key caller +33612345678 \
    -i 127.0.0.1 -p "$caller_port" -mp "$caller_media" -timeout $((talk + ramp + 100))s -timeout_error \
    -nostdin -trace_err "127.0.0.1:$sip_port" >"$tmp/callers.out" 2>&1) &
callers_pid=$!
pids+=("$callers_pid")

sleep $((ramp + 5))
live="$("$bin" calls --config "$tmp/permanence.toml" --limit $((calls + 10)) --json | grep -c '"outcome":null' || true)"
cpu1="$(read_cpu)"
t1="$(date +%s.%N)"
sleep "$hold"
cpu2="$(read_cpu)"
t2="$(date +%s.%N)"
rss_held="$(read_rss)"

callers_ok=0
wait "$callers_pid" && callers_ok=1
wait "$phones_pid" || true
"$tmp/floor" --packets 100000 >"$tmp/floor_after.json" || die "the floor benchmark failed"
floor_get() { # floor_get KEY -> mean of KEY over both floor runs
    awk -v k="$1" '{ s = $0; sub(".*\"" k "\":", "", s); sub(/[,}].*/, "", s); t += s; n++ }
        END { printf "%.3f", t / n }' "$tmp/floor_before.json" "$tmp/floor_after.json"
}
floor_send="$(floor_get sendto_us)"
floor_recv="$(floor_get recvfrom_us)"
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" || true

handled="$("$bin" calls --config "$tmp/permanence.toml" --limit $((calls + 10)) --json | grep -c '"outcome":"secretary"' || true)"
relayed="$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/server.log" | sed -n 's/.*rtp_relayed=\([0-9]*\).*/\1/p' | tail -1)"
relayed="${relayed:-0}"

awk -v live="$live" -v calls="$calls" -v handled="$handled" -v c1="$cpu1" -v c2="$cpu2" -v t1="$t1" -v t2="$t2" \
    -v hz="$hz" -v r0="$rss_before" -v r1="$rss_held" -v relayed="$relayed" -v talk="$talk" -v ok="$callers_ok" \
    -v fs="$floor_send" -v fr="$floor_recv" '
BEGIN {
    cpu = (c2 - c1) / hz / (t2 - t1) * 100
    per_call_us = (c2 - c1) / hz / (t2 - t1) / live * 1e6
    rss = (r1 - r0) / live
    per_call = relayed / calls
    printf "calls bridged at once (measured)    %d of %d\n", live, calls
    printf "calls handled by a secretary        %d\n", handled
    printf "server CPU, all calls bridged       %.1f %% of one core\n", cpu
    printf "CPU per bridged call                %.1f us per second of call\n", per_call_us
    printf "RSS per bridged call                %.1f KiB\n", rss
    printf "RTP packets relayed per call        %d (expected about %d: 2 x 50 pps x %d s)\n", per_call, 2 * 50 * talk, talk
    # A bridged call relays 100 packets a second (50 each way), each one a receive and a send.
    per_pkt = per_call_us / 100
    x = per_pkt / (fs + fr)
    printf "floor (benches/floor.rs)            sendto %.3f us + recvfrom %.3f us = %.3f us per relayed packet\n", fs, fr, fs + fr
    printf "CPU per relayed packet              %.2f us = %.2f x the floor\n", per_pkt, x
    printf "RESULT {\"floor\":{\"sendto_us\":%.3f,\"recvfrom_us\":%.3f},\"us_per_relayed_packet\":%.2f,\"x_floor\":%.2f,\"calls\":%d,\"live\":%d,\"handled\":%d,\"cpu_pct\":%.1f,\"cpu_us_per_call_s\":%.1f,\"rss_kib_per_call\":%.1f,\"relayed_per_call\":%d,\"ok\":%d}\n", fs, fr, per_pkt, x, calls, live, handled, cpu, per_call_us, rss, per_call, ok
}'
[[ $callers_ok == 1 && $handled == "$calls" ]]
