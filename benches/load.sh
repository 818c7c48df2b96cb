#!/usr/bin/env bash
# load.sh - load benchmark driver for the Permanence SIP server.
#
# Usage (from anywhere; paths are resolved from this script's location):
#   benches/load.sh rate       [--rate 200] [--calls 4000] [options]
#   benches/load.sh concurrent [--calls 1000] [--ramp 5] [options]
#
# Modes
#   rate        SIPp (tests/scenarios/bench.xml) places --calls calls at --rate
#               calls/s; each call hears a 3 s greeting and is hung up by the
#               server. Above 500 calls/s two SIPp processes share the load,
#               each at half the rate. Prints successful/failed calls, the
#               achieved call rate, server CPU seconds per 1000 calls, server
#               peak RSS and RSS per concurrent call, and 503 responses.
#   concurrent  Holds --calls calls at once, each hearing a 20 s greeting,
#               ramped in over --ramp seconds (rate = calls / ramp). Prints
#               server CPU, peak RSS, RSS per call and the RTP sink's figures
#               (packets received per call, inter-packet spacing p99).
#   In both modes every call's SDP points at one RTP sink (benches/rtp_sink.rs)
#   which counts what the server sends.
#
# Options
#   --bin PATH          server binary (default: target/release/permanence;
#                       build it first with `cargo build --release`)
#   --sink PATH         rtp_sink binary (default: compiled from
#                       benches/rtp_sink.rs with rustc into the temp dir)
#   --transport udp|tcp SIP transport for SIPp (default udp; tcp = one
#                       connection per SIPp process)
#   --greeting S        greeting length in seconds (default 3 rate, 20 concurrent)
#   --sip-port P        server SIP port (default 15060)
#   --sink-port P       RTP sink port (default 17000)
#                       (SIPp itself uses local ports 16059-16061)
#   --max-calls N       server [limits] max_calls (default 4000, or --calls
#                       in concurrent mode if larger)
#   --keep              keep the temp dir (config, logs, SIPp CSVs) afterwards
#
# What it does: makes a temp dir with permanence.toml, dialplans/bench.toml
# and sounds/bench/greeting.wav (sox sine 440 Hz), starts the server
# (`permanence serve --config <tmp>/permanence.toml`, RUST_LOG defaults to
# warn), waits until it answers OPTIONS, starts the sink, runs SIPp, then
# reads the server's CPU time (utime+stime, /proc/<pid>/stat) and peak RSS
# (VmHWM, /proc/<pid>/status). Everything listens on 127.0.0.1 only. Every
# run is bounded: SIPp -m and -timeout (plus a hard `timeout`), the sink
# --seconds. Server, sink and SIPp are killed on exit (trap).
#
# Figures printed are all measured in this run:
#   achieved calls/s    calls created per second during injection, from
#                       SIPp's -trace_stat CSV (100 ms samples of the created
#                       count; summed over SIPp processes)
#   CPU s / 1000 calls  server (utime+stime) delta over the SIPp run / calls
#                       completed (successful+failed) * 1000
#   RSS per call        (VmHWM - VmRSS before the load) / peak concurrent calls,
#                       the peak being the maximum of SIPp's CurrentCall
#                       (100 ms samples, summed over SIPp processes)
#   503 responses       SIPp -trace_counts, 503 received
#   INVITE->200 ms      per call, SIPp -trace_rtt (1 ms resolution): p50/p99/max
#   the floor          benches/floor.rs, run before the server starts and after
#                       the load: one sendto, one send on a connected socket and
#                       one recvfrom of a 172-byte datagram on loopback (thread CPU,
#                       no wake-up); the mean of the two runs is used
#   x floor             a call's server CPU / (its packets x one sendto of the
#                       floor), and the RTP thread's CPU per packet / one sendto
#   by thread           CPU of the server's main thread (signalling) and of its
#                       writer thread per call, and of its RTP thread per packet
#                       the sink counted (/proc/<pid>/task/*/stat)
# A final line `RESULT {json}` repeats the figures for scripts. Exit status:
# 0 only if every asked call succeeded.
#
# Needs: sipp, sox, awk, getconf, chrt (util-linux), rustc (for the floor, and the
# sink unless --sink).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

