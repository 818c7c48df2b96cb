//! RTP packetisation (RFC 3550 §5.1) for one outgoing stream of 20 ms G.711 frames.
//!
//! Pure: the media engine decides *when* a frame goes out; this decides its bytes.

/// Samples per 20 ms frame at 8 kHz, and bytes per G.711 frame.
pub const FRAME_SAMPLES: u32 = 160;
/// Length of the fixed RTP header we write (no CSRC, no extension).
pub const HEADER_LEN: usize = 12;

/// The numbering state of one outgoing RTP stream: one SSRC, consecutive sequence
/// numbers, timestamps advancing 160 per 20 ms whether or not we sent.
#[derive(Debug, Clone)]
pub struct Packetizer {
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    /// Set when the next packet starts a talkspurt (RFC 3551 §4.1: marker on the first packet).
    marker: bool,
}

impl Packetizer {
    /// A new stream; SSRC and initial numbers come from the caller's RNG (RFC 3550 §5.1
    /// asks for random initial values).
    pub fn new(ssrc: u32, payload_type: u8, first_seq: u16, first_timestamp: u32) -> Self {
        Packetizer {
            ssrc,
            payload_type,
            seq: first_seq,
            timestamp: first_timestamp,
            marker: true,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The payload type written.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Changes the payload type (the codec changed mid-call).
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type;
    }

    /// Writes one packet carrying `payload` into `out` (cleared first) and advances the stream.
    pub fn packet(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80); // V=2, no padding, no extension, CC=0
        out.push(if self.marker { 0x80 } else { 0 } | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES);
    }

    /// The timestamp the next packet of ours would carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Writes a relayed packet: our SSRC and the next sequence number, with the payload
    /// type and timestamp the relay chose (the sender's timing, shifted into our
    /// numbering, so that gaps and telephone-events keep their meaning). The stream's own
    /// timestamp follows (`samples`: the audio's length, 0 for an event), in case it plays
    /// a sound again.
    pub fn relay(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        samples: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.clear();
        out.push(0x80);
        out.push(if marker || self.marker { 0x80 } else { 0 } | (payload_type & 0x7F));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = timestamp.wrapping_add(samples);
    }

    /// Accounts for `frames` periods in which nothing was sent: the timestamp keeps
    /// counting real time, the sequence number does not (RFC 3550 §5.1), and the next
    /// packet starts a new talkspurt.
    pub fn skip(&mut self, frames: u32) {
        if frames > 0 {
            self.timestamp = self
                .timestamp
                .wrapping_add(frames.wrapping_mul(FRAME_SAMPLES));
            self.marker = true;
        }
    }
}

/// Whether a datagram looks like RTP version 2 with a full header, enough to trust its
/// source address for symmetric RTP. RTCP (payload types 72–76 with the marker) is not.
pub fn looks_like_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN
        && datagram[0] >> 6 == 2
        && !(72..=76).contains(&(datagram[1] & 0x7F))
}

/// A received RTP packet, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The payload, after CSRCs, header extension and before padding.
    pub payload: &'a [u8],
}

/// Parses an RTP packet (RFC 3550 §5.1), skipping CSRCs and a header extension and
/// removing padding. `None` for anything malformed.
pub fn parse(datagram: &[u8]) -> Option<Received<'_>> {
    if !looks_like_rtp(datagram) {
        return None;
    }
    let csrc = usize::from(datagram[0] & 0x0F) * 4;
    let mut start = HEADER_LEN + csrc;
    if datagram[0] & 0x10 != 0 {
        let ext = datagram.get(start + 2..start + 4)?;
        start += 4 + usize::from(u16::from_be_bytes([ext[0], ext[1]])) * 4;
    }
    let mut end = datagram.len();
    if datagram[0] & 0x20 != 0 {
        let pad = usize::from(*datagram.last()?);
        end = end.checked_sub(pad)?;
    }
    let payload = datagram.get(start..end)?;
    Some(Received {
        payload_type: datagram[1] & 0x7F,
        marker: datagram[1] & 0x80 != 0,
        seq: u16::from_be_bytes([datagram[2], datagram[3]]),
        timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
        ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(p: &[u8]) -> (bool, u8, u16, u32, u32) {
        (
            p[1] & 0x80 != 0,
            p[1] & 0x7F,
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        )
    }

    #[test]
    fn consecutive_numbering_and_marker_on_first() {
        let mut p = Packetizer::new(0xDEADBEEF, 8, 65534, u32::MAX - 100);
        let mut out = Vec::new();
        let frame = [0xD5u8; 160];
        let mut seen = Vec::new();
        for _ in 0..3 {
            p.packet(&frame, &mut out);
            assert_eq!(out.len(), HEADER_LEN + 160);
            assert_eq!(out[0], 0x80);
            seen.push(header(&out));
        }
        assert_eq!(seen[0], (true, 8, 65534, u32::MAX - 100, 0xDEADBEEF));
        assert_eq!(
            seen[1],
            (
                false,
                8,
                65535,
                (u32::MAX - 100).wrapping_add(160),
                0xDEADBEEF
            )
        );
        assert_eq!(
            seen[2],
            (false, 8, 0, (u32::MAX - 100).wrapping_add(320), 0xDEADBEEF)
        );
        assert_eq!(&out[HEADER_LEN..], &frame[..]);
    }

    #[test]
    fn silence_gap_advances_timestamp_not_sequence() {
        let mut p = Packetizer::new(1, 0, 10, 1000);
        let mut out = Vec::new();
        p.packet(&[0xFF; 160], &mut out);
        p.skip(5);
        p.packet(&[0xFF; 160], &mut out);
        assert_eq!(header(&out), (true, 0, 11, 1000 + 160 * 6, 1));
    }

    #[test]
    fn parses_what_it_writes_and_skips_csrcs_extensions_and_padding() {
        let mut p = Packetizer::new(7, 101, 5, 960);
        let mut out = Vec::new();
        p.packet(&[11, 0x8A, 0, 160], &mut out);
        let r = parse(&out).unwrap();
        assert_eq!(
            (r.payload_type, r.marker, r.seq, r.timestamp, r.payload),
            (101, true, 5, 960, &[11, 0x8A, 0, 160][..])
        );
        // One CSRC, a one-word extension, two bytes of padding.
        let mut odd = vec![
            0x80 | 0x20 | 0x10 | 1,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
            9,
            9,
            9,
            9,
            0xBE,
            0xDE,
            0,
            1,
            1,
            2,
            3,
            4,
        ];
        odd.extend_from_slice(&[0xAA, 0xBB, 0, 2]);
        assert_eq!(parse(&odd).unwrap().payload, &[0xAA, 0xBB]);
        odd[19] = 200; // extension longer than the packet
        assert_eq!(parse(&odd), None);
    }

    #[test]
    fn recognises_rtp_but_not_rtcp_or_junk() {
        let mut p = Packetizer::new(1, 0, 0, 0);
        let mut out = Vec::new();
        p.packet(&[0; 160], &mut out);
        assert!(looks_like_rtp(&out));
        assert!(!looks_like_rtp(&out[..11]));
        assert!(!looks_like_rtp(&[0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0])); // RTCP SR
        assert!(!looks_like_rtp(b"STUN or something else"));
    }
}
