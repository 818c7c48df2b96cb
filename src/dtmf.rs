//! Keypresses: RFC 4733 telephone-events received over RTP, and SIP INFO bodies
//! (`application/dtmf-relay`, `application/dtmf`).
//!
//! Pure. A press is reported once, when its first packet arrives (so a prompt can be
//! interrupted at once); the many packets of one press (updates, then three redundant
//! end packets, RFC 4733 §2.5.1.4) share its RTP timestamp and are not reported again;
//! the same key pressed twice has a new timestamp and is reported twice.

/// A key and when it was pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// `0`–`9`, `*`, `#`, `A`–`D`.
    pub key: char,
    /// RTP timestamp of the press (start of the event), in 8 kHz units.
    pub timestamp: u32,
}

/// The key for an RFC 4733 event code (§3.2, table 1).
pub fn key_for_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Follows one stream's telephone-events.
#[derive(Debug, Default, Clone)]
pub struct EventReceiver {
    /// RTP timestamp of the last event reported, with its code.
    last: Option<(u32, u8)>,
}

impl EventReceiver {
    /// Feeds the RTP timestamp and payload of a telephone-event packet; returns a new press.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<Digit> {
        // Payload: event (8 bits), E|R|volume (8), duration (16); redundancy adds blocks we
        // do not need, since the first block is the current event.
        let event = *payload.first()?;
        if payload.len() < 4 {
            return None;
        }
        let key = key_for_event(event)?;
        if self.last == Some((timestamp, event)) {
            return None; // an update or an end packet of the press already reported
        }
        self.last = Some((timestamp, event));
        Some(Digit { key, timestamp })
    }
}

/// Reads the key in a SIP INFO body: `Signal=5` lines (`application/dtmf-relay`) or a bare
/// key (`application/dtmf`).
pub fn key_from_info(content_type: Option<&str>, body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let value = match content_type? {
        "application/dtmf-relay" => text.lines().find_map(|l| {
            let (name, value) = l.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then_some(value.trim())
        })?,
        "application/dtmf" => text.trim(),
        _ => return None,
    };
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        v => {
            let mut chars = v.chars();
            let c = chars.next()?.to_ascii_uppercase();
            (chars.next().is_none() && matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')).then_some(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [code, if end { 0x80 } else { 0 } | 10, d[0], d[1]]
    }

    #[test]
    fn one_press_with_updates_and_redundant_ends_is_one_digit() {
        let mut r = EventReceiver::default();
        assert_eq!(
            r.on_packet(1000, &event(5, false, 160)),
            Some(Digit {
                key: '5',
                timestamp: 1000
            })
        );
        assert_eq!(r.on_packet(1000, &event(5, false, 320)), None);
        for _ in 0..3 {
            assert_eq!(r.on_packet(1000, &event(5, true, 800)), None);
        }
    }

    #[test]
    fn the_same_key_twice_is_two_digits_and_lost_starts_still_count() {
        let mut r = EventReceiver::default();
        assert!(
            r.on_packet(1000, &event(1, true, 800)).is_some(),
            "only the end packets arrived"
        );
        assert_eq!(
            r.on_packet(5000, &event(1, false, 160)),
            Some(Digit {
                key: '1',
                timestamp: 5000
            })
        );
        assert_eq!(
            r.on_packet(9000, &event(11, false, 160)).map(|d| d.key),
            Some('#')
        );
        assert_eq!(
            r.on_packet(9160, &event(10, false, 160)).map(|d| d.key),
            Some('*')
        );
    }

    #[test]
    fn junk_is_ignored() {
        let mut r = EventReceiver::default();
        assert_eq!(r.on_packet(1, &[5, 0]), None, "short payload");
        assert_eq!(
            r.on_packet(1, &event(16, false, 160)),
            None,
            "flash and tones are not keys"
        );
        assert_eq!(r.on_packet(1, &[]), None);
    }

    #[test]
    fn info_bodies() {
        assert_eq!(
            key_from_info(
                Some("application/dtmf-relay"),
                b"Signal=5\r\nDuration=160\r\n"
            ),
            Some('5')
        );
        assert_eq!(
            key_from_info(Some("application/dtmf-relay"), b"Signal= #\r\nDuration=100"),
            Some('#')
        );
        assert_eq!(
            key_from_info(Some("application/dtmf-relay"), b"Signal=11\r\n"),
            Some('#')
        );
        assert_eq!(key_from_info(Some("application/dtmf"), b"7"), Some('7'));
        assert_eq!(key_from_info(Some("application/dtmf"), b"77"), None);
        assert_eq!(key_from_info(Some("text/plain"), b"7"), None);
        assert_eq!(key_from_info(None, b"7"), None);
    }
}
