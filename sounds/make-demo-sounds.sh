#!/usr/bin/env bash
# make-demo-sounds.sh — regenerate the demo greetings of the two demo companies.
#
# Usage:  sounds/make-demo-sounds.sh        (from anywhere; writes beside this script)
#
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox).
# For each company it writes:
#   <company>/<prompt>.txt  the exact text spoken
#   <company>/<prompt>.wav   espeak-ng speech, converted by sox to
#                           8000 Hz, mono, 16-bit signed PCM WAV (what the server plays)
# Companies:
#   acme    "ACME Plomberie",    French  (espeak-ng voice fr), +33180000001
#   globex  "Globex Consulting", English (espeak-ng voice en), +33180000002
# The output is deterministic for a given espeak-ng/sox version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

# make_prompt <company-dir> <name> <espeak voice> <text>
make_prompt() {
    local dir="$here/$1" name="$2" voice="$3" text="$4"
    local tmp
    mkdir -p "$dir"
    tmp="$(mktemp --suffix=.wav)"
    printf '%s\n' "$text" > "$dir/$name.txt"
    # -s 150: a calm speaking rate (words per minute).
    espeak-ng -v "$voice" -s 150 -w "$tmp" "$text"
    # -D: no dither, so the output is reproducible.
    sox -D "$tmp" -r 8000 -c 1 -b 16 -e signed-integer "$dir/$name.wav"
    rm -f "$tmp"
    echo "wrote $dir/$name.wav"
}

make_prompt acme welcome fr \
    "Bonjour, vous êtes bien chez ACME Plomberie. Une secrétaire va prendre votre appel dans un instant."
make_prompt acme closed-menu fr \
    "Nos bureaux sont fermés. Pour une urgence, tapez 1. Pour laisser un message, tapez 2."
make_prompt acme invalid fr \
    "Ce choix n'est pas valide."

make_prompt globex welcome en \
    "Hello, you have reached Globex Consulting. A secretary will take your call in a moment."

# Prompts every installation needs (voicemail without its own prompt, the beep, goodbye).
make_prompt default voicemail-fr fr \
    "Vous pouvez laisser votre message après le bip. Appuyez sur dièse pour terminer."
make_prompt default voicemail-en en \
    "Please leave your message after the beep. Press the hash key when you are done."
make_prompt default goodbye-fr fr "Merci, votre message a bien été enregistré. Au revoir."
make_prompt default goodbye-en en "Thank you, your message has been recorded. Goodbye."
# Played to an executive who answers a screened transfer, before the caller is put through.
make_prompt default screening-fr fr \
    "Appel urgent transmis par votre secrétariat. Appuyez sur 1 pour le prendre, sur 2 pour le refuser."
make_prompt default screening-en en \
    "Urgent call from your secretariat. Press 1 to take it, 2 to refuse it."
# The beep: 400 ms at 1 kHz, not speech.
sox -D -n -r 8000 -c 1 -b 16 -e signed-integer "$here/default/beep.wav" synth 0.4 sine 1000 vol 0.5
echo "wrote $here/default/beep.wav"
# Ringback for a caller already answered while a secretary or an executive is rung:
# 440 Hz, 1.5 s on, 3.5 s off (the French network's cadence), played in a loop.
sox -D -n -r 8000 -c 1 -b 16 -e signed-integer "$here/default/ringback.wav" synth 1.5 sine 440 vol 0.3 pad 0 3.5
echo "wrote $here/default/ringback.wav"
# Played, between the hold music, to a caller waiting in a company's queue when its plan
# sets `queue_announce_every`.
make_prompt default queue-fr fr \
    "Toutes nos secrétaires sont en ligne. Vous êtes en attente, ne quittez pas."
make_prompt default queue-en en \
    "All our secretaries are busy. Please hold, your call will be answered shortly."
# Hold music for a caller waiting in a queue: a slow arpeggio of soft sine tones over four
# chords (C, A minor, F, G), 16 s, looped by the server. Made here, so it is free to ship.
tmp="$(mktemp -d)"
i=0
for chord in "261.63 329.63 392.00 523.25" "220.00 261.63 329.63 440.00" \
             "174.61 220.00 261.63 349.23" "196.00 246.94 293.66 392.00"; do
    for _ in 1 2; do
        for f in $chord; do
            i=$((i + 1))
            sox -D -n -r 8000 -c 1 -b 16 -e signed-integer "$tmp/$(printf %03d $i).wav" \
                synth 0.5 sine "$f" fade q 0.02 0.5 0.2 vol 0.25
        done
    done
done
sox -D "$tmp"/*.wav "$here/default/hold.wav"
rm -rf "$tmp"
echo "wrote $here/default/hold.wav"
