//! The numbers each company blocked (a secretary marked the caller as spam, or an operator
//! ran `permanence blocked add`): kept in SQLite with who, when and why, held in memory by
//! the server and handed to each routing decision as a fact
//! ([`CallFacts::on_block_list`](crate::dialplan::CallFacts)).
//!
//! This module is pure: the list as plain data, and the checks every number and reason
//! pass before they are written, whoever writes them (the console, the CLI). [`live`] is
//! the shell that loads it and notices changes other processes make.

pub mod live;

use std::collections::HashMap;

use crate::dialplan::Caller;
use crate::number::{Country, Dialled, E164};

/// The longest reason (characters).
pub const MAX_REASON: usize = 200;

/// Where the block lists stood when read: the last row and how many blocks were lifted.
/// Rows are never deleted and a block is lifted once, so both only grow, and any change
/// to the lists changes one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version {
    /// The highest row id.
    pub last_id: i64,
    /// Blocks lifted.
    pub removed: i64,
}

/// One blocked number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    /// Its row in `blocked_numbers`.
    pub id: i64,
    /// The company that blocked it.
    pub company: String,
    /// The number.
    pub number: E164,
    /// Why.
    pub reason: String,
    /// Who: a secretary's username, or `cli`.
    pub added_by: String,
    /// When (RFC 3339, UTC).
    pub added_at: String,
}

/// Every company's live blocks, by company and number.
#[derive(Debug, Clone, Default)]
pub struct BlockList {
    by_company: HashMap<String, HashMap<E164, BlockEntry>>,
    version: Version,
}

impl BlockList {
    /// The list made of these entries, read at `version`.
    pub fn new(entries: impl IntoIterator<Item = BlockEntry>, version: Version) -> Self {
        let mut by_company: HashMap<String, HashMap<E164, BlockEntry>> = HashMap::new();
        for e in entries {
            by_company
                .entry(e.company.clone())
                .or_default()
                .insert(e.number.clone(), e);
        }
        BlockList {
            by_company,
            version,
        }
    }

    /// The block of this number by this company, if it is blocked.
    pub fn get(&self, company: &str, number: &E164) -> Option<&BlockEntry> {
        self.by_company.get(company)?.get(number)
    }

    /// The block that concerns this caller, if any (only numbers can be blocked).
    pub fn blocking(&self, company: &str, caller: &Caller) -> Option<&BlockEntry> {
        match caller {
            Caller::Number(n) => self.get(company, n),
            Caller::Anonymous | Caller::Other(_) => None,
        }
    }

    /// A block by its row id.
    pub fn by_id(&self, id: i64) -> Option<&BlockEntry> {
        self.by_company
            .values()
            .flat_map(HashMap::values)
            .find(|e| e.id == id)
    }

    /// A company's blocks, newest first.
    pub fn company(&self, company: &str) -> Vec<&BlockEntry> {
        let mut entries: Vec<&BlockEntry> = self
            .by_company
            .get(company)
            .map(|m| m.values().collect())
            .unwrap_or_default();
        entries.sort_by_key(|e| std::cmp::Reverse(e.id));
        entries
    }

    /// The state of the records this list was read at.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether this list was read after `other` (both numbers only grow, so a list read
    /// earlier never replaces one read later).
    pub fn is_newer_than(&self, other: &BlockList) -> bool {
        let (a, b) = (self.version, other.version);
        a != b && a.last_id >= b.last_id && a.removed >= b.removed
    }
}

/// Why a number or a reason cannot be blocked; each names the field the console shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Not one telephone number.
    #[error("a telephone number (+33612345678, or 0612345678 in the company's country)")]
    Number,
    /// Empty, too long, or over several lines.
    #[error("a reason of 1 to {MAX_REASON} characters, on one line")]
    Reason,
}

impl BlockError {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            BlockError::Number => "number",
            BlockError::Reason => "reason",
        }
    }
}

