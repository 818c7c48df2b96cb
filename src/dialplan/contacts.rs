//! Contact lists and who is calling. Membership is decided by hash lookups (the exact
//! number, then each of its at most 15 prefixes), never by scanning a list: a company
//! with 10,000 contacts decides as fast as one with ten.

use std::collections::{BTreeSet, HashMap};

use crate::number::{Country, Dialled, E164};

/// Who is calling, as far as the From header tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A number we could read (normalised with the company's country).
    Number(E164),
    /// Withheld caller ID (`anonymous`, RFC 3323 privacy).
    Anonymous,
    /// Something else (a SIP user that is not a number).
    Other(String),
}

impl Caller {
    /// Reads a From user part (and display name) in a company's country.
    pub fn from_user(user: Option<&str>, display: Option<&str>, country: Country) -> Caller {
        let anonymous =
            |s: &str| s.eq_ignore_ascii_case("anonymous") || s.eq_ignore_ascii_case("restricted");
        match user {
            Some(u) if anonymous(u) => Caller::Anonymous,
            None if display.is_some_and(anonymous) => Caller::Anonymous,
            Some(u) => match Dialled::parse(u) {
                Some(Dialled::International(n)) => Caller::Number(n),
                Some(Dialled::National(n)) => country
                    .to_e164(&n)
                    .map_or(Caller::Other(u.to_string()), Caller::Number),
                None => Caller::Other(u.to_string()),
            },
            None => Caller::Other(String::new()),
        }
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Number(n) => write!(f, "{n}"),
            Caller::Anonymous => f.write_str("anonymous"),
            Caller::Other(s) => write!(f, "{s:?}"),
        }
    }
}

/// A number pattern: an exact E.164 number or a prefix ending in `*` (`+33899*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Exactly this number.
    Exact(E164),
    /// Numbers starting with these characters (`+` and digits).
    Prefix(String),
}

impl Pattern {
    /// Parses `+33612345678`, `0612345678` (national, in `country`) or `+33899*`.
    pub fn parse(text: &str, country: Country) -> Option<Pattern> {
        if let Some(prefix) = text.strip_suffix('*') {
            let digits: String = prefix
                .chars()
                .filter(|c| !matches!(c, ' ' | '.' | '-'))
                .collect();
            let intl = if let Some(rest) = digits.strip_prefix("00") {
                format!("+{rest}")
            } else if digits.starts_with('+') {
                digits
            } else {
                // A national prefix: turn its trunk prefix into the country code.
                let n = country.to_e164(&digits)?;
                n.to_string()
            };
            let valid = intl.len() >= 2 && intl[1..].chars().all(|c| c.is_ascii_digit());
            return valid.then_some(Pattern::Prefix(intl));
        }
        match Dialled::parse(text)? {
            Dialled::International(n) => Some(Pattern::Exact(n)),
            Dialled::National(n) => country.to_e164(&n).map(Pattern::Exact),
        }
    }

    /// Whether a caller matches.
    pub fn matches(&self, caller: &Caller) -> bool {
        match (self, caller) {
            (Pattern::Exact(n), Caller::Number(c)) => n == c,
            (Pattern::Prefix(p), Caller::Number(c)) => c.as_str().starts_with(p.as_str()),
            _ => false,
        }
    }
}

/// A contact list's index in [`Contacts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListId(pub u16);

/// A company's contact lists, indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct Contacts {
    names: Vec<String>,
    exact: HashMap<E164, Vec<(ListId, Option<String>)>>,
    prefixes: HashMap<String, Vec<ListId>>,
    anonymous: Vec<ListId>,
}

/// What the lists say about one caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The lists the caller is in.
    pub lists: BTreeSet<ListId>,
    /// The contact's name, when an exact entry carries one.
    pub name: Option<String>,
}

