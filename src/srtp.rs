//! SRTP (RFC 3711) for the one suite phones offer with SDES keys (RFC 4568):
//! AES_CM_128_HMAC_SHA1_80. Pure: a [`Context`] per direction of a stream protects packets
//! we send or unprotects packets we receive, in place.
//!
//! - Session keys come from the master key and salt by the AES-CM PRF (§4.3), with a key
//!   derivation rate of 0 (derived once).
//! - The payload is encrypted with AES in counter mode; the IV mixes the session salt, the
//!   SSRC and the 48-bit packet index (rollover counter and sequence number, §4.1.1).
//! - Authentication is HMAC-SHA1 over the packet and the rollover counter, truncated to 80
//!   bits (§4.2); a receiver refuses a wrong tag, and a packet it has already seen (a
//!   64-packet replay window, §3.3.2).

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::Mac;

/// The suite's name in SDP.
pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
/// Master key and salt, as carried base64-encoded in `a=crypto … inline:`.
pub const MASTER_LEN: usize = 16 + 14;
const TAG_LEN: usize = 10;

/// Why a received packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too short or not RTP.
    Malformed,
    /// The authentication tag is wrong (forged, or another key).
    Tag,
    /// Already received (or too old to tell).
    Replay,
}

/// One direction of one stream.
pub struct Context {
    cipher: aes::Aes128,
    salt: [u8; 14],
    auth: hmac::Hmac<sha1::Sha1>,
    /// Sender: the rollover counter and the last sequence number sent.
    /// Receiver: the highest index received, and the replay window below it.
    roc: u32,
    last_seq: Option<u16>,
    window: u64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("srtp::Context")
    }
}

/// The AES-CM PRF of §4.3.1: `len` bytes for `label` from the master key and salt.
fn derive(master: &aes::Aes128, master_salt: &[u8; 14], label: u8, len: usize) -> Vec<u8> {
    // x = key_id XOR master_salt, key_id = label || r (r = 0 with no derivation rate): the
    // label sits 7 bytes from the end of the 14-byte salt.
    let mut x = *master_salt;
    x[7] ^= label;
    let mut out = vec![0u8; len];
    xor_keystream(master, &x, &mut out);
    out
}

/// XORs `data` with AES in counter mode from the 112-bit IV `iv` (its last 16 bits are the
/// block counter), in place: no allocation per packet.
fn xor_keystream(cipher: &aes::Aes128, iv: &[u8; 14], data: &mut [u8]) {
    for (counter, chunk) in data.chunks_mut(16).enumerate() {
        let mut block = [0u8; 16];
        block[..14].copy_from_slice(iv);
        block[14..].copy_from_slice(&(counter as u16).to_be_bytes());
        let mut block = aes::Block::from(block);
        cipher.encrypt_block(&mut block);
        for (b, k) in chunk.iter_mut().zip(block.iter()) {
            *b ^= k;
        }
    }
}

/// Where an RTP packet's payload begins (after CSRCs and a header extension).
fn payload_start(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut at = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]);
        at += 4 + 4 * usize::from(words);
    }
    (at <= packet.len()).then_some(at)
}

impl Context {
    /// A context for the 30-byte master key and salt.
    pub fn new(master: &[u8; MASTER_LEN]) -> Context {
        let (key, salt) = master.split_at(16);
        let mut master_salt = [0u8; 14];
        master_salt.copy_from_slice(salt);
        let master_cipher =
            aes::Aes128::new(&aes::Block::try_from(key).expect("the master key is 16 bytes"));
        let session_key = derive(&master_cipher, &master_salt, 0, 16);
        let auth_key = derive(&master_cipher, &master_salt, 1, 20);
        let session_salt = derive(&master_cipher, &master_salt, 2, 14);
        let mut salt = [0u8; 14];
        salt.copy_from_slice(&session_salt);
        Context {
            cipher: aes::Aes128::new(
                &aes::Block::try_from(&session_key[..]).expect("derived as 16 bytes"),
            ),
            salt,
            auth: <hmac::Hmac<sha1::Sha1> as hmac::KeyInit>::new_from_slice(&auth_key)
                .expect("HMAC takes a key of any length"),
            roc: 0,
            last_seq: None,
            window: 0,
        }
    }

