//! Signed links to an executive's page (`/x/{token}`), sent in every e-mail: whoever holds
//! the link sees that executive's messages, until it expires or is revoked.
//!
//! A token is the executive's id, when it was made and when it expires, signed with
//! HMAC-SHA256 under a secret of the server's ([`LinkKey`], 32 random bytes kept in the
//! data directory with mode 0600), all in base64url: nothing is stored per link, and a
//! link cannot be forged or altered without the key. Revocation
//! (`permanence executive-links revoke`) records the time: every link of that executive
//! made until then stops working ([`Link::revoked_by`]).
//!
//! Pure, apart from [`LinkKey::load_or_create`]: no clock is read (the time is an
//! argument) and the signature is checked in constant time (`hmac`'s `verify_slice`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use jiff::Timestamp;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How long a link in an e-mail opens the page: a product decision (a month covers a
/// message read late and a summary kept in a mailbox; revocation ends one earlier).
pub const VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);

/// The key's file name in the data directory.
pub const KEY_FILE: &str = "executive-links.key";

/// The token's layout version (the first byte signed).
const VERSION: u8 = 1;
/// Signed before the token's bytes, so that the key signs nothing else by accident.
const CONTEXT: &[u8] = b"permanence executive link\0";
/// The signature's length (HMAC-SHA256, not truncated).
pub const MAC_LEN: usize = 32;
/// Version, made-at (unix ms) and expiry (unix s): what precedes the executive's id.
const HEADER_LEN: usize = 1 + 8 + 8;
/// The longest token looked at; longer ones are refused before decoding (an id is at
/// most 64 characters in a plan, far below).
const MAX_TOKEN: usize = 400;
/// The key's length.
const KEY_LEN: usize = 32;

/// The server's secret for signing links.
#[derive(Clone)]
pub struct LinkKey([u8; KEY_LEN]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never in a log line.
        f.write_str("LinkKey(…)")
    }
}

/// Why the key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LinkKeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Others than the server's user may read it: anyone who can forge links.
    #[error(
        "{path}: readable by others (mode {mode:o}); it signs the executives' links: `chmod 600` it, or delete it to make a new one (every link sent so far stops working)"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Not a key of ours (wrong length).
    #[error(
        "{path}: {len} bytes, not a key of {KEY_LEN}; delete it to make a new one (every link sent so far stops working)"
    )]
    Length {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The operating system gave no randomness.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

impl LinkKey {
    /// A key from its bytes (tests, and the loader).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> LinkKey {
        LinkKey(bytes)
    }

    /// The key kept in `data` ([`KEY_FILE`]), made on first use: 32 bytes from the
    /// operating system, written with mode 0600 under a temporary name and linked into
    /// place, so that two processes starting together agree on one key and a crash never
    /// leaves half a key. A key others may read is refused.
    pub fn load_or_create(data: &Path) -> Result<LinkKey, LinkKeyError> {
        let path = data.join(KEY_FILE);
        let io = |source| LinkKeyError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data).map_err(io)?;
        match std::fs::read(&path) {
            Ok(bytes) => return Self::checked(&path, bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| LinkKeyError::Random(e.to_string()))?;
        let temporary = data.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
        write_private(&temporary, &key).map_err(io)?;
        let linked = std::fs::hard_link(&temporary, &path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "new key for the executives' links");
                Ok(LinkKey(key))
            }
            // Another process made it first: theirs is the key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::checked(&path, std::fs::read(&path).map_err(io)?)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key read from `path`, once its mode and length are right.
    fn checked(path: &Path, bytes: Vec<u8>) -> Result<LinkKey, LinkKeyError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(|source| LinkKeyError::Io {
                    path: path.into(),
                    source,
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(LinkKeyError::Permissions {
                    path: path.into(),
                    mode: mode & 0o777,
                });
            }
        }
        let len = bytes.len();
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| LinkKeyError::Length {
            path: path.into(),
            len,
        })?;
        Ok(LinkKey(key))
    }

    /// HMAC-SHA256 of `bytes` under this key, for another kind of link (`context` keeps
    /// the kinds apart: a token of one kind never verifies as another).
    pub fn sign_bytes(&self, context: &[u8], bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac_in(context);
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// Whether `signature` is [`LinkKey::sign_bytes`] of `bytes` in `context`, compared in
    /// constant time.
    pub fn verify_bytes(&self, context: &[u8], bytes: &[u8], signature: &[u8]) -> bool {
        let mut mac = self.mac_in(context);
        mac.update(bytes);
        mac.verify_slice(signature).is_ok()
    }

    fn mac_in(&self, context: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(context);
        mac
    }

    fn mac(&self) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(CONTEXT);
        mac
    }
}