die() { echo "load.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

mode="${1:-}"
case "$mode" in
    rate | concurrent) shift ;;
    -h | --help) usage 0 ;;
    *) usage 2 >&2 ;;
esac

rate=200
calls=""
ramp=5
bin="$root/target/release/permanence"
sink_bin=""
transport=udp
greeting=""
sip_port=15060
sink_port=17000
max_calls=""
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rate) rate="$2"; shift 2 ;;
        --calls) calls="$2"; shift 2 ;;
        --ramp) ramp="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --sink) sink_bin="$2"; shift 2 ;;
        --transport) transport="$2"; shift 2 ;;
        --greeting) greeting="$2"; shift 2 ;;
        --sip-port) sip_port="$2"; shift 2 ;;
        --sink-port) sink_port="$2"; shift 2 ;;
        --max-calls) max_calls="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) usage 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[[ -z $calls || $calls =~ ^[1-9][0-9]*$ ]] || die "--calls must be a positive integer"
if [[ $mode == rate ]]; then
    calls="${calls:-4000}"
    greeting="${greeting:-3}"
    max_calls="${max_calls:-4000}"
else
    calls="${calls:-1000}"
    greeting="${greeting:-20}"
    max_calls="${max_calls:-$((calls > 4000 ? calls : 4000))}"
    rate="$(awk -v c="$calls" -v r="$ramp" 'BEGIN { printf "%.3f", c / r }')"
fi
is_num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
for v in rate calls ramp greeting sip_port sink_port max_calls; do
    is_num "${!v}" || die "--${v//_/-} must be a number (got '${!v}')"
done
awk -v r="$rate" 'BEGIN { exit !(r > 0) }' || die "--rate must be > 0"
case "$transport" in
    udp) sipp_t=u1 ;;
    tcp) sipp_t=t1 ;;
    *) die "--transport must be udp or tcp" ;;
esac
[[ -x $bin ]] || die "no server binary at $bin (run: cargo build --release)"
for tool in sipp sox awk getconf; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

# Many calls = many sockets (RTP ports, SIPp, TCP).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

tmp="$(mktemp -d /tmp/permanence-load.XXXXXX)"
server_pid=""
sink_pid=""
sipp_pids=()

