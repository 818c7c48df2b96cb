#!/usr/bin/env bash
# webrtc.sh - concurrent bridged calls to browser phones: caller <-> server <-> WebRTC leg.
#
# Usage: benches/webrtc.sh [--calls 100] [--ramp 10] [--hold 20] [--bin PATH] [--keep]
#
# What it does, all on 127.0.0.1 and bounded in time (bridged.sh with browser phones in
# place of SIP phones):
#   1. a temp config with --calls secretaries (s1..sN, password "pw", serving company
#      "bench"), the console on [web] and /metrics, and a plan whose only step is
#      `secretary` (longest-idle: one ring per call); no wrap-up. No SIP phone registers;
#   2. benches/webrtc_client.rs (built with cargo bench, release) logs every secretary
#      into the console (POST /api/login), opens her live board (WebSocket) and turns her
#      browser phone on: an `rtc` peer connection per secretary, full ICE and DTLS with
#      the server. When a ring arrives it answers at once and sends a 1 kHz PCMU tone
#      every 20 ms; it times answer sent -> first RTP packet from the server;
#   3. SIPp places --calls calls over --ramp seconds (bench_talk.xml); each streams a
#      600 Hz PCMU tone for ramp + hold + 10 s, then hangs up. The server bridges each
#      caller with one browser phone: caller -> browser (SRTP) and browser -> caller;
#   4. once every call is up, over --hold seconds: the server's CPU (/proc/<pid>/stat, and
#      per thread), RSS against before the calls, RTP packets relayed (the
#      permanence_rtp_relayed_packets_total counter, both directions), and the packets that
#      reached the callers' media socket (SIPp 3.6's rtp_stream sends every call from one
#      socket, -mp, and never reads it: every packet to it is queued or dropped by the
#      kernel, and /proc/net/udp counts the drops once the queue is full);
#   5. the floor (benches/floor.rs) before and after, as bridged.sh.
#
# Prints: calls handled by a secretary, server CPU % of one core with all calls bridged
# and its main thread's (signalling, console and browser phones) and RTP engine's share,
# the main thread's CPU during the ramp (from the first call to the hold), CPU per
# bridged call-second, RSS per browser phone and per bridged call, packets relayed per
# call-second (and toward the callers alone), CPU per relayed packet as a multiple of the
# floor, the load client's own CPU over the hold (it shares the machine), the client's
# answer -> first audio p50/p95/max, and a final `RESULT {json}` line. Exit status 0
# only if every call succeeded and was answered by a browser phone that heard the caller
# and was told when the call ended.
#
# Needs: sipp (with RTPSTREAM, Debian's sip-tester 3.6), sox, md5sum, awk, curl, rustc,
# cargo (for the client; CARGO_TARGET_DIR is honoured, for the binary's default path too).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "webrtc.sh: $*" >&2; exit 1; }

calls=100
ramp=10
hold=20
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/release/permanence"
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
((calls <= 1000)) || die "--calls: at most 1000 (one UDP port each for the phones, from 40001)"
[[ -x $bin ]] || die "no server binary at $bin (run: cargo build --release)"
for tool in sipp sox md5sum awk curl rustc cargo; do command -v "$tool" >/dev/null || die "missing tool: $tool"; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# Ports of no other bench or test: SIP, console, metrics, the callers' SIP and media
# (SIPp's one media socket), the browser phones (phone i on phone_media + i).
sip_port=17080
web_port=17081
metrics_port=17082
caller_port=17083
caller_media=18000
phone_media=40000
talk=$((ramp + hold + 10))

tmp="$(mktemp -d /tmp/permanence-webrtc.XXXXXX)"
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

# The client first: building it may wait for cargo's lock; nothing runs yet.
echo "building webrtc_client (cargo bench --no-run)..."
(cd "$root" && cargo bench --bench webrtc_client --no-run --message-format=json) >"$tmp/cargo.json" 2>"$tmp/cargo.log" ||
    { tail -20 "$tmp/cargo.log" >&2; die "could not build webrtc_client"; }
