//! SDP offer/answer for audio (RFC 3264, RFC 4566): which codec, where to send RTP,
//! and the answer we write back.
//!
//! Pure: parses with `webrtc-sdp` (kept behind this module) and writes answers by hand,
//! because an answer must mirror the offer's media sections one for one.

use std::net::{IpAddr, SocketAddr};

use webrtc_sdp::address::ExplicitlyTypedAddress;
use webrtc_sdp::attribute_type::{SdpAttribute, SdpAttributeType};
use webrtc_sdp::media_type::{SdpFormatList, SdpMediaValue, SdpProtocolValue};

/// An audio codec we can send and receive without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 table 4).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }
}

/// Media direction (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    SendRecv,
    /// The offerer only sends (it put us on hold).
    SendOnly,
    /// The offerer only receives.
    RecvOnly,
    /// No media either way.
    Inactive,
}

/// What the offer and our capabilities agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec we send and expect: the first one in the offer that we support.
    pub codec: Codec,
    /// The payload type the offerer uses for that codec (static or dynamic).
    pub payload_type: u8,
    /// RFC 4733 telephone-event payload type, when offered at 8000 Hz.
    pub telephone_event: Option<u8>,
    /// Where the offerer wants its RTP (before any symmetric-RTP latching).
    pub remote_rtp: SocketAddr,
    /// The offerer's direction, seen from the offerer.
    pub direction: Direction,
    /// Index of the audio section we accepted; other sections are refused (port 0).
    pub audio_index: usize,
    /// SRTP (RTP/SAVP with an SDES key, RFC 4568): the `a=crypto` tag and the peer's
    /// `inline:` key, which decrypts what it sends.
    pub srtp: Option<(u32, String)>,
    /// The offer's sections, kept to mirror them in the answer.
    sections: Vec<OfferedSection>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OfferedSection {
    media: String,
    proto: String,
    first_format: String,
}

impl Negotiated {
    /// The SRTP contexts for this stream when the peer sent a key and we have ours.
    pub fn srtp_with(&self, ours: Option<&str>) -> Option<crate::srtp::Srtp> {
        let (_, theirs) = self.srtp.as_ref()?;
        crate::srtp::Srtp::new(ours?, theirs)
    }
}

/// Why an offer cannot be accepted; each maps to a SIP status.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// The body is not SDP we can read.
    #[error("unreadable SDP: {0}")]
    Unreadable(String),
    /// No audio section over RTP/AVP with a usable address.
    #[error("no usable audio stream in the offer")]
    NoAudio,
    /// Audio offered, but none of PCMU / PCMA.
    #[error("no codec in common (we support PCMU and PCMA)")]
    NoCommonCodec,
}

impl SdpError {
    /// The SIP status for a refused offer: 400 for garbage, 488 otherwise (RFC 3261 §21.4.26).
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Unreadable(_) => 400,
            SdpError::NoAudio | SdpError::NoCommonCodec => 488,
        }
    }
}