stop_pid() { # stop_pid PID: TERM, then KILL after 5 s
    local pid="$1" i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${sipp_pids[@]}"; do stop_pid "$p"; done
    stop_pid "$sink_pid"
    stop_pid "$server_pid"
    if [[ $keep == 1 ]]; then
        echo "temp dir kept: $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- temp setup
mkdir -p "$tmp/data" "$tmp/dialplans" "$tmp/sounds/bench"
cat >"$tmp/permanence.toml" <<EOF
# Generated by benches/load.sh ($mode mode)
[sip]
listen = "127.0.0.1:$sip_port"
transports = ["udp", "tcp"]

[media]
address = "127.0.0.1"
rtp_port_min = 20000
rtp_port_max = 39999

[paths]
data = "data"
dialplans = "dialplans"
sounds = "sounds"

[limits]
max_calls = $max_calls
# SIPp brings every call from one address: the per-source INVITE rate limit is off here.
max_invites_per_second_per_source = 0
EOF
cat >"$tmp/dialplans/bench.toml" <<'EOF'
[company]
id = "bench"
name = "Bench Company"
numbers = ["+33199999999"]
country = "FR"
timezone = "Europe/Paris"
language = "en"

[[route]]
name = "greeting"
steps = [{ play = "bench/greeting.wav" }, { hangup = {} }]
EOF
sox -n -r 8000 -c 1 -b 16 "$tmp/sounds/bench/greeting.wav" synth "$greeting" sine 440
cp "$root/tests/scenarios/bench.xml" "$root/tests/scenarios/options.xml" "$tmp/"

if [[ -z $sink_bin ]]; then
    command -v rustc >/dev/null || die "missing rustc (or pass --sink PATH)"
    rustc -O --edition 2024 "$here/rtp_sink.rs" -o "$tmp/rtp_sink" 2>"$tmp/rustc.log" ||
        { cat "$tmp/rustc.log" >&2; die "could not compile rtp_sink"; }
    sink_bin="$tmp/rtp_sink"
fi
[[ -x $sink_bin ]] || die "no rtp_sink at $sink_bin"
# The floor (benches/floor.rs): one sendto and one recvfrom of a 172-byte datagram on this
# machine, measured before and after the load; every cost below is also given as a multiple
# of it, since the machine is shared and absolute figures move with its load.
command -v rustc >/dev/null || die "missing rustc (to build benches/floor.rs)"
rustc -O --edition 2024 "$here/floor.rs" -o "$tmp/floor" 2>"$tmp/rustc-floor.log" ||
    { cat "$tmp/rustc-floor.log" >&2; die "could not compile floor"; }

# ------------------------------------------------------------------- helpers
first_file() { # first_file GLOB-RESULTS... -> the first that exists, or nothing
    local f
    for f in "$@"; do [[ -e $f ]] && { echo "$f"; return 0; }; done
    return 0
}
clk_tck="$(getconf CLK_TCK)"
cpu_ticks() { # utime + stime of PID, in clock ticks (fields 14, 15)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
# thread_ticks PID -> "signalling rtp writer" clock ticks: the server's main thread (the
# signalling runtime, its id the process's), the RTP engine and the store's writer thread
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do cat "$t/stat" 2>/dev/null || true; done | awk -v pid="$1" '{
        c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) .*$/, "", c)
        s = $0; sub(/^.*\) /, "", s); split(s, f, " ")
        if ($1 == pid) g += f[12] + f[13]
        else if (c == "rtp-engine") r += f[12] + f[13]
        else if (c == "store-writer") w += f[12] + f[13]
    } END { printf "%d %d %d\n", g, r, w }'
}
# wakeups PID -> voluntary context switches of the main thread (signalling): one per
# time it found nothing to do and slept
wakeups() { awk '$1 == "voluntary_ctxt_switches:" { print $2 }' "/proc/$1/task/$1/status"; }
# run_floor OUT -> the floor's JSON line in OUT (its human line on the terminal)
run_floor() { "$tmp/floor" --packets 100000 >"$1" || die "the floor benchmark failed"; }
status_kb() { # status_kb PID FIELD -> value in kB from /proc/PID/status
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
# csv_last FILE COLUMN -> COLUMN of the last row of a SIPp ';' CSV
csv_last() {
    awk -F';' -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
        { v = $k } END { if (k) print v + 0; else print "NA" }' "$1"
}
# peak_concurrent FILE... -> max over time of the summed CurrentCall of
# SIPp processes started together (rows matched by index, 100 ms apart)
peak_concurrent() {
    awk -F';' 'FNR == 1 { for (i = 1; i <= NF; i++) if ($i == "CurrentCall") k = i; next }
        { s[FNR] += $k } END { for (r in s) if (s[r] > m) m = s[r]; print m + 0 }' "$@"
}
# csv_rate FILE -> calls created per second, from CurrentTime (its epoch
# part) and OutgoingCall(C): slope between the first sample with a call and
# the last sample before the final count (samples inside the injection
# window, so the 100 ms sampling does not bias it); falls back to the first
# sample with the final count when the window holds fewer than 2 samples.
csv_rate() {
    awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "CurrentTime") t = i;
                  if ($i == "OutgoingCall(C)") o = i }; next }
        { n = split($t, a, "\t"); ts[++m] = a[n] + 0; c[m] = $o + 0 }
        END { fin = c[m]; for (i = 1; i <= m && c[i] == 0; i++); i0 = i
              for (k = m; k > i0 && c[k] == fin; k--); i1 = k
              if (i1 <= i0) for (i1 = i0; i1 < m && c[i1] < fin; i1++);
              if (i0 <= m && i1 > i0 && ts[i1] > ts[i0]) printf "%.1f", (c[i1] - c[i0]) / (ts[i1] - ts[i0]); else print "NA" }' "$1"
}
# counts_sum FILE SUFFIX -> sum over columns ending in SUFFIX, last row
counts_sum() {
    awk -F';' -v s="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if (substr($i, length($i) - length(s) + 1) == s) k[i] = 1; next }
        { last = $0 } END { n = split(last, v, ";"); t = 0; for (i in k) t += v[i]; print t + 0 }' "$1"
}

