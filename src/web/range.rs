//! HTTP byte ranges (RFC 9110 §14): which part of a file a `Range` header asks for.
//!
//! One range only: a browser's `<audio>` asks `bytes=N-` as it seeks. A header we do not
//! understand (another unit, several ranges, bad syntax) is ignored and the whole file
//! sent, as §14.2 allows; a range that starts past the end is unsatisfiable (416).

/// What to send of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ranged {
    /// The whole file (200).
    Whole,
    /// Bytes `start..=end` (206 with `Content-Range`).
    Part {
        /// The first byte.
        start: u64,
        /// The last byte, included.
        end: u64,
    },
    /// Nothing of the file matches (416 with `Content-Range: bytes */len`).
    Unsatisfiable,
}

/// The part of a `len`-byte file that `header` (the `Range` value, if any) asks for.
pub(super) fn byte_range(header: Option<&str>, len: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| {
        let (unit, spec) = h.trim().split_once('=')?;
        unit.trim()
            .eq_ignore_ascii_case("bytes")
            .then_some(spec.trim())
    }) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        // Several ranges would need multipart/byteranges: the whole file is a valid answer.
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        // `parse` takes a leading `+`; the grammar is digits only.
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        return match number(last) {
            None => Ranged::Whole,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(suffix) => Ranged::Part {
                start: len.saturating_sub(suffix),
                end: len - 1,
            },
        };
    }
    // `bytes=A-` and `bytes=A-B`.
    let Some(start) = number(first) else {
        return Ranged::Whole;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return Ranged::Whole,
        }
    };
    if start >= len {
        return Ranged::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |end| end.min(len - 1));
    Ranged::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> Ranged {
        Ranged::Part { start, end }
    }

    #[test]
    fn the_ranges_a_player_asks_for() {
        let len = 1000;
        assert_eq!(byte_range(None, len), Ranged::Whole);
        assert_eq!(byte_range(Some("bytes=0-"), len), part(0, 999));
        assert_eq!(byte_range(Some("bytes=0-99"), len), part(0, 99));
        assert_eq!(byte_range(Some("bytes=500-"), len), part(500, 999));
        assert_eq!(
            byte_range(Some("bytes=990-5000"), len),
            part(990, 999),
            "clipped"
        );
        assert_eq!(byte_range(Some("bytes=-100"), len), part(900, 999));
        assert_eq!(byte_range(Some("bytes=-5000"), len), part(0, 999));
        assert_eq!(byte_range(Some("Bytes = 7-7"), len), part(7, 7));
    }

    #[test]
    fn past_the_end_is_unsatisfiable() {
        assert_eq!(byte_range(Some("bytes=1000-"), 1000), Ranged::Unsatisfiable);
        assert_eq!(
            byte_range(Some("bytes=1000-2000"), 1000),
            Ranged::Unsatisfiable
        );
        assert_eq!(byte_range(Some("bytes=-0"), 1000), Ranged::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=0-"), 0), Ranged::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=-1"), 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn what_we_do_not_understand_gets_the_whole_file() {
        for header in [
            "items=0-1",
            "bytes=0-1,5-9",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=0--1",
            "bytes=99999999999999999999999-",
            "0-1",
        ] {
            assert_eq!(byte_range(Some(header), 1000), Ranged::Whole, "{header}");
        }
    }
}