impl Contacts {
    /// Adds (or finds) a list by name.
    pub(super) fn list(&mut self, name: &str) -> ListId {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return ListId(i as u16);
        }
        self.names.push(name.to_string());
        ListId((self.names.len() - 1) as u16)
    }

    /// Adds an entry to a list.
    pub(super) fn add(&mut self, list: ListId, pattern: Pattern, name: Option<String>) {
        match pattern {
            Pattern::Exact(n) => self.exact.entry(n).or_default().push((list, name)),
            Pattern::Prefix(p) => self.prefixes.entry(p).or_default().push(list),
        }
    }

    /// Adds `anonymous` to a list.
    pub(super) fn add_anonymous(&mut self, list: ListId) {
        self.anonymous.push(list);
    }

    /// A list's id by name.
    pub fn id(&self, name: &str) -> Option<ListId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| ListId(i as u16))
    }

    /// A list's name.
    pub fn name(&self, id: ListId) -> &str {
        self.names
            .get(usize::from(id.0))
            .map_or("?", String::as_str)
    }

    /// Every list name, in order of appearance.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The lists a caller belongs to: at most 16 hash lookups whatever the list sizes.
    pub fn membership(&self, caller: &Caller) -> Membership {
        let mut m = Membership::default();
        match caller {
            Caller::Anonymous => m.lists.extend(self.anonymous.iter().copied()),
            Caller::Number(n) => {
                if let Some(entries) = self.exact.get(n) {
                    for (list, name) in entries {
                        m.lists.insert(*list);
                        if m.name.is_none() {
                            m.name.clone_from(name);
                        }
                    }
                }
                if !self.prefixes.is_empty() {
                    let s = n.as_str();
                    for end in 2..=s.len() {
                        if let Some(lists) = self.prefixes.get(&s[..end]) {
                            m.lists.extend(lists.iter().copied());
                        }
                    }
                }
            }
            Caller::Other(_) => {}
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr() -> Country {
        Country::from_code("FR").unwrap()
    }

    fn num(s: &str) -> Caller {
        Caller::Number(E164::parse(s).unwrap())
    }

    #[test]
    fn callers_are_read_in_the_companys_country() {
        assert_eq!(
            Caller::from_user(Some("0612345678"), None, fr()),
            num("+33612345678")
        );
        assert_eq!(
            Caller::from_user(Some("anonymous"), None, fr()),
            Caller::Anonymous
        );
        assert_eq!(
            Caller::from_user(None, Some("Anonymous"), fr()),
            Caller::Anonymous
        );
        assert_eq!(
            Caller::from_user(Some("alice"), None, fr()),
            Caller::Other("alice".into())
        );
    }

    #[test]
    fn exact_entries_prefixes_and_anonymous() {
        let mut c = Contacts::default();
        let vip = c.list("vip");
        let blocked = c.list("blocked");
        c.add(
            vip,
            Pattern::parse("06 22 22 22 22", fr()).unwrap(),
            Some("Jean".into()),
        );
        c.add(blocked, Pattern::parse("+33899*", fr()).unwrap(), None);
        c.add(blocked, Pattern::parse("0899*", fr()).unwrap(), None);
        c.add_anonymous(blocked);
        let m = c.membership(&num("+33622222222"));
        assert_eq!(
            (m.lists.into_iter().collect::<Vec<_>>(), m.name.as_deref()),
            (vec![vip], Some("Jean"))
        );
        assert_eq!(
            c.membership(&num("+33899123456"))
                .lists
                .into_iter()
                .collect::<Vec<_>>(),
            vec![blocked]
        );
        assert!(c.membership(&num("+33612345678")).lists.is_empty());
        assert_eq!(
            c.membership(&Caller::Anonymous)
                .lists
                .into_iter()
                .collect::<Vec<_>>(),
            vec![blocked]
        );
        assert!(c.membership(&Caller::Other("x".into())).lists.is_empty());
    }

    #[test]
    fn patterns() {
        assert_eq!(
            Pattern::parse("0899*", fr()),
            Some(Pattern::Prefix("+33899".into()))
        );
        assert_eq!(
            Pattern::parse("+44*", fr()),
            Some(Pattern::Prefix("+44".into()))
        );
        assert_eq!(Pattern::parse("abc*", fr()), None);
        assert_eq!(Pattern::parse("hello", fr()), None);
        assert!(
            Pattern::parse("+33899*", fr())
                .unwrap()
                .matches(&num("+33899000000"))
        );
        assert!(
            !Pattern::parse("+33899*", fr())
                .unwrap()
                .matches(&Caller::Anonymous)
        );
    }
}
