//! Telephone numbers: parsing what a caller or trunk sends into E.164, and the
//! national forms that an operator's country uses.
//!
//! Pure: no I/O. The dialled number in a Request-URI arrives in many shapes
//! (`+33180000001`, `0180000001`, `0033 1 80 00 00 01`, `tel:+33-1-80-00-00-01`);
//! everything is reduced to one [`Dialled`] before the plan lookup.

use std::fmt;

/// An E.164 number: `+` then 1 to 15 digits, the first not zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses an international number (`+…` or `00…`), ignoring visual separators.
    pub fn parse(text: &str) -> Option<E164> {
        match Dialled::parse(text)? {
            Dialled::International(n) => Some(n),
            Dialled::National(_) => None,
        }
    }

    /// The number with its leading `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dialled number as received: either already international, or in a
/// national form whose country is known only from context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dialled {
    /// `+33180000001`, `0033180000001`.
    International(E164),
    /// `0180000001`: digits as dialled, trunk prefix kept.
    National(String),
}

impl Dialled {
    /// Parses a user part or a `tel:` URI. Visual separators (RFC 3966 §5.1.1:
    /// `-`, `.`, `(`, `)`) and spaces are dropped; anything else that is not a
    /// digit makes it not a number.
    pub fn parse(text: &str) -> Option<Dialled> {
        let text = text.trim();
        let text = text
            .strip_prefix("tel:")
            .or_else(|| text.strip_prefix("TEL:"))
            .unwrap_or(text);
        // A tel: URI may carry parameters (`;phone-context=…`); they do not change the digits.
        let text = text.split(';').next().unwrap_or_default();
        let mut plus = false;
        let mut digits = String::with_capacity(text.len());
        for (i, c) in text.chars().enumerate() {
            match c {
                '+' if i == 0 => plus = true,
                '0'..='9' => digits.push(c),
                '-' | '.' | '(' | ')' | ' ' => {}
                _ => return None,
            }
        }
        if !plus && let Some(rest) = digits.strip_prefix("00") {
            plus = true;
            digits = rest.to_string();
        }
        if plus {
            let valid = (1..=15).contains(&digits.len()) && !digits.starts_with('0');
            valid.then(|| Dialled::International(E164(format!("+{digits}"))))
        } else if (2..=15).contains(&digits.len()) {
            Some(Dialled::National(digits))
        } else {
            None
        }
    }
}

/// A country's dialling conventions: enough to turn national numbers into E.164.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country {
    /// ISO 3166 alpha-2 code, upper case.
    pub code: &'static str,
    /// International calling code, without `+`.
    pub calling_code: &'static str,
    /// The trunk prefix dialled before a national number, if the country has one.
    pub trunk_prefix: Option<&'static str>,
}

/// The countries whose national forms we understand (ITU-T E.164 assignments).
const COUNTRIES: &[Country] = &[
    Country {
        code: "FR",
        calling_code: "33",
        trunk_prefix: Some("0"),
    },
    Country {
        code: "BE",
        calling_code: "32",
        trunk_prefix: Some("0"),
    },
    Country {
        code: "CH",
        calling_code: "41",
        trunk_prefix: Some("0"),
    },
    Country {
        code: "LU",
        calling_code: "352",
        trunk_prefix: None,
    },
    Country {
        code: "MC",
        calling_code: "377",
        trunk_prefix: None,
    },
    Country {
        code: "DE",
        calling_code: "49",
        trunk_prefix: Some("0"),
    },
    Country {
        code: "GB",
        calling_code: "44",
        trunk_prefix: Some("0"),
    },
    Country {
        code: "ES",
        calling_code: "34",
        trunk_prefix: None,
    },
    Country {
        code: "IT",
        calling_code: "39",
        trunk_prefix: None,
    },
    Country {
        code: "US",
        calling_code: "1",
        trunk_prefix: Some("1"),
    },
    Country {
        code: "CA",
        calling_code: "1",
        trunk_prefix: Some("1"),
    },
];

impl Country {
    /// Looks a country up by its ISO code, in any case.
    pub fn from_code(code: &str) -> Option<Country> {
        COUNTRIES
            .iter()
            .copied()
            .find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// The codes we know, for error messages.
    pub fn known_codes() -> String {
        COUNTRIES
            .iter()
            .map(|c| c.code)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The national form of an E.164 number of this country (`+33180000001` → `0180000001`),
    /// or `None` when the number belongs to another country.
    pub fn national_form(&self, number: &E164) -> Option<String> {
        let subscriber = number.digits().strip_prefix(self.calling_code)?;
        Some(format!("{}{subscriber}", self.trunk_prefix.unwrap_or("")))
    }

    /// The E.164 form of a national number dialled in this country.
    pub fn to_e164(&self, national: &str) -> Option<E164> {
        let subscriber = match self.trunk_prefix {
            Some(prefix) => national.strip_prefix(prefix)?,
            None => national,
        };
        let digits = format!("{}{subscriber}", self.calling_code);
        (digits.len() <= 15).then(|| E164(format!("+{digits}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intl(s: &str) -> Dialled {
        Dialled::International(E164(s.to_string()))
    }

    #[test]
    fn dialled_forms() {
        assert_eq!(Dialled::parse("+33180000001"), Some(intl("+33180000001")));
        assert_eq!(Dialled::parse("0033180000001"), Some(intl("+33180000001")));
        assert_eq!(
            Dialled::parse("tel:+33-1-80-00-00-01"),
            Some(intl("+33180000001"))
        );
        assert_eq!(
            Dialled::parse("tel:+33.1.80.00.00.01;phone-context=x"),
            Some(intl("+33180000001"))
        );
        assert_eq!(
            Dialled::parse("01 80 00 00 01"),
            Some(Dialled::National("0180000001".into()))
        );
        assert_eq!(
            Dialled::parse("01.80.00.00.01"),
            Some(Dialled::National("0180000001".into()))
        );
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for bad in [
            "",
            "alice",
            "+",
            "+0123",
            "12a4",
            "+1234567890123456",
            "3+3",
            "*21#",
            "1",
        ] {
            assert_eq!(Dialled::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn national_forms_round_trip() {
        let fr = Country::from_code("fr").unwrap();
        let n = E164::parse("+33180000001").unwrap();
        assert_eq!(fr.national_form(&n).as_deref(), Some("0180000001"));
        assert_eq!(fr.to_e164("0180000001"), Some(n.clone()));
        assert_eq!(
            fr.to_e164("180000001"),
            None,
            "a French national number starts with 0"
        );
        let lu = Country::from_code("LU").unwrap();
        assert_eq!(lu.to_e164("123456").unwrap().as_str(), "+352123456");
        assert_eq!(lu.national_form(&n), None);
        assert_eq!(Country::from_code("ZZ"), None);
    }
}
