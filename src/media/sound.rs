//! Sounds: 8 kHz mono 16-bit WAV files, encoded once at load to both G.711 laws so that
//! playing is a slice copy per packet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dialplan::SoundName;
use crate::g711;
use crate::sdp::Codec;

/// A sound ready to send.
#[derive(Debug)]
pub struct Sound {
    ulaw: Vec<u8>,
    alaw: Vec<u8>,
}

/// Why a sound cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum SoundError {
    /// Not readable as WAV.
    #[error("{path}: cannot read WAV: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// hound's error.
        source: hound::Error,
    },
    /// WAV, but not the format we play.
    #[error(
        "{path}: {found}; expected 8000 Hz mono 16-bit PCM (convert with: sox in.wav -r 8000 -c 1 -b 16 out.wav)"
    )]
    WrongFormat {
        /// The file.
        path: PathBuf,
        /// What it is.
        found: String,
    },
    /// No samples.
    #[error("{path}: the sound is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Longest sound we load: 10 minutes (4.8 MB per law); guards memory against a wrong file.
const MAX_SAMPLES: usize = 8000 * 600;

impl Sound {
    /// Encodes linear samples.
    pub fn from_samples(samples: &[i16]) -> Sound {
        Sound {
            ulaw: samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect(),
            alaw: samples.iter().map(|&s| g711::linear_to_alaw(s)).collect(),
        }
    }

    /// Reads and encodes a WAV file.
    pub fn load(path: &Path) -> Result<Sound, SoundError> {
        let reader = hound::WavReader::open(path).map_err(|source| SoundError::Unreadable {
            path: path.into(),
            source,
        })?;
        let spec = reader.spec();
        if spec.sample_rate != 8000
            || spec.channels != 1
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(SoundError::WrongFormat {
                path: path.into(),
                found: format!(
                    "{} Hz, {} channel(s), {}-bit {:?}",
                    spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
                ),
            });
        }
        if reader.len() as usize > MAX_SAMPLES {
            return Err(SoundError::WrongFormat {
                path: path.into(),
                found: format!("{} samples (over 10 minutes)", reader.len()),
            });
        }
        let samples = reader
            .into_samples::<i16>()
            .collect::<Result<Vec<i16>, _>>()
            .map_err(|source| SoundError::Unreadable {
                path: path.into(),
                source,
            })?;
        if samples.is_empty() {
            return Err(SoundError::Empty { path: path.into() });
        }
        Ok(Sound::from_samples(&samples))
    }

    /// The encoded sound in a codec.
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.ulaw,
            Codec::Pcma => &self.alaw,
        }
    }

    /// Duration in 20 ms frames, rounded up.
    pub fn frames(&self) -> usize {
        self.ulaw.len().div_ceil(crate::rtp::FRAME_SAMPLES as usize)
    }
}

/// Every sound the plans use, by name.
#[derive(Debug, Default, Clone)]
pub struct Sounds(HashMap<SoundName, Arc<Sound>>);

impl Sounds {
    /// Loads each named sound under `dir`, reporting every file that fails.
    pub fn load<'a>(
        dir: &Path,
        names: impl Iterator<Item = &'a SoundName>,
    ) -> Result<Sounds, Vec<SoundError>> {
        let mut map = HashMap::new();
        let mut errors = Vec::new();
        for name in names {
            if map.contains_key(name) {
                continue;
            }
            match Sound::load(&dir.join(&name.0)) {
                Ok(s) => {
                    map.insert(name.clone(), Arc::new(s));
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Sounds(map))
        } else {
            Err(errors)
        }
    }

    /// A loaded sound.
    pub fn get(&self, name: &SoundName) -> Option<&Arc<Sound>> {
        self.0.get(name)
    }

    /// How long each sound plays (20 ms per frame).
    pub fn lengths(&self) -> HashMap<SoundName, std::time::Duration> {
        self.0
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    std::time::Duration::from_millis(s.frames() as u64 * 20),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(path: &Path, rate: u32, channels: u16, samples: usize) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..samples {
            w.write_sample((i as i16).wrapping_mul(64)).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn loads_8khz_mono_and_refuses_other_formats_naming_the_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let good = dir.path().join("good.wav");
        wav(&good, 8000, 1, 8000);
        let s = Sound::load(&good).unwrap();
        assert_eq!(s.frames(), 50);
        assert_eq!(s.encoded(Codec::Pcmu)[0], g711::linear_to_ulaw(0));
        let bad = dir.path().join("cd.wav");
        wav(&bad, 44100, 2, 100);
        let e = Sound::load(&bad).unwrap_err().to_string();
        assert!(e.contains("cd.wav") && e.contains("44100 Hz"), "{e}");
        let missing = Sound::load(&dir.path().join("nope.wav"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.wav"), "{missing}");
    }
}