client="$(sed -n 's/.*"executable":"\([^"]*webrtc_client[^"]*\)".*/\1/p' "$tmp/cargo.json" | tail -1)"
[[ -x $client ]] || die "no webrtc_client executable in cargo's output"
# A copy: another build in the same target directory cannot replace it mid-run.
cp "$client" "$tmp/webrtc_client"

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
[web]
listen = "127.0.0.1:$web_port"
[metrics]
listen = "127.0.0.1:$metrics_port"
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

read_cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/${1:-$server_pid}/stat"; }
read_rss() { awk '/^VmRSS/ { print $2 }' "/proc/$server_pid/status"; }
# read_threads -> "main rtp" clock ticks: the main thread (signalling, the console and
# every browser phone's task share its runtime) and the RTP engine's
read_threads() {
    local t
    for t in /proc/"$server_pid"/task/*; do cat "$t/stat" 2>/dev/null || true; done | awk -v pid="$server_pid" '{
        c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) .*$/, "", c)
        s = $0; sub(/^.*\) /, "", s); split(s, f, " ")
        if ($1 == pid) m += f[12] + f[13]
        else if (c == "rtp-engine") r += f[12] + f[13]
    } END { printf "%d %d\n", m, r }'
}
read_relayed() {
    curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '$1 == "permanence_rtp_relayed_packets_total" { print $2 }'
}
# read_to_callers -> packets the kernel dropped at the callers' media socket (full queue)
read_to_callers() {
    awk -v port="$(printf '%04X' "$caller_media")" '$2 == "0100007F:" port { print $NF; found = 1 }
        END { if (!found) print 0 }' /proc/net/udp | head -1
}
hz="$(getconf CLK_TCK)"
rss_start="$(read_rss)"

echo "logging $calls secretaries in and turning their browser phones on..."
"$tmp/webrtc_client" --web "127.0.0.1:$web_port" --secretaries "$calls" --rtp-port "$phone_media" \
    --seconds $((talk + ramp + 60)) --per-call "$tmp/per_call.txt" >"$tmp/client.out" 2>"$tmp/client.err" &
client_pid=$!
pids+=("$client_pid")
for _ in $(seq $((calls * 2 + 400))); do
    grep -q READY "$tmp/client.out" 2>/dev/null && break
    kill -0 "$client_pid" 2>/dev/null || { cat "$tmp/client.err" >&2; die "webrtc_client ended: $(cat "$tmp/client.out")"; }
    sleep 0.1
done
grep -q READY "$tmp/client.out" || { cat "$tmp/client.err" >&2; die "the browser phones did not all connect"; }
sleep 1
rss_before="$(read_rss)"

rate="$(awk -v c="$calls" -v r="$ramp" 'BEGIN { printf "%.3f", c / r }')"
# The ramp too: every call changes the desk, and every page gets boards of every seat.
read -r main0 _ <<<"$(read_threads)"
t0="$(date +%s.%N)"
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
client1="$(read_cpu "$client_pid")"
read -r main1 rtp1 <<<"$(read_threads)"
relayed1="$(read_relayed)"
callers1="$(read_to_callers)"
t1="$(date +%s.%N)"
sleep "$hold"
cpu2="$(read_cpu)"
client2="$(read_cpu "$client_pid")"
read -r main2 rtp2 <<<"$(read_threads)"
relayed2="$(read_relayed)"
callers2="$(read_to_callers)"
t2="$(date +%s.%N)"
rss_held="$(read_rss)"

callers_ok=0
wait "$callers_pid" && callers_ok=1
wait "$client_pid" || true
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
client_result="$(sed -n 's/^RESULT //p' "$tmp/client.out")"
[[ -n $client_result ]] || { cat "$tmp/client.err" >&2; die "no result from webrtc_client"; }
client_get() { # client_get KEY -> KEY's number in the client's RESULT
    sed -n "s/.*\"$1\":\([-0-9.a-zNA]*\).*/\1/p" <<<"$client_result"
}
answered="$(client_get answered)"
with_audio="$(client_get with_audio)"
hung_up="$(client_get hung_up)"
received="$(client_get received)"