/// A number to block, read like the plan's contact entries: international as is, national
/// in the company's country; always one whole number (no prefix, no `anonymous`: those
/// belong in the plan's `[contacts] blocked`).
pub fn number(text: &str, country: Country) -> Result<E164, BlockError> {
    if text.len() > 40 {
        return Err(BlockError::Number);
    }
    match Dialled::parse(text).ok_or(BlockError::Number)? {
        Dialled::International(n) => Ok(n),
        Dialled::National(n) => country.to_e164(&n).ok_or(BlockError::Number),
    }
}

/// A reason, trimmed: 1 to [`MAX_REASON`] characters, no control characters.
pub fn reason(text: &str) -> Result<String, BlockError> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.chars().count() <= MAX_REASON
        && !text.chars().any(char::is_control);
    if ok {
        Ok(text.to_string())
    } else {
        Err(BlockError::Reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr() -> Country {
        Country::from_code("FR").unwrap()
    }

    fn entry(id: i64, company: &str, number: &str) -> BlockEntry {
        BlockEntry {
            id,
            company: company.into(),
            number: E164::parse(number).unwrap(),
            reason: "démarchage".into(),
            added_by: "alice".into(),
            added_at: "2026-12-01T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn numbers_are_read_in_the_companys_country_and_only_whole_numbers_pass() {
        let want = E164::parse("+33612345678").unwrap();
        for text in [
            "+33612345678",
            "0612345678",
            "06 12 34 56 78",
            "0033612345678",
        ] {
            assert_eq!(number(text, fr()), Ok(want.clone()), "{text}");
        }
        let be = Country::from_code("BE").unwrap();
        assert_eq!(number("0470123456", be).unwrap().as_str(), "+32470123456");
        for bad in [
            "",
            "+33899*",
            "anonymous",
            "06<script>",
            "+",
            "612345678",
            "0612\n345678",
            &"1".repeat(41),
        ] {
            assert_eq!(number(bad, fr()), Err(BlockError::Number), "{bad:?}");
        }
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        assert_eq!(reason("  démarchage  ").as_deref(), Ok("démarchage"));
        assert_eq!(
            reason(&"é".repeat(MAX_REASON)).map(|r| r.chars().count()),
            Ok(MAX_REASON)
        );
        for bad in [
            String::new(),
            "   ".into(),
            "a\nb".into(),
            "a\u{1b}[31m".into(),
            "é".repeat(MAX_REASON + 1),
        ] {
            assert_eq!(reason(&bad), Err(BlockError::Reason), "{bad:?}");
        }
        assert_eq!(BlockError::Reason.field(), "reason");
        assert_eq!(BlockError::Number.field(), "number");
    }

    #[test]
    fn the_list_answers_per_company_and_a_list_read_earlier_never_wins() {
        let v = |last_id, removed| Version { last_id, removed };
        let list = BlockList::new(
            [
                entry(1, "acme", "+33612345678"),
                entry(3, "acme", "+33699999999"),
                entry(2, "globex", "+33612345678"),
            ],
            v(3, 0),
        );
        let caller = Caller::Number(E164::parse("+33612345678").unwrap());
        assert_eq!(list.blocking("acme", &caller).map(|e| e.id), Some(1));
        assert_eq!(list.blocking("globex", &caller).map(|e| e.id), Some(2));
        assert_eq!(list.blocking("initech", &caller), None);
        assert_eq!(list.blocking("acme", &Caller::Anonymous), None);
        assert_eq!(
            list.company("acme")
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            vec![3, 1],
            "newest first"
        );
        assert_eq!(list.by_id(2).map(|e| e.company.as_str()), Some("globex"));
        assert_eq!(list.by_id(9), None);

        let older = BlockList::new([], v(2, 0));
        let removal = BlockList::new([], v(3, 1));
        assert!(list.is_newer_than(&older));
        assert!(!older.is_newer_than(&list));
        assert!(removal.is_newer_than(&list));
        assert!(!list.is_newer_than(&removal));
        assert!(
            !list.is_newer_than(&list.clone()),
            "the same state is not news"
        );
    }
}