# ------------------------------------------------------------------- floor
run_floor "$tmp/floor_before.json"

# -------------------------------------------------------------- start server
echo "== Permanence load test: $mode, $calls calls, rate $rate/s, greeting ${greeting}s, $transport"
echo "   server: $bin"
echo "   temp:   $tmp"
RUST_LOG="${RUST_LOG:-warn}" "$bin" serve --config "$tmp/permanence.toml" \
    >"$tmp/server.log" 2>&1 &
server_pid=$!

# Ready when it answers OPTIONS (up to 15 s).
ready=0
for _ in $(seq 30); do
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$tmp/server.log" >&2; die "server exited at start"; }
    if (cd "$tmp" && timeout 5 sipp -sf options.xml -m 1 -i 127.0.0.1 -p 16059 -t "$sipp_t" \
        -timeout 1s -timeout_error -nostdin "127.0.0.1:$sip_port" >/dev/null 2>&1); then
        ready=1
        break
    fi
    sleep 0.5
done
[[ $ready == 1 ]] || { tail -20 "$tmp/server.log" >&2; die "server did not answer OPTIONS on 127.0.0.1:$sip_port"; }

# ----------------------------------------------------------------- run load
inject_s="$(awk -v c="$calls" -v r="$rate" 'BEGIN { printf "%d", c / r + 1 }')"
# Sink: lives through the whole run; ends 3 s after the last packet.
sink_secs=$((inject_s + ${greeting%.*} + 40))
# Load generators run SCHED_BATCH: on loopback every packet we send wakes them, and a
# normal-policy wakee preempts the server's thread on the same core, so the server would
# pay for context switches that a remote peer never causes. Batch tasks never preempt.
chrt -b 0 "$sink_bin" --port "$sink_port" --seconds "$sink_secs" >"$tmp/sink.json" 2>"$tmp/sink.err" &
sink_pid=$!
sleep 0.2
kill -0 "$sink_pid" 2>/dev/null || { cat "$tmp/sink.err" >&2; die "rtp_sink did not start"; }

if awk -v r="$rate" 'BEGIN { exit !(r > 500) }'; then nsipp=2; else nsipp=1; fi
# SIPp's global timeout: injection + greeting + the scenario's 30 s BYE wait + margin.
sipp_timeout=$((inject_s + ${greeting%.*} + 45))

rss_base_kb="$(status_kb "$server_pid" VmRSS)"
cpu0="$(cpu_ticks "$server_pid")"
read -r sig0 rtp0 wr0 <<<"$(thread_ticks "$server_pid")"
wake0="$(wakeups "$server_pid")"
t_start="$(date +%s.%N)"
for i in $(seq 0 $((nsipp - 1))); do
    # Split calls and rate; the last process takes the remainder.
    n=$((calls / nsipp))
    [[ $i == $((nsipp - 1)) ]] && n=$((calls - n * (nsipp - 1)))
    r="$(awk -v r="$rate" -v k="$nsipp" 'BEGIN { printf "%.3f", r / k }')"
    # Concurrency cap: the calls themselves (concurrent) or the server's limit.
    if [[ $mode == concurrent ]]; then l=$n; else l=$((max_calls / nsipp)); fi
    d="$tmp/sipp$i"
    mkdir -p "$d"
    (
        cd "$d"
        exec chrt -b 0 timeout -s KILL $((sipp_timeout + 30)) sipp -sf "$tmp/bench.xml" \
            -i 127.0.0.1 -p $((16060 + i)) -t "$sipp_t" \
            -s +33199999999 -key caller +33612345678 \
            -key rtp_port "$sink_port" -key offer "0 8 101" \
            -r "$r" -m "$n" -l "$l" \
            -timeout "${sipp_timeout}s" -timeout_error -nostdin \
            -trace_stat -stf "$d/stat.csv" -fd 100ms \
            -trace_counts -trace_rtt -rtt_freq 1 -trace_err -error_file "$d/errors.log" \
            "127.0.0.1:$sip_port" >"$d/sipp.out" 2>&1
    ) &
    sipp_pids+=($!)
