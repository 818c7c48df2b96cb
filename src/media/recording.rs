//! A voicemail being recorded: the caller's decoded audio, bounded in length, with a
//! silence detector. Pure except [`write_wav`].

use std::path::Path;

/// Average absolute amplitude below which a 20 ms frame counts as silence: about -45 dBFS,
/// above the hiss of a quiet line and well below speech.
const SILENCE_LEVEL: u32 = 180;

/// What the recorder heard in a frame, when it matters to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Nothing new: keep recording.
    Listening,
    /// The caller's voice, for the first time.
    FirstSpeech,
    /// Quiet long enough after the caller spoke: the message is over.
    SilenceAfterSpeech,
}

/// The caller's audio so far.
#[derive(Debug)]
pub struct Recorder {
    samples: Vec<i16>,
    max_samples: usize,
    silence_samples: usize,
    silent_run: usize,
    heard_voice: bool,
}

impl Recorder {
    /// A recorder that keeps at most `max_seconds` and reports `silence_seconds` of quiet
    /// after speech (0: never). Quiet before any speech is the call machine's `NoSpeech`
    /// timer: a caller who sends no packets at all must be caught too.
    pub fn new(max_seconds: u32, silence_seconds: u32) -> Self {
        let max_samples = max_seconds as usize * 8000;
        Recorder {
            samples: Vec::with_capacity(max_samples.min(8000 * 30)),
            max_samples,
            silence_samples: silence_seconds as usize * 8000,
            silent_run: 0,
            heard_voice: false,
        }
    }

    /// Whether the caller said anything yet.
    pub fn heard_voice(&self) -> bool {
        self.heard_voice
    }

    /// Adds decoded audio and says what it meant: speech at last, or the quiet that ends a
    /// message.
    pub fn push(&mut self, frame: &[i16]) -> Heard {
        let room = self.max_samples.saturating_sub(self.samples.len());
        self.samples
            .extend_from_slice(&frame[..frame.len().min(room)]);
        if frame.is_empty() {
            return Heard::Listening;
        }
        let level = frame
            .iter()
            .map(|s| u32::from(s.unsigned_abs()))
            .sum::<u32>()
            / frame.len() as u32;
        if level >= SILENCE_LEVEL {
            self.silent_run = 0;
            let first = !self.heard_voice;
            self.heard_voice = true;
            return if first {
                Heard::FirstSpeech
            } else {
                Heard::Listening
            };
        }
        self.silent_run += frame.len();
        if self.heard_voice && self.silence_samples > 0 && self.silent_run >= self.silence_samples {
            Heard::SilenceAfterSpeech
        } else {
            Heard::Listening
        }
    }

    /// The samples, with trailing silence that ended the recording left in (it is short
    /// and tells the listener the caller stopped).
    pub fn into_samples(self) -> Vec<i16> {
        self.samples
    }
}

/// Writes 8 kHz mono 16-bit PCM.
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), hound::Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample(*s)?;
    }
    w.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f64 * 0.785).sin() * 8000.0) as i16)
            .collect()
    }

    #[test]
    fn silence_after_speech_ends_it_but_a_slow_start_is_not_cut() {
        let mut r = Recorder::new(60, 2);
        for _ in 0..200 {
            assert_eq!(r.push(&[0; 160]), Heard::Listening, "nothing said yet");
        }
        assert_eq!(r.push(&tone(160)), Heard::FirstSpeech);
        assert_eq!(r.push(&tone(160)), Heard::Listening);
        let mut ended = false;
        for i in 0..100 {
            match r.push(&[3; 160]) {
                Heard::SilenceAfterSpeech => {
                    assert_eq!(i, 99, "exactly 2 s of quiet");
                    ended = true;
                }
                other => assert_eq!(other, Heard::Listening),
            }
        }
        assert!(ended);
        assert!(r.heard_voice());
    }

    #[test]
    fn keeps_at_most_the_maximum() {
        let mut r = Recorder::new(1, 0);
        for _ in 0..80 {
            r.push(&tone(160));
        }
        assert_eq!(r.into_samples().len(), 8000);
    }
}
