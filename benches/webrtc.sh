#!/bin/sh
# The browser phone's cost and its answer-to-audio time (benches/README.md, "Browser
# phone"): a release server, one headless Chromium with a fake microphone (in a network
# namespace of its own, as in tests/webrtc.rs) and a SIPp caller. Prints the figures.
# Usage: benches/webrtc.sh [runs]   (default 3)
set -eu
cd "$(dirname "$0")/.."
runs="${1:-3}"
i=1
while [ "$i" -le "$runs" ]; do
    echo "run $i"
    cargo test --release --locked --test webrtc bench_browser_phone -- --ignored --nocapture 2>&1 \
        | grep '^FIGURE' | sed 's/^FIGURE /  /'
    i=$((i + 1))
done
