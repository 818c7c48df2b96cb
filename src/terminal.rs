//! Text that came from outside (a caller's name or number, a phone's contact) made safe to
//! print on an operator's terminal: control characters (escape sequences that clear the
//! screen or retitle the window, line breaks that forge table rows) and the Unicode marks
//! that reorder what follows are shown as visible escapes. `--json` output needs none of
//! this: JSON escapes control characters itself.

use std::borrow::Cow;

/// `text` with every control character or bidirectional mark written as `\u{…}`.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_line_breaks_are_shown_not_obeyed() {
        assert_eq!(safe("Jean Dupont"), "Jean Dupont");
        assert!(matches!(safe("Hôtel du Parc"), Cow::Borrowed(_)));
        assert_eq!(safe("\u{1b}[2JEvil"), "\\u{1b}[2JEvil");
        assert_eq!(safe("a\nb\rc\td"), "a\\u{a}b\\u{d}c\\u{9}d");
        assert_eq!(safe("\u{1b}]0;pwned\u{7}"), "\\u{1b}]0;pwned\\u{7}");
        assert_eq!(safe("abc\u{202E}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("\u{9b}31m"), "\\u{9b}31m", "C1 CSI too");
    }
}