    /// The master key and salt in an `a=crypto` line (`inline:` base64), if well formed.
    pub fn from_inline(key_params: &str) -> Option<Context> {
        use base64::Engine as _;
        let b64 = key_params.strip_prefix("inline:")?.split('|').next()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let master: [u8; MASTER_LEN] = bytes.try_into().ok()?;
        Some(Context::new(&master))
    }

    /// The counter-mode IV for a packet of `ssrc` at `index` (§4.1.1).
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 14] {
        let mut iv = self.salt;
        for (i, b) in ssrc.to_be_bytes().into_iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        iv
    }

    fn crypt(&self, packet: &mut [u8], start: usize, index: u64) {
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let iv = self.iv(ssrc, index);
        xor_keystream(&self.cipher, &iv, &mut packet[start..]);
    }

    fn tag(&self, authenticated: &[u8], roc: u32) -> [u8; TAG_LEN] {
        let mut mac = self.auth.clone();
        mac.update(authenticated);
        mac.update(&roc.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Encrypts an RTP packet we send and appends its tag. A packet that is not RTP is
    /// left alone (and false returned).
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> bool {
        let Some(start) = payload_start(packet) else {
            return false;
        };
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        // The sender counts rollovers itself: a sequence number lower than the last one
        // by more than half the space wrapped.
        if let Some(last) = self.last_seq
            && seq < last
            && last - seq > 0x8000
        {
            self.roc = self.roc.wrapping_add(1);
        }
        self.last_seq = Some(seq);
        let index = (u64::from(self.roc) << 16) | u64::from(seq);
        self.crypt(packet, start, index);
        let tag = self.tag(packet, self.roc);
        packet.extend_from_slice(&tag);
        true
    }

    /// Checks and decrypts a received SRTP packet in place; its length without the tag.
    pub fn unprotect(&mut self, packet: &mut [u8]) -> Result<usize, Refused> {
        if packet.len() < 12 + TAG_LEN {
            return Err(Refused::Malformed);
        }
        let body_len = packet.len() - TAG_LEN;
        let start = payload_start(&packet[..body_len]).ok_or(Refused::Malformed)?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        // Appendix A: guess the rollover counter from the highest sequence number seen.
        let (roc, index) = match self.last_seq {
            None => (self.roc, (u64::from(self.roc) << 16) | u64::from(seq)),
            Some(s_l) => {
                let v = if s_l < 0x8000 {
                    if i32::from(seq) - i32::from(s_l) > 0x8000 {
                        self.roc.wrapping_sub(1)
                    } else {
                        self.roc
                    }
                } else if i32::from(s_l) - 0x8000 > i32::from(seq) {
                    self.roc.wrapping_add(1)
                } else {
                    self.roc
                };
                (v, (u64::from(v) << 16) | u64::from(seq))
            }
        };
        let highest = (u64::from(self.roc) << 16) | u64::from(self.last_seq.unwrap_or(0));
        if self.last_seq.is_some() && index <= highest {
            let behind = highest - index;
            if behind >= 64 || self.window & (1 << behind) != 0 {
                return Err(Refused::Replay);
            }
        }
        let expected = self.tag(&packet[..body_len], roc);
        let given = &packet[body_len..];
        if expected
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(Refused::Tag);
        }
        let packet = &mut packet[..body_len];
        self.crypt(packet, start, index);
        // Only an authenticated packet moves the window.
        if self.last_seq.is_none() || index > highest {
            let shift = if self.last_seq.is_none() {
                64
            } else {
                index - highest
            };
            self.window = if shift >= 64 { 0 } else { self.window << shift };
            self.window |= 1;
            self.roc = roc;
            self.last_seq = Some(seq);
        } else {
            self.window |= 1 << (highest - index);
        }
        Ok(body_len)
    }
}