awk -v live="$live" -v calls="$calls" -v handled="$handled" -v c1="$cpu1" -v c2="$cpu2" -v t1="$t1" -v t2="$t2" \
    -v hz="$hz" -v r00="$rss_start" -v r0="$rss_before" -v r1="$rss_held" -v relayed="$relayed" -v talk="$talk" \
    -v ok="$callers_ok" -v fs="$floor_send" -v fr="$floor_recv" -v m1="$main1" -v m2="$main2" -v q1="$rtp1" \
    -v q2="$rtp2" -v rl1="$relayed1" -v rl2="$relayed2" -v k1="$callers1" -v k2="$callers2" \
    -v answered="$answered" -v with_audio="$with_audio" -v received="$received" -v client="$client_result" \
    -v l1="$client1" -v l2="$client2" -v m0="$main0" -v t0="$t0" '
BEGIN {
    secs = t2 - t1
    cpu = (c2 - c1) / hz / secs * 100
    main_pct = (m2 - m1) / hz / secs * 100
    rtp_pct = (q2 - q1) / hz / secs * 100
    client_pct = (l2 - l1) / hz / secs * 100
    ramp_pct = (m1 - m0) / hz / (t1 - t0) * 100
    per_call_us = (c2 - c1) / hz / secs / live * 1e6
    rss_phone = (r0 - r00) / calls
    rss = (r1 - r0) / live
    relayed_pcs = (rl2 - rl1) / secs / live
    to_callers_pcs = (k2 - k1) / secs / live
    printf "calls bridged at once (measured)    %d of %d\n", live, calls
    printf "calls handled by a secretary        %d (answered by the browser phones: %d, with audio: %d)\n", handled, answered, with_audio
    printf "server CPU, all calls bridged       %.1f %% of one core (main thread %.1f %%, RTP engine %.1f %%)\n", cpu, main_pct, rtp_pct
    printf "main thread during the ramp         %.1f %% of one core (calls arriving, boards to every page)\n", ramp_pct
    printf "CPU per bridged call                %.1f us per second of call\n", per_call_us
    printf "RSS per browser phone (idle)        %.1f KiB\n", rss_phone
    printf "RSS per bridged call                %.1f KiB\n", rss
    printf "RTP relayed per call-second         %.1f (both ways; expected 100), toward the caller %.1f (expected 50)\n", relayed_pcs, to_callers_pcs
    printf "RTP packets relayed per call        %d (whole run, both ways)\n", relayed / calls
    per_pkt = per_call_us / 100
    x = per_pkt / (fs + fr)
    printf "floor (benches/floor.rs)            sendto %.3f us + recvfrom %.3f us = %.3f us per relayed packet\n", fs, fr, fs + fr
    printf "CPU per relayed packet              %.2f us = %.2f x the floor\n", per_pkt, x
    printf "the load client (browser phones)    %.1f %% of one core\n", client_pct
    printf "browser phones (webrtc_client)      %s\n", client
    printf "RESULT {\"floor\":{\"sendto_us\":%.3f,\"recvfrom_us\":%.3f},\"us_per_relayed_packet\":%.2f,\"x_floor\":%.2f,\"calls\":%d,\"live\":%d,\"handled\":%d,\"cpu_pct\":%.1f,\"main_pct\":%.1f,\"rtp_pct\":%.1f,\"client_pct\":%.1f,\"main_ramp_pct\":%.1f,\"cpu_us_per_call_s\":%.1f,\"rss_kib_per_phone\":%.1f,\"rss_kib_per_call\":%.1f,\"relayed_per_call_s\":%.1f,\"to_caller_per_call_s\":%.1f,\"relayed_per_call\":%d,\"ok\":%d,\"client\":%s}\n", fs, fr, per_pkt, x, calls, live, handled, cpu, main_pct, rtp_pct, client_pct, ramp_pct, per_call_us, rss_phone, rss, relayed_pcs, to_callers_pcs, relayed / calls, ok, client
}'
[[ $callers_ok == 1 && $handled == "$calls" && $answered == "$calls" && $with_audio == "$calls" && $hung_up == "$calls" ]]
