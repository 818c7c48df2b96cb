//! A voicemail being recorded: the caller's decoded audio, bounded in length, with a
//! silence detector (pure), written to its WAV file as it comes ([`write_progressively`],
//! the header made valid every second so that a crash keeps what was said), and a file
//! left by a crash made whole again at the next start ([`repair`]).

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

/// How often a recording's header is rewritten to cover what was written (samples).
const FLUSH_EVERY: u64 = 8000;

/// The caller's audio so far: how much, and whether they spoke.
#[derive(Debug)]
pub struct Recorder {
    samples: usize,
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
            samples: 0,
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

    /// Takes decoded audio: how much of it belongs in the recording (none past the
    /// maximum), and what it meant: speech at last, or the quiet that ends a message.
    pub fn push(&mut self, frame: &[i16]) -> (usize, Heard) {
        let keep = frame
            .len()
            .min(self.max_samples.saturating_sub(self.samples));
        self.samples += keep;
        (keep, self.hear(frame))
    }

    fn hear(&mut self, frame: &[i16]) -> Heard {
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

    /// Samples kept so far.
    pub fn samples(&self) -> usize {
        self.samples
    }
}

/// Writes 8 kHz mono 16-bit PCM to `path` as frames arrive, until the sender is dropped;
/// the header is made valid every second. Returns the samples written. Blocking: run it
/// off the signalling thread.
pub fn write_progressively(
    path: &Path,
    frames: std::sync::mpsc::Receiver<Vec<i16>>,
) -> Result<u64, hound::Error> {
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
    let mut written: u64 = 0;
    let mut flushed: u64 = 0;
    for frame in frames {
        for s in frame {
            w.write_sample(s)?;
        }
        written = u64::from(w.len());
        if written - flushed >= FLUSH_EVERY {
            w.flush()?;
            flushed = written;
        }
    }
    w.finalize()?;
    Ok(written)
}

/// Makes a recording a crash interrupted whole again: its header is set to cover every
/// complete sample in the file. Returns the samples it holds.
pub fn repair(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut header = [0u8; 44];
    file.read_exact(&mut header)?;
    // The canonical 44-byte PCM header, as `write_progressively` writes it.
    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" || &header[36..40] != b"data" {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a recording of ours (no canonical WAV header)",
        ));
    }
    let data = (file.metadata()?.len().saturating_sub(44)) & !1;
    let data32 = u32::try_from(data).unwrap_or(!1);
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&(data32.saturating_add(36)).to_le_bytes())?;
    file.seek(SeekFrom::Start(40))?;
    file.write_all(&data32.to_le_bytes())?;
    file.set_len(44 + u64::from(data32))?;
    file.sync_all()?;
    Ok(u64::from(data32) / 2)
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
            assert_eq!(r.push(&[0; 160]).1, Heard::Listening, "nothing said yet");
        }
        assert_eq!(r.push(&tone(160)).1, Heard::FirstSpeech);
        assert_eq!(r.push(&tone(160)).1, Heard::Listening);
        let mut ended = false;
        for i in 0..100 {
            match r.push(&[3; 160]).1 {
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
        let kept: usize = (0..80).map(|_| r.push(&tone(160)).0).sum();
        assert_eq!((kept, r.samples()), (8000, 8000));
    }

    #[test]
    fn a_recording_cut_by_a_crash_keeps_what_was_flushed_and_is_repaired_whole() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("rec/call-1.wav");
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || write_progressively(&path, rx))
        };
        for _ in 0..(3 * 50 + 10) {
            tx.send(tone(160)).unwrap();
        }
        // Read while it is still being written, as after a kill: valid, at least 3 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mid = loop {
            if let Ok(r) = hound::WavReader::open(&path)
                && r.duration() >= 3 * 8000
            {
                break r.duration();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "flushed within a second"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(mid <= 160 * 160);
        drop(tx);
        assert_eq!(writer.join().unwrap().unwrap(), 160 * 160);

        // A file whose header says less than it holds (a crash between flushes).
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40..44].copy_from_slice(&8000u32.to_le_bytes());
        bytes.push(7); // half a sample
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(repair(&path).unwrap(), 160 * 160);
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 160 * 160);
        std::fs::write(&path, b"not a wav").unwrap();
        assert!(repair(&path).is_err());
    }
}
