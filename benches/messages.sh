#!/usr/bin/env bash
# messages.sh - the console's inbox API on a database of many messages.
#
# Usage: benches/messages.sh [--messages 100000] [--companies 10] [--requests 300]
#                            [--bin PATH] [--keep]
#
# What it does, all on 127.0.0.1 and bounded in time:
#   1. a temp config with the console on, --companies companies (c01..cNN, a plan each)
#      and one secretary, alice (password "pw"), serving half of them;
#   2. the database created by the server's own migrations (`permanence messages`),
#      then filled by sqlite3 with --messages calls and their messages, one a minute
#      back from now, spread over the companies, categories and statuses, half of them
#      with a written note, caller's company and company fields (what a text search
#      reads);
#   3. the release server started on it; alice logs in (curl);
#   4. --requests requests of each kind, one after the other, each timed by curl
#      (time_total: connect, request, whole answer), after 10 unmeasured ones:
#        first    GET /api/messages                     (her inbox's first page, 50)
#        filtered GET /api/messages?company=c03&category=urgent&status=new&from=<30 days ago>
#        search   GET /api/messages?status=all&q=dossier 31338   (one message matches)
#        common   GET /api/messages?q=Lilas                      (half of them match)
#   5. p50 and p99 of each, and the server's RSS.
#
# Prints those figures and a final `RESULT {json}` line. Exit status 0 only if every
# request was answered 200.
#
# Needs: sqlite3, curl, md5sum, awk.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "messages.sh: $*" >&2; exit 1; }

messages=100000
companies=10
requests=300
bin="$root/target/release/permanence"
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --messages) messages="$2"; shift 2 ;;
        --companies) companies="$2"; shift 2 ;;
        --requests) requests="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for v in messages companies requests; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer"
done
((companies >= 2 && companies <= 99)) || die "--companies must be 2 to 99"
((messages <= 1000000)) || die "--messages at most 1,000,000"
((requests <= 5000)) || die "--requests at most 5,000"
[[ -x $bin ]] || die "no server binary at $bin (run: cargo build --release)"
for tool in sqlite3 curl md5sum awk; do command -v "$tool" >/dev/null || die "missing tool: $tool"; done

sip_port=15280
web_port=15281
tmp="$(mktemp -d /tmp/permanence-messages.XXXXXX)"
server_pid=""
stop() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if ((keep)); then echo "kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap stop EXIT

# 1. Config and plans: alice serves the odd-numbered companies.
mkdir -p "$tmp/dialplans" "$tmp/sounds" "$tmp/data"
cp -r "$root/sounds/default" "$tmp/sounds/"
ha1="$(printf 'alice:permanence:pw' | md5sum | cut -d' ' -f1)"
serves=""
for ((i = 1; i <= companies; i++)); do
    id="$(printf 'c%02d' "$i")"
    printf '[company]\nid = "%s"\nname = "Company %s"\nnumbers = ["+331800000%02d"]\n\n[[route]]\nname = "main"\nsteps = [{ hangup = {} }]\n' \
        "$id" "$id" "$i" >"$tmp/dialplans/$id.toml"
    if ((i % 2 == 1)); then serves+="${serves:+, }\"$id\""; fi
done
cat >"$tmp/permanence.toml" <<EOF
[sip]
listen = "127.0.0.1:$sip_port"
[web]
listen = "127.0.0.1:$web_port"
[paths]
data = "data"
dialplans = "dialplans"
sounds = "sounds"
[[secretaries]]
name = "Alice"
username = "alice"
ha1_md5 = "$ha1"
ha1_sha256 = ""
companies = [$serves]
EOF

# 2. The schema is the server's; the rows are generated in SQLite itself.
"$bin" messages --config "$tmp/permanence.toml" --limit 1 >/dev/null
db="$tmp/data/permanence.db"
fill_started=$(date +%s.%N)
sqlite3 "$db" >/dev/null <<EOF
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $messages)
INSERT INTO calls (id, company, dialled, caller, caller_name, started_at, answered_at,
                   ended_at, route, outcome, handled_by, sip_call_id)