done
sipp_rc=0
for p in "${sipp_pids[@]}"; do
    wait "$p" || sipp_rc=$?
done
sipp_pids=()
t_end="$(date +%s.%N)"

kill -0 "$server_pid" 2>/dev/null || { tail -20 "$tmp/server.log" >&2; die "server died during the run"; }
cpu1="$(cpu_ticks "$server_pid")"
read -r sig1 rtp1 wr1 <<<"$(thread_ticks "$server_pid")"
wake1="$(wakeups "$server_pid")"
hwm_kb="$(status_kb "$server_pid" VmHWM)"

# The sink ends by itself 3 s after the last packet; if it is still running
# 6 s after SIPp, it never received anything (or RTP never stopped).
for _ in $(seq 60); do
    kill -0 "$sink_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$sink_pid" 2>/dev/null; then
    stop_pid "$sink_pid"
    sink_json=""
else
    wait "$sink_pid" 2>/dev/null || true
    sink_json="$(tail -1 "$tmp/sink.json")"
fi
sink_pid=""
run_floor "$tmp/floor_after.json"

# ------------------------------------------------------------------ figures
ok=0 failed=0 created=0 peak=0 n503=0 n503_missing=0 rate_sum=0
: >"$tmp/rtt_ms.txt"
for i in $(seq 0 $((nsipp - 1))); do
    d="$tmp/sipp$i"
    [[ -s $d/stat.csv ]] || { tail -20 "$d/sipp.out" >&2; die "SIPp $i wrote no statistics"; }
    ok=$((ok + $(csv_last "$d/stat.csv" 'SuccessfulCall(C)')))
    failed=$((failed + $(csv_last "$d/stat.csv" 'FailedCall(C)')))
    created=$((created + $(csv_last "$d/stat.csv" 'OutgoingCall(C)')))
    r="$(csv_rate "$d/stat.csv")"
    rate_sum="$(awk -v a="$rate_sum" -v b="$r" 'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.1f", a + b }')"
    counts="$(first_file "$d"/*_counts.csv "$tmp"/bench_*_counts.csv)"
    if [[ -n $counts ]]; then
        n503=$((n503 + $(counts_sum "$counts" _503_Recv)))
        mv "$counts" "$d/counts.csv" 2>/dev/null || true
    else
        n503_missing=1
    fi
    # Per-call INVITE->200 times (ms), from -trace_rtt.
    rtt="$(first_file "$d"/*_rtt.csv)"
    [[ -n $rtt ]] && awk -F';' 'NR > 1 { print $2 }' "$rtt" >>"$tmp/rtt_ms.txt"
done
[[ $n503_missing == 0 ]] || n503=NA
peak="$(peak_concurrent "$tmp"/sipp*/stat.csv)"
# INVITE->200 percentiles over all calls (nearest rank).
rtt_stats="$(sort -n "$tmp/rtt_ms.txt" 2>/dev/null | awk '{ v[NR] = $1 }
    function pct(p) { i = int(p * NR / 100 + 0.999999); if (i < 1) i = 1; return v[i] }
    END { if (NR) printf "%s %s %s %s", NR, pct(50), pct(99), v[NR]; else print "0 NA NA NA" }')"
