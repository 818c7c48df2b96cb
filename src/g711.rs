//! G.711 µ-law and A-law, ITU-T G.711 segment tables computed by hand.
//!
//! Pure functions over samples; the media layer encodes each sound once at start.

/// The µ-law byte for a 16-bit linear sample.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(CLIP) + BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - (pcm as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// The 16-bit linear sample for a µ-law byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// The A-law byte for a 16-bit linear sample.
pub fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut pcm = i32::from(sample) >> 3;
    let sign = if pcm >= 0 {
        0x80
    } else {
        pcm = -pcm - 1;
        0x00
    };
    let pcm = pcm.min(0x0FFF);
    let byte = if pcm < 32 {
        (pcm >> 1) as u8
    } else {
        // Segment 1 starts at 32 (bit 5); each segment doubles the step.
        let exponent = (31 - (pcm as u32).leading_zeros()) as i32 - 4;
        let mantissa = (pcm >> exponent) & 0x0F;
        ((exponent << 4) | mantissa) as u8
    };
    (byte | sign) ^ 0x55
}

/// The 16-bit linear sample for an A-law byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from the G.711 tables (ITU-T G.711, tables 1a/2a) as
    // reproduced by every reference implementation (Sun g711.c, G.191 STL).
    #[test]
    fn ulaw_reference_values() {
        for (linear, byte) in [
            (0i16, 0xFFu8),
            (-1, 0x7F),
            (8, 0xFE),
            (100, 0xF2),
            (1000, 0xCE),
            (-1000, 0x4E),
            (8031, 0xA0),
            (32767, 0x80),
            (-32768, 0x00),
        ] {
            assert_eq!(linear_to_ulaw(linear), byte, "encode {linear}");
        }
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xCE), 988);
    }

    #[test]
    fn alaw_reference_values() {
        for (linear, byte) in [
            (0i16, 0xD5u8),
            (-1, 0x55),
            (8, 0xD5),
            (100, 0xD3),
            (1000, 0xFA),
            (-1000, 0x7A),
            (32767, 0xAA),
            (-32768, 0x2A),
        ] {
            assert_eq!(linear_to_alaw(linear), byte, "encode {linear}");
        }
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn round_trip_stays_within_quantisation_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            // The largest step of either law is 1024 (µ) / 1024 (A) at full scale.
            let tolerance = (i32::from(s).abs() / 16).max(16) + 8;
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tolerance,
                "µ {s} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tolerance,
                "A {s} -> {a}"
            );
        }
    }

    #[test]
    fn every_byte_decodes_and_reencodes_to_itself() {
        for b in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law {b:#x}");
            let back = linear_to_ulaw(ulaw_to_linear(b));
            // 0x7F and 0xFF both mean zero in µ-law; zero encodes as 0xFF.
            if b == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, b, "µ-law {b:#x}");
            }
        }
    }
}
