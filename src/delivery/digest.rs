//! The daily summary: messages whose rule says `digest HH:MM` wait in the outbox as `held`
//! rows, each due at its summary's time. When that time comes the worker folds the held
//! rows of one executive and one time into one summary row (an e-mail like any other),
//! keyed `digest:COMPANY:EXECUTIVE:TIME`, in one transaction: a summary is made once, and
//! after a restart the rows still held (their time passed while the server was down) make
//! it late rather than never. Pure: which held rows make which summary.

use std::collections::BTreeMap;

use jiff::Timestamp;

/// A held row, as the grouping reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its outbox row.
    pub row: i64,
    /// The company.
    pub company: String,
    /// The executive.
    pub executive: String,
    /// Their e-mail address.
    pub target: String,
    /// The summary's time.
    pub due: Timestamp,
    /// The message.
    pub message: i64,
}

/// One summary to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Its key (`digest:acme:marie:2026-11-27T17:30:00Z`).
    pub event: String,
    /// The company.
    pub company: String,
    /// The executive.
    pub executive: String,
    /// Their e-mail address.
    pub target: String,
    /// Its time.
    pub due: Timestamp,
    /// The held rows it folds.
    pub rows: Vec<i64>,
    /// Their messages, each once, oldest first.
    pub messages: Vec<i64>,
}

/// The summary's key: one per executive, address and time.
pub fn summary_key(company: &str, executive: &str, due: Timestamp) -> String {
    format!("digest:{company}:{executive}:{due}")
}

/// Groups held rows by company, executive, address and time.
pub fn summaries(held: &[Held]) -> Vec<Summary> {
    let mut groups: BTreeMap<(&str, &str, &str, Timestamp), Summary> = BTreeMap::new();
    for h in held {
        let s = groups
            .entry((&h.company, &h.executive, &h.target, h.due))
            .or_insert_with(|| Summary {
                event: summary_key(&h.company, &h.executive, h.due),
                company: h.company.clone(),
                executive: h.executive.clone(),
                target: h.target.clone(),
                due: h.due,
                rows: Vec::new(),
                messages: Vec::new(),
            });
        s.rows.push(h.row);
        if !s.messages.contains(&h.message) {
            s.messages.push(h.message);
        }
    }
    let mut out: Vec<Summary> = groups.into_values().collect();
    for s in &mut out {
        s.rows.sort_unstable();
        s.messages.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_summary_per_executive_and_time() {
        let t = |s: &str| -> Timestamp { s.parse().unwrap() };
        let held = |row, executive: &str, due, message| Held {
            row,
            company: "acme".into(),
            executive: executive.into(),
            target: format!("{executive}@acme.example"),
            due: t(due),
            message,
        };
        let s = summaries(&[
            held(5, "marie", "2026-11-27T17:30:00Z", 3),
            held(2, "marie", "2026-11-27T17:30:00Z", 1),
            held(9, "bob", "2026-11-27T17:30:00Z", 4),
            held(7, "marie", "2026-11-27T17:30:00Z", 1),
            held(8, "marie", "2026-11-28T17:30:00Z", 6),
        ]);
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.event.as_str(), s.rows.clone(), s.messages.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("digest:acme:bob:2026-11-27T17:30:00Z", vec![9], vec![4]),
                (
                    "digest:acme:marie:2026-11-27T17:30:00Z",
                    vec![2, 5, 7],
                    vec![1, 3]
                ),
                ("digest:acme:marie:2026-11-28T17:30:00Z", vec![8], vec![6]),
            ]
        );
    }
}