read -r rtt_n rtt_p50 rtt_p99 rtt_max <<<"$rtt_stats"
completed=$((ok + failed))
wall="$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')"
cpu_s="$(awk -v a="$cpu0" -v b="$cpu1" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }')"
cpu_per_k="$(awk -v c="$cpu_s" -v n="$completed" 'BEGIN { if (n > 0) printf "%.3f", c / n * 1000; else print "NA" }')"
cpu_pct="$(awk -v c="$cpu_s" -v w="$wall" 'BEGIN { printf "%.1f", 100 * c / w }')"
# The floor: the mean of the runs before and after the load.
floor_get() { # floor_get KEY -> mean of KEY over both floor runs
    awk -v k="$1" '{ s = $0; sub(".*\"" k "\":", "", s); sub(/[,}].*/, "", s); t += s; n++ }
        END { printf "%.3f", t / n }' "$tmp/floor_before.json" "$tmp/floor_after.json"
}
floor_send="$(floor_get sendto_us)"
floor_recv="$(floor_get recvfrom_us)"
floor_conn="$(floor_get send_connected_us)"
rss_per_call="$(awk -v h="$hwm_kb" -v b="$rss_base_kb" -v p="$peak" 'BEGIN { if (p > 0) printf "%.1f", (h - b) / p; else print "NA" }')"

echo
echo "== Results ($mode)"
printf '  calls: %d successful, %d failed (of %d created, %d asked); SIPp exit %d\n' \
    "$ok" "$failed" "$created" "$calls" "$sipp_rc"
printf '  503 responses: %s\n' "$n503"
printf '  achieved call rate: %s calls/s (asked %s); run wall time %s s\n' "$rate_sum" "$rate" "$wall"
printf '  peak concurrent calls (SIPp): %d\n' "$peak"
printf '  server CPU: %s s over the run (%s%% of one core), %s s per 1000 calls\n' \
    "$cpu_s" "$cpu_pct" "$cpu_per_k"
printf '  server RSS: %d KiB before, peak (VmHWM) %d KiB, %s KiB per concurrent call\n' \
    "$rss_base_kb" "$hwm_kb" "$rss_per_call"
printf '  INVITE->200 time (ms, SIPp, %s calls): p50 %s, p99 %s, max %s\n' "$rtt_n" "$rtt_p50" "$rtt_p99" "$rtt_max"