/// A new master key and salt from the operating system's random source, as `inline:`
/// base64; `None` if the OS cannot give randomness (then no SRTP is offered).
pub fn new_inline_key() -> Option<String> {
    let mut master = [0u8; MASTER_LEN];
    getrandom::fill(&mut master).ok()?;
    Some(inline_key(&master))
}

/// Both directions of an encrypted stream: ours encrypts with the key we put in our SDP,
/// theirs decrypts with the key the peer put in its own.
#[derive(Debug)]
pub struct Srtp {
    /// Protects what we send.
    pub send: Context,
    /// Unprotects what we receive.
    pub recv: Context,
}

impl Srtp {
    /// From our `inline:` key and the peer's.
    pub fn new(ours: &str, theirs: &str) -> Option<Srtp> {
        Some(Srtp {
            send: Context::from_inline(ours)?,
            recv: Context::from_inline(theirs)?,
        })
    }
}

/// A master key and salt as `inline:` base64.
pub fn inline_key(random: &[u8; MASTER_LEN]) -> String {
    use base64::Engine as _;
    format!(
        "inline:{}",
        base64::engine::general_purpose::STANDARD.encode(random)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn session_keys_derive_as_rfc_3711_appendix_b3_lists_them() {
        let master = aes::Aes128::new(
            &aes::Block::try_from(&hex("E1F97A0D3E018BE0D64FA32C06DE4139")[..]).unwrap(),
        );
        let salt: [u8; 14] = hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap();
        assert_eq!(
            derive(&master, &salt, 0, 16),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(
            derive(&master, &salt, 1, 20),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
        assert_eq!(
            derive(&master, &salt, 2, 14),
            hex("30CBBC08863D8C85D49DB34A9AE1")
        );
    }

    #[test]
    fn the_keystream_is_rfc_3711_appendix_b2s() {
        let cipher = aes::Aes128::new(
            &aes::Block::try_from(&hex("2B7E151628AED2A6ABF7158809CF4F3C")[..]).unwrap(),
        );
        let iv: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
        let mut zeros = [0u8; 16];
        xor_keystream(&cipher, &iv, &mut zeros);
        assert_eq!(zeros.to_vec(), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0xdecafbadu32.to_be_bytes());
        p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
        p
    }

    #[test]
    fn what_one_side_protects_the_other_reads_once_and_a_forgery_never() {
        let master = [7u8; MASTER_LEN];
        let (mut tx, mut rx) = (Context::new(&master), Context::new(&master));
        for seq in [65530u16, 65531, 65533, 65532, 65534, 65535, 0, 1, 2] {
            let plain = rtp(seq);
            let mut p = plain.clone();
            assert!(tx.protect(&mut p));
            assert_ne!(p[12..172], plain[12..172], "encrypted");
            assert_eq!(p.len(), plain.len() + 10);
            let replay = p.clone();
            let len = rx
                .unprotect(&mut p)
                .unwrap_or_else(|e| panic!("{seq}: {e:?}"));
            assert_eq!(
                p[..len],
                plain[..],
                "{seq}: across the rollover and out of order"
            );
            let mut again = replay;
            assert_eq!(rx.unprotect(&mut again), Err(Refused::Replay), "{seq}");
        }
        let mut forged = rtp(3);
        tx.protect(&mut forged);
        forged[20] ^= 1;
        assert_eq!(rx.unprotect(&mut forged), Err(Refused::Tag));
        let mut other = rtp(4);
        Context::new(&[8u8; MASTER_LEN]).protect(&mut other);
        assert_eq!(rx.unprotect(&mut other), Err(Refused::Tag), "another key");
        assert_eq!(rx.unprotect(&mut [0x80; 15]), Err(Refused::Malformed));
    }

    #[test]
    fn inline_keys_read_back() {
        let key = inline_key(&[3u8; MASTER_LEN]);
        assert!(key.starts_with("inline:"));
        assert!(Context::from_inline(&key).is_some());
        assert!(
            Context::from_inline(&format!("{key}|2^31")).is_some(),
            "lifetime"
        );
        assert!(
            Context::from_inline("inline:c2hvcnQ=").is_none(),
            "too short"
        );
        assert!(Context::from_inline("nothing").is_none());
    }
}