/// Reads an SDP offer and picks the first offered codec we support.
pub fn negotiate(offer: &[u8]) -> Result<Negotiated, SdpError> {
    let text = std::str::from_utf8(offer).map_err(|_| SdpError::Unreadable("not UTF-8".into()))?;
    let session = webrtc_sdp::parse_sdp(&supported_lines(text), false)
        .map_err(|e| SdpError::Unreadable(e.to_string()))?;
    let session_addr = session
        .get_connection()
        .as_ref()
        .and_then(|c| ip_of(&c.address));

    let sections: Vec<OfferedSection> = session
        .media
        .iter()
        .map(|m| OfferedSection {
            media: m.get_type().to_string(),
            proto: m.get_proto().to_string(),
            first_format: match m.get_formats() {
                SdpFormatList::Integers(v) => v.first().map(|f| f.to_string()).unwrap_or_default(),
                SdpFormatList::Strings(v) => v.first().cloned().unwrap_or_default(),
                SdpFormatList::Unknown(s) => {
                    s.split_whitespace().next().unwrap_or_default().to_string()
                }
            },
        })
        .collect();

    let mut saw_audio = false;
    for (index, media) in session.media.iter().enumerate() {
        let srtp = match media.get_proto() {
            SdpProtocolValue::RtpAvp => None,
            // webrtc-sdp does not read `a=crypto`: taken from the text. No suite we speak:
            // not a stream we can use.
            SdpProtocolValue::RtpSavp => match crypto_of(text, index) {
                Some(c) => Some(c),
                None => continue,
            },
            _ => continue,
        };
        if *media.get_type() != SdpMediaValue::Audio || media.get_port() == 0 {
            continue;
        }
        let Some(addr) = media
            .get_connection()
            .as_ref()
            .and_then(|c| ip_of(&c.address))
            .or(session_addr)
        else {
            continue;
        };
        let Ok(port) = u16::try_from(media.get_port()) else {
            continue;
        };
        saw_audio = true;
        let SdpFormatList::Integers(formats) = media.get_formats() else {
            continue;
        };

        let rtpmaps: Vec<(u8, String, u32)> = media
            .get_attributes_of_type(SdpAttributeType::Rtpmap)
            .into_iter()
            .filter_map(|a| match a {
                SdpAttribute::Rtpmap(r) => {
                    Some((r.payload_type, r.codec_name.clone(), r.frequency))
                }
                _ => None,
            })
            .collect();
        let codec_of = |pt: u32| -> Option<Codec> {
            let pt = u8::try_from(pt).ok()?;
            match rtpmaps.iter().find(|(p, _, _)| *p == pt) {
                Some((_, name, 8000)) => Codec::from_name(name),
                Some(_) => None,
                None if pt == 0 => Some(Codec::Pcmu),
                None if pt == 8 => Some(Codec::Pcma),
                None => None,
            }
        };
        let Some((pt, codec)) = formats
            .iter()
            .find_map(|&pt| Some((pt as u8, codec_of(pt)?)))
        else {
            continue;
        };
        let telephone_event = rtpmaps
            .iter()
            .find(|(p, name, rate)| {
                name.eq_ignore_ascii_case("telephone-event")
                    && *rate == 8000
                    && formats.contains(&u32::from(*p))
            })
            .map(|(p, _, _)| *p);
        let direction = if media.get_attribute(SdpAttributeType::Sendonly).is_some() {
            Direction::SendOnly
        } else if media.get_attribute(SdpAttributeType::Recvonly).is_some() {
            Direction::RecvOnly
        } else if media.get_attribute(SdpAttributeType::Inactive).is_some() {
            Direction::Inactive
        } else {
            Direction::SendRecv
        };
        return Ok(Negotiated {
            codec,
            payload_type: pt,
            telephone_event,
            remote_rtp: SocketAddr::new(addr, port),
            direction,
            audio_index: index,
            sections,
            srtp,
        });
    }
    Err(if saw_audio {
        SdpError::NoCommonCodec
    } else {
        SdpError::NoAudio
    })
}

/// The first `a=crypto` of media section `index` in a suite we speak: (tag, `inline:` key).
fn crypto_of(text: &str, index: usize) -> Option<(u32, String)> {
    text.lines()
        .map(str::trim)
        .scan(None::<usize>, |section, line| {
            if line.starts_with("m=") {
                *section = Some(section.map_or(0, |s| s + 1));
            }
            Some((*section, line))
        })
        .filter(|(section, _)| *section == Some(index))
        .find_map(|(_, line)| {
            let mut parts = line.strip_prefix("a=crypto:")?.split_whitespace();
            let tag = parts.next()?.parse().ok()?;
            (parts.next()? == crate::srtp::SUITE).then_some(())?;
            let key = parts.next()?;
            crate::srtp::Context::from_inline(key)?;
            Some((tag, key.to_string()))
        })
}