# Every cost against the floor. Packets sent: what the sink counted (else what the
# greetings should have sent). "x floor" = CPU / (packets x one sendto of the floor).
sink_packets=""
[[ -n $sink_json ]] && sink_packets="$(s="${sink_json#*\"packets\":}"; echo "${s%%[,\}]*}")"
[[ $sink_packets =~ ^[0-9]+$ && $sink_packets -gt 0 ]] || sink_packets=$((completed * greeting * 50))
read -r call_us call_x rtp_us rtp_x sig_ms wr_ms sig_wake <<<"$(awk -v c="$cpu_s" -v n="$completed" -v p="$sink_packets" \
    -v f="$floor_send" -v hz="$clk_tck" -v g0="$sig0" -v g1="$sig1" -v r0="$rtp0" -v r1="$rtp1" -v w0="$wr0" -v w1="$wr1" \
    -v k0="$wake0" -v k1="$wake1" '
    BEGIN { if (n == 0 || p == 0 || f == 0) { print "NA NA NA NA NA NA NA"; exit }
        call = c / n * 1e6; per_call_pkts = p / n
        rtp = (r1 - r0) / hz / p * 1e6
        printf "%.0f %.2f %.3f %.2f %.3f %.3f %.2f\n", call, call / (per_call_pkts * f), rtp, rtp / f,
            (g1 - g0) / hz / n * 1e3, (w1 - w0) / hz / n * 1e3, (k1 - k0) / n }')"
echo "  floor (benches/floor.rs, mean of before and after): sendto $floor_send us, send on a connected socket $floor_conn us, recvfrom $floor_recv us per 172-byte datagram"
printf '  per call: %s us of server CPU for %s packets = %s x the floor of its packets\n' \
    "$call_us" "$(awk -v p="$sink_packets" -v n="$completed" 'BEGIN { printf "%.0f", p / n }')" "$call_x"
printf '  by thread: RTP engine %s us per packet sent (%s x floor), signalling %s ms per call (%s wake-ups), SQLite writer %s ms per call\n' \
    "$rtp_us" "$rtp_x" "$sig_ms" "$sig_wake" "$wr_ms"

pkt_median=NA pkt_min=NA sp_p99=NA drops=NA
if [[ -n $sink_json ]]; then
    jget() { # crude field reader for the sink's flat JSON: jget KEY [SUBKEY]
        local s="$sink_json"
        [[ $# == 2 ]] && s="${s#*\""$1"\":\{}" && set -- "$2"
        s="${s#*\""$1"\":}"
        echo "${s%%[,\}]*}"
    }
    pkt_min="$(jget per_ssrc min)"
    pkt_median="$(jget per_ssrc median)"
    sp_p99="$(jget spacing_us p99)"
    drops="$(jget kernel_drops)"
    expect=$(awk -v g="$greeting" 'BEGIN { printf "%d", g * 50 }')
    printf '  RTP sink: %s packets from %s streams; per call min %s / median %s / max %s (a %ss greeting is %d packets)\n' \
        "$(jget packets)" "$(jget ssrcs)" "$pkt_min" "$pkt_median" "$(jget per_ssrc max)" "$greeting" "$expect"
    printf '  RTP spacing (us): p50 %s, p99 %s, p99.9 %s, max %s; seq gaps %s; ts steps != 160: %s; sink kernel drops %s\n' \
        "$(jget spacing_us p50)" "$sp_p99" "$(jget spacing_us p999)" "$(jget spacing_us max)" \
        "$(jget seq_gaps)" "$(jget ts_steps_not_160)" "$drops"
    echo "  sink: $sink_json"
else
    echo "  RTP sink: no result (no RTP received; --keep keeps $tmp/sink.err)"
fi

num() { [[ $1 == NA ]] && echo null || echo "$1"; }
printf 'RESULT {"floor":{"sendto_us":%s,"send_connected_us":%s,"recvfrom_us":%s},"call_cpu_us":%s,"call_x_floor":%s,"rtp_us_per_packet":%s,"rtp_x_floor":%s,"signalling_ms_per_call":%s,"signalling_wakeups_per_call":%s,"writer_ms_per_call":%s,"mode":"%s","transport":"%s","calls_asked":%d,"rate_asked":%s,"greeting_s":%s,"created":%d,"successful":%d,"failed":%d,"n503":%s,"achieved_cps":%s,"peak_concurrent":%d,"wall_s":%s,"server_cpu_s":%s,"cpu_s_per_1000_calls":%s,"rss_base_kib":%d,"rss_peak_kib":%d,"rss_per_call_kib":%s,"invite_200_ms":{"p50":%s,"p99":%s,"max":%s},"sink":%s}\n' \
    "$floor_send" "$floor_conn" "$floor_recv" "$(num "$call_us")" "$(num "$call_x")" "$(num "$rtp_us")" "$(num "$rtp_x")" "$(num "$sig_ms")" "$(num "$sig_wake")" "$(num "$wr_ms")" \
    "$mode" "$transport" "$calls" "$rate" "$greeting" "$created" "$ok" "$failed" \
    "$( [[ $n503 == NA ]] && echo null || echo "$n503")" \
    "$( [[ $rate_sum == NA ]] && echo null || echo "$rate_sum")" \
    "$peak" "$wall" "$cpu_s" "$( [[ $cpu_per_k == NA ]] && echo null || echo "$cpu_per_k")" \
    "$rss_base_kb" "$hwm_kb" "$( [[ $rss_per_call == NA ]] && echo null || echo "$rss_per_call")" \
    "$(num "$rtt_p50")" "$(num "$rtt_p99")" "$(num "$rtt_max")" "${sink_json:-null}"

[[ $failed == 0 && $ok == "$calls" ]]