SELECT i, printf('c%02d', i % $companies + 1), '+33180000001',
       printf('+336%08d', (i * 7919) % 100000000),
       CASE WHEN i % 3 = 0 THEN 'Jean Martin ' || i END,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', $messages - i)),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', $messages - i)),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', $messages - i), '+40 seconds'),
       'main', CASE i % 4 WHEN 0 THEN 'voicemail' WHEN 1 THEN 'abandoned' ELSE 'secretary' END,
       CASE WHEN i % 4 >= 2 THEN 'alice' END, 'bench-' || i
FROM n;
INSERT INTO messages (call_id, company, caller, category, status, note, callback,
                      caller_name, caller_company, fields, written_by, written_at,
                      created_at, updated_at)
SELECT id, company, caller,
       CASE (id / 10) % 7 WHEN 0 THEN 'urgent' WHEN 1 THEN 'low' WHEN 2 THEN 'spam' ELSE 'normal' END,
       CASE (id / 70) % 5 WHEN 0 THEN 'filed' WHEN 1 THEN 'done' WHEN 2 THEN 'read' ELSE 'new' END,
       CASE WHEN id % 2 = 0 THEN printf('Fuite au %de étage, rappeler avant midi (dossier %d)', id % 9, id) END,
       CASE WHEN id % 2 = 0 THEN caller END,
       CASE WHEN id % 2 = 0 THEN 'Jean Martin' END,
       CASE WHEN id % 2 = 0 THEN 'Syndic ' || (id % 500) END,
       CASE WHEN id % 2 = 0 THEN printf('{"address":"%d rue des Lilas"}', id % 200) END,
       CASE WHEN id % 2 = 0 THEN 'alice' END,
       CASE WHEN id % 2 = 0 THEN ended_at END,
       started_at, ended_at
FROM calls;
COMMIT;
EOF
fill_seconds=$(awk -v a="$fill_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
db_mb=$(du -m "$db" | cut -f1)
echo "filled: $messages messages over $companies companies in ${fill_seconds} s (${db_mb} MB)"

# 3. The release server on it.
RUST_LOG=warn "$bin" serve --config "$tmp/permanence.toml" 2>"$tmp/server.log" &
server_pid=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$web_port/" && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "the server stopped"; }
    sleep 0.1
done
curl -sf -c "$tmp/cookies" -H 'Content-Type: application/json' \
    -d '{"username":"alice","password":"pw"}' "http://127.0.0.1:$web_port/api/login" >/dev/null ||
    die "login refused"

# 4. Timed requests: one line per request, "status seconds".
since="$(date -u -d '30 days ago' +%F)"
declare -A paths=(
    [first]="/api/messages"
    [filtered]="/api/messages?company=c03&category=urgent&status=new&from=$since"
    [search]="/api/messages?status=all&q=dossier%2031338"
    [common]="/api/messages?q=Lilas"
)
failed=0
result="{\"messages\":$messages,\"companies\":$companies,\"requests\":$requests"
for kind in first filtered search common; do
    url="http://127.0.0.1:$web_port${paths[$kind]}"
    count=$(curl -s -b "$tmp/cookies" "$url" | { grep -o "\"call\":" || true; } | wc -l)
    for _ in $(seq 10); do curl -s -o /dev/null -b "$tmp/cookies" "$url"; done
    for _ in $(seq "$requests"); do
        curl -s -o /dev/null -b "$tmp/cookies" -w '%{http_code} %{time_total}\n' "$url"
    done >"$tmp/$kind.times"
    bad=$(awk '$1 != 200' "$tmp/$kind.times" | wc -l)
    failed=$((failed + bad))
    read -r p50 p99 < <(awk '{ print $2 * 1000 }' "$tmp/$kind.times" | sort -n |
        awk '{ v[NR] = $1 } END { i50 = int(NR * 0.50 + 0.5); i99 = int(NR * 0.99 + 0.5);
                                  if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1;
                                  printf "%.2f %.2f\n", v[i50], v[i99] }')
    printf '%-9s %3d rows  p50 %7.2f ms  p99 %7.2f ms  (%d not 200)  %s\n' \
        "$kind" "$count" "$p50" "$p99" "$bad" "${paths[$kind]}"
    result+=",\"$kind\":{\"rows\":$count,\"p50_ms\":$p50,\"p99_ms\":$p99,\"failed\":$bad}"
done
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$server_pid/status")
echo "server RSS: $((rss_kb / 1024)) MiB"
echo "RESULT $result,\"rss_kb\":$rss_kb,\"db_mb\":$db_mb}"
((failed == 0))