/// The offer without the lines `webrtc-sdp` does not support. It would skip them too, but
/// log each at WARN, and softphones send such attributes on every call (baresip's
/// `a=minptime`, `a=tool`): an unknown attribute is normal and logged here at debug. Any
/// other unsupported line (an `m=` with an unknown protocol) still deserves a warning.
fn supported_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (number, line) in text.lines().enumerate() {
        if let Err(webrtc_sdp::error::SdpParserError::Unsupported { error, .. }) =
            webrtc_sdp::parse_sdp_line(line, number)
        {
            let line = line.trim();
            if line.starts_with("a=") {
                tracing::debug!(line, %error, "SDP attribute ignored");
            } else {
                tracing::warn!(line, %error, "SDP line ignored");
            }
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

fn ip_of(address: &ExplicitlyTypedAddress) -> Option<IpAddr> {
    match address {
        ExplicitlyTypedAddress::Ip(ip) => Some(*ip),
        ExplicitlyTypedAddress::Fqdn { .. } => None,
    }
}

/// The fields of our side of the session that stay fixed for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our RTP address as written in `c=`.
    pub ip: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// `o=` session id, random per call.
    pub session_id: u64,
    /// `o=` version; bumped only when our side changes (RFC 3264 §8).
    pub version: u64,
    /// Our SRTP key (`inline:` base64) when the stream is encrypted.
    pub srtp_key: Option<String>,
}

/// Writes our answer: the chosen codec (and telephone-event) on the accepted audio
/// section, every other section refused with port 0, as RFC 3264 §6 requires.
pub fn write_answer(local: &LocalMedia, negotiated: &Negotiated) -> String {
    let family = if local.ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = format!(
        "v=0\r\no=permanence {} {} IN {family} {}\r\ns=Permanence\r\nc=IN {family} {}\r\nt=0 0\r\n",
        local.session_id, local.version, local.ip, local.ip
    );
    for (index, section) in negotiated.sections.iter().enumerate() {
        if index != negotiated.audio_index {
            out.push_str(&format!(
                "m={} 0 {} {}\r\n",
                section.media, section.proto, section.first_format
            ));
            continue;
        }
        let pt = negotiated.payload_type;
        let proto = if negotiated.srtp.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        match negotiated.telephone_event {
            Some(te) => out.push_str(&format!("m=audio {} {proto} {pt} {te}\r\n", local.port)),
            None => out.push_str(&format!("m=audio {} {proto} {pt}\r\n", local.port)),
        }
        if let (Some((tag, _)), Some(key)) = (&negotiated.srtp, &local.srtp_key) {
            out.push_str(&format!("a=crypto:{tag} {} {key}\r\n", crate::srtp::SUITE));
        }
        out.push_str(&format!(
            "a=rtpmap:{pt} {}/8000\r\n",
            negotiated.codec.name()
        ));
        if let Some(te) = negotiated.telephone_event {
            out.push_str(&format!(
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
            ));
        }
        out.push_str("a=ptime:20\r\n");
        // Answer direction mirrors the offer's (RFC 3264 §6.1).
        out.push_str(match negotiated.direction {
            Direction::SendRecv => "a=sendrecv\r\n",
            Direction::SendOnly => "a=recvonly\r\n",
            Direction::RecvOnly => "a=sendonly\r\n",
            Direction::Inactive => "a=inactive\r\n",
        });
    }
    out
}

/// The telephone-event payload type we offer.
pub const OFFER_TELEPHONE_EVENT: u8 = 101;

/// Writes our offer for an outbound leg: PCMU and PCMA (the caller's codec first, so that
/// the relay can usually pass audio through unchanged) and telephone-event.
pub fn write_offer(local: &LocalMedia, prefer: Codec) -> String {
    let family = if local.ip.is_ipv4() { "IP4" } else { "IP6" };
    let (first, second) = match prefer {
        Codec::Pcmu => (Codec::Pcmu, Codec::Pcma),
        Codec::Pcma => (Codec::Pcma, Codec::Pcmu),
    };
    let te = OFFER_TELEPHONE_EVENT;
    let (proto, crypto) = match &local.srtp_key {
        Some(key) => (
            "RTP/SAVP",
            format!("a=crypto:1 {} {key}\r\n", crate::srtp::SUITE),
        ),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=permanence {} {} IN {family} {}\r\ns=Permanence\r\nc=IN {family} {}\r\nt=0 0\r\n\
         m=audio {} {proto} {} {} {te}\r\n{crypto}a=rtpmap:{} {}/8000\r\na=rtpmap:{} {}/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        local.session_id,
        local.version,
        local.ip,
        local.ip,
        local.port,
        first.payload_type(),
        second.payload_type(),
        first.payload_type(),
        first.name(),
        second.payload_type(),
        second.name(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(m: &str, extra: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n{m}\r\n{extra}"
        )
        .into_bytes()
    }

    #[test]
    fn first_supported_codec_in_offer_order_wins() {
        let n = negotiate(&offer(
            "m=audio 4000 RTP/AVP 8 0 101",
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
        ))
        .unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(
            n.remote_rtp,
            "192.0.2.10:4000".parse::<SocketAddr>().unwrap()
        );

        let n = negotiate(&offer("m=audio 4000 RTP/AVP 18 0 8", "")).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.telephone_event),
            (Codec::Pcmu, 0, None)
        );
    }

    #[test]
    fn dynamic_payload_type_by_name() {
        let n = negotiate(&offer(
            "m=audio 4000 RTP/AVP 96",
            "a=rtpmap:96 pcmu/8000\r\n",
        ))
        .unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 96));
    }

    #[test]
    fn refusals_map_to_sip_statuses() {
        let e =
            negotiate(&offer("m=audio 4000 RTP/AVP 9", "a=rtpmap:9 G722/8000\r\n")).unwrap_err();
        assert_eq!((e.clone(), e.sip_status()), (SdpError::NoCommonCodec, 488));
        let e = negotiate(&offer(
            "m=video 4000 RTP/AVP 96",
            "a=rtpmap:96 VP8/90000\r\n",
        ))
        .unwrap_err();
        assert_eq!(e, SdpError::NoAudio);
        let e = negotiate(&offer("m=audio 0 RTP/AVP 0", "")).unwrap_err();
        assert_eq!(e, SdpError::NoAudio);
        assert_eq!(negotiate(b"garbage").unwrap_err().sip_status(), 400);
        assert_eq!(negotiate(&[0xff, 0xfe]).unwrap_err().sip_status(), 400);
    }

    #[test]
    fn answer_mirrors_sections_and_direction() {
        let n = negotiate(&offer(
            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\nm=audio 4000 RTP/AVP 0 101",
            "a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n",
        ))
        .unwrap();
        assert_eq!(n.audio_index, 1);
        let local = LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            port: 20000,
            session_id: 7,
            version: 1,
            srtp_key: None,
        };
        let answer = write_answer(&local, &n);
        let lines: Vec<&str> = answer.lines().collect();
        assert!(lines.contains(&"m=video 0 RTP/AVP 96"), "{answer}");
        assert!(lines.contains(&"m=audio 20000 RTP/AVP 0 101"), "{answer}");
        assert!(lines.contains(&"a=recvonly"), "{answer}");
        assert!(lines.contains(&"c=IN IP4 127.0.0.1"), "{answer}");
        // Our own answer must be readable by the same parser.
        assert!(webrtc_sdp::parse_sdp(&answer, false).is_ok(), "{answer}");
    }

    #[test]
    fn our_offer_reads_back_with_the_preferred_codec_first() {
        let local = LocalMedia {
            ip: "192.0.2.1".parse().unwrap(),
            port: 20002,
            session_id: 7,
            version: 1,
            srtp_key: None,
        };
        let n = negotiate(write_offer(&local, Codec::Pcma).as_bytes()).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        assert_eq!(n.telephone_event, Some(OFFER_TELEPHONE_EVENT));
        assert_eq!(
            n.remote_rtp,
            "192.0.2.1:20002".parse::<SocketAddr>().unwrap()
        );
        let n = negotiate(write_offer(&local, Codec::Pcmu).as_bytes()).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
    }

    #[test]
    fn an_srtp_offer_is_answered_with_our_key_under_its_tag() {
        let theirs = crate::srtp::inline_key(&[9u8; crate::srtp::MASTER_LEN]);
        let n = negotiate(&offer(
            "m=audio 4000 RTP/SAVP 0",
            &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_32 {theirs}\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 {theirs}\r\n"),
        ))
        .unwrap();
        assert_eq!(
            n.srtp,
            Some((2, theirs.clone())),
            "the suite we speak, by its tag"
        );
        let ours = crate::srtp::inline_key(&[4u8; crate::srtp::MASTER_LEN]);
        let local = LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            port: 20000,
            session_id: 7,
            version: 1,
            srtp_key: Some(ours.clone()),
        };
        let answer = write_answer(&local, &n);
        assert!(answer.contains("m=audio 20000 RTP/SAVP 0\r\n"), "{answer}");
        assert!(
            answer.contains(&format!("a=crypto:2 AES_CM_128_HMAC_SHA1_80 {ours}\r\n")),
            "{answer}"
        );
        // Our SRTP offer reads back with our key.
        let back = negotiate(write_offer(&local, Codec::Pcmu).as_bytes()).unwrap();
        assert_eq!(back.srtp, Some((1, ours)));
        // SAVP without a key we can use is no stream for us.
        assert_eq!(
            negotiate(&offer("m=audio 4000 RTP/SAVP 0", "")),
            Err(SdpError::NoAudio)
        );
    }

    #[test]
    fn attributes_the_parser_does_not_know_are_skipped_before_it_would_warn() {
        // baresip's offer: `a=minptime` and `a=tool` are unknown to webrtc-sdp, which logs
        // each at WARN; we drop them first (and log them at debug).
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                    a=tool:baresip 3.10.1\r\nm=audio 4000 RTP/AVP 0 8 101\r\n\
                    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=minptime:10\r\n\
                    a=ptime:20\r\na=sendrecv\r\n";
        assert!(
            webrtc_sdp::parse_sdp(text, true).is_err(),
            "webrtc-sdp counts (and logs) these as warnings"
        );
        let kept = supported_lines(text);
        assert!(
            !kept.contains("minptime") && !kept.contains("tool"),
            "{kept}"
        );
        assert!(
            webrtc_sdp::parse_sdp(&kept, true).is_ok(),
            "nothing left to warn about: {kept}"
        );
        let n = negotiate(text.as_bytes()).unwrap();
        assert_eq!(
            (n.codec, n.telephone_event, n.direction),
            (Codec::Pcmu, Some(101), Direction::SendRecv)
        );
        assert_eq!(
            n.remote_rtp,
            "192.0.2.10:4000".parse::<SocketAddr>().unwrap()
        );
    }
}