/// Writes a new file only its owner may read (0600 from its creation, not after).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The executive's id (as in the plans' `[executives.ID]`).
    pub executive: String,
    /// When it was made (milliseconds: a revocation and a new link a moment later are
    /// told apart).
    pub made: Timestamp,
    /// When it stops opening the page.
    pub expires: Timestamp,
}

impl Link {
    /// Whether a revocation recorded at `revoked` (the executive's latest, if any) ends
    /// this link: every link made until then.
    pub fn revoked_by(&self, revoked: Option<Timestamp>) -> bool {
        revoked.is_some_and(|at| self.made <= at)
    }
}

/// Why a token opens nothing; the page answers 403 the same way for each (the log says
/// which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token of ours (bad encoding, length or version).
    #[error("malformed")]
    Malformed,
    /// The signature does not match: altered, or made with another key.
    #[error("bad signature")]
    Signature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
}

/// The token for `executive`, made at `now`, valid until `expires`.
pub fn sign(key: &LinkKey, executive: &str, now: Timestamp, expires: Timestamp) -> String {
    let made = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let until = u64::try_from(expires.as_second()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(HEADER_LEN + executive.len() + MAC_LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(&made.to_be_bytes());
    bytes.extend_from_slice(&until.to_be_bytes());
    bytes.extend_from_slice(executive.as_bytes());
    let mut mac = key.mac();
    mac.update(&bytes);
    bytes.extend_from_slice(&mac.finalize().into_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What a token says, if it is ours, unaltered and not expired at `now`. Revocation is
/// the caller's to check ([`Link::revoked_by`]): it lives in the records.
pub fn verify(key: &LinkKey, token: &str, now: Timestamp) -> Result<Link, LinkError> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(LinkError::Malformed);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| LinkError::Malformed)?;
    if bytes.len() <= HEADER_LEN + MAC_LEN {
        return Err(LinkError::Malformed);
    }
    let (signed, signature) = bytes.split_at(bytes.len() - MAC_LEN);
    let mut mac = key.mac();
    mac.update(signed);
    // Constant time: a forger learns nothing from how long the comparison takes.
    mac.verify_slice(signature)
        .map_err(|_| LinkError::Signature)?;
    let (header, executive) = signed.split_at(HEADER_LEN);
    if header[0] != VERSION {
        return Err(LinkError::Malformed);
    }
    let number = |b: &[u8]| b.try_into().map(u64::from_be_bytes).ok();
    let made = number(&header[1..9])
        .and_then(|ms| i64::try_from(ms).ok())
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
    let expires = number(&header[9..17])
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| Timestamp::from_second(s).ok());
    let executive = std::str::from_utf8(executive).ok();
    let (Some(made), Some(expires), Some(executive)) = (made, expires, executive) else {
        return Err(LinkError::Malformed);
    };
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(Link {
        executive: executive.to_string(),
        made,
        expires,
    })
}

/// The link to `executive`'s page for an e-mail sent at `now`, valid for [`VALIDITY`]:
/// `base` is the console's public address (`[web] public_url`, e.g.
/// `https://permanence.example.com`).
pub fn link(base: &str, key: &LinkKey, executive: &str, now: Timestamp) -> String {
    let expires = now.checked_add(VALIDITY).unwrap_or(Timestamp::MAX);
    link_until(base, key, executive, now, expires)
}

/// The link to `executive`'s page made at `now`, valid until `expires`.
pub fn link_until(
    base: &str,
    key: &LinkKey,
    executive: &str,
    now: Timestamp,
    expires: Timestamp,
) -> String {
    format!(
        "{}/x/{}",
        base.trim_end_matches('/'),
        sign(key, executive, now, expires)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> LinkKey {
        LinkKey::from_bytes([byte; KEY_LEN])
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    const NOW: i64 = 1_796_000_000;

    #[test]
    fn a_token_says_whose_it_is_until_it_expires() {
        let token = sign(&key(7), "marie", at(NOW), at(NOW + 3600));
        let link = verify(&key(7), &token, at(NOW + 10)).unwrap();
        assert_eq!(link.executive, "marie");
        assert_eq!(link.made, at(NOW));
        assert_eq!(link.expires, at(NOW + 3600));
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe without escaping: {token}"
        );
        assert_eq!(
            verify(&key(7), &token, at(NOW + 3599)).map(|l| l.executive),
            Ok("marie".into())
        );
        assert_eq!(
            verify(&key(7), &token, at(NOW + 3600)),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn any_change_to_a_token_breaks_its_signature() {
        let token = sign(&key(7), "marie", at(NOW), at(NOW + 3600));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let altered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(altered);
            assert_eq!(
                verify(&key(7), &altered, at(NOW)),
                Err(LinkError::Signature),
                "byte {i} flipped"
            );
        }
        // Someone else's id, a later expiry: the signature no longer matches.
        let mut forged = bytes[..bytes.len() - MAC_LEN].to_vec();
        forged.truncate(HEADER_LEN);
        forged.extend_from_slice(b"paul");
        forged.extend_from_slice(&bytes[bytes.len() - MAC_LEN..]);
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged);
        assert_eq!(verify(&key(7), &forged, at(NOW)), Err(LinkError::Signature));
        assert_eq!(
            verify(&key(8), &token, at(NOW)),
            Err(LinkError::Signature),
            "another server's key"
        );
    }

    #[test]
    fn what_is_not_a_token_is_malformed() {
        let long = "A".repeat(MAX_TOKEN + 1);
        for token in [
            "",
            "!!!",
            "abc",
            "a b",
            long.as_str(),
            "x".repeat(60).as_str(),
        ] {
            let got = verify(&key(7), token, at(NOW));
            assert!(
                matches!(got, Err(LinkError::Malformed | LinkError::Signature)),
                "{token}: {got:?}"
            );
        }
        assert_eq!(verify(&key(7), "", at(NOW)), Err(LinkError::Malformed));
        assert_eq!(verify(&key(7), "abc", at(NOW)), Err(LinkError::Malformed));
        // Signed, but of another layout: refused after the signature, never misread.
        let mut other = vec![2u8];
        other.extend_from_slice(&[0; 16]);
        other.extend_from_slice(b"marie");
        let mut mac = key(7).mac();
        mac.update(&other);
        other.extend_from_slice(&mac.finalize().into_bytes());
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other);
        assert_eq!(verify(&key(7), &other, at(NOW)), Err(LinkError::Malformed));
    }

    #[test]
    fn a_revocation_ends_every_link_made_until_then() {
        let made = Timestamp::from_millisecond(NOW * 1000 + 250).unwrap();
        let token = sign(&key(7), "marie", made, at(NOW + 3600));
        let link = verify(&key(7), &token, at(NOW)).unwrap();
        assert_eq!(link.made, made, "kept to the millisecond");
        assert!(!link.revoked_by(None));
        assert!(link.revoked_by(Some(made)));
        assert!(link.revoked_by(Some(at(NOW + 1))));
        assert!(
            !link.revoked_by(Some(at(NOW))),
            "a link made after the revocation opens the page"
        );
    }

    #[test]
    fn the_link_for_an_email_lasts_a_month_under_the_public_address() {
        let url = link("https://p.example/", &key(7), "marie", at(NOW));
        let token = url.strip_prefix("https://p.example/x/").unwrap();
        let link = verify(&key(7), token, at(NOW)).unwrap();
        assert_eq!(link.expires, at(NOW) + VALIDITY);
        assert_eq!(link.executive, "marie");
    }

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = LinkKey::load_or_create(&data).unwrap();
        let again = LinkKey::load_or_create(&data).unwrap();
        assert_eq!(first.0, again.0, "made once, then read");
        let path = data.join(KEY_FILE);
        assert_eq!(std::fs::read(&path).unwrap().len(), KEY_LEN);
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            1,
            "no temporary left"
        );
        assert_eq!(format!("{first:?}"), "LinkKey(…)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = LinkKey::load_or_create(&data).unwrap_err();
            assert!(matches!(
                refused,
                LinkKeyError::Permissions { mode: 0o644, .. }
            ));
            assert!(refused.to_string().contains("chmod 600"), "{refused}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            LinkKey::load_or_create(&data),
            Err(LinkKeyError::Length { len: 5, .. })
        ));
    }
}
