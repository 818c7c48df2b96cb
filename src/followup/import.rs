//! A CSV of unpaid invoices (or of any tasks) read into tasks, all or nothing: every row
//! is checked, every bad one is reported with its line, and either all rows become tasks
//! or none does.
//!
//! The first line names the columns, in English or French, in any order: `customer`/
//! `client`/`nom`, `phone`/`téléphone`, `email`/`courriel`, `invoice`/`facture`,
//! `amount`/`montant`, `due`/`échéance`, `notes`, and optionally `kind`/`type` (default
//! `invoice`) and `assignee`/`assignée`. The separator is `,` or `;` (what a French
//! spreadsheet writes), whichever the first line uses.

use crate::number::Country;

use super::{Draft, NewTask, TaskError};

/// The most rows one file may hold.
pub const MAX_ROWS: usize = 2000;
/// The largest file accepted (bytes).
pub const MAX_BYTES: usize = 256 * 1024;
/// The most problems reported (a file of garbage need not list each line).
pub const MAX_PROBLEMS: usize = 50;

/// One thing wrong with the file: its line (1 is the header), the column if known, what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The line in the file where the row starts.
    pub line: u64,
    /// The task field concerned (`phone`, `amount`…), if one.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

/// The columns we read, by task field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Kind,
    Customer,
    Phone,
    Email,
    Amount,
    Invoice,
    Due,
    Assignee,
    Notes,
}

impl Column {
    fn named(header: &str) -> Option<Column> {
        let h = header.trim().to_lowercase();
        Some(match h.as_str() {
            "kind" | "type" => Column::Kind,
            "customer" | "client" | "nom" | "name" => Column::Customer,
            "phone" | "telephone" | "téléphone" | "tel" | "tél" => Column::Phone,
            "email" | "e-mail" | "courriel" | "mail" => Column::Email,
            "amount" | "montant" => Column::Amount,
            "invoice" | "facture" | "n° facture" | "numéro de facture" => Column::Invoice,
            "due" | "échéance" | "echeance" | "due date" => Column::Due,
            "assignee" | "assignée" | "assignee_username" => Column::Assignee,
            "notes" | "note" | "remarques" => Column::Notes,
            _ => return None,
        })
    }

    fn set(self, draft: &mut Draft, value: &str) {
        let slot = match self {
            Column::Kind => &mut draft.kind,
            Column::Customer => &mut draft.customer,
            Column::Phone => &mut draft.phone,
            Column::Email => &mut draft.email,
            Column::Amount => &mut draft.amount,
            Column::Invoice => &mut draft.invoice,
            Column::Due => &mut draft.due,
            Column::Assignee => &mut draft.assignee,
            Column::Notes => &mut draft.notes,
        };
        *slot = value.to_string();
    }
}

fn problem(line: u64, field: Option<&'static str>, message: impl Into<String>) -> Problem {
    Problem {
        line,
        field,
        message: message.into(),
    }
}

/// Reads the whole file: every task, or every problem found (at most [`MAX_PROBLEMS`]).
pub fn parse(
    bytes: &[u8],
    country: Country,
    secretaries: &[&str],
) -> Result<Vec<NewTask>, Vec<Problem>> {
    if bytes.len() > MAX_BYTES {
        return Err(vec![problem(
            0,
            None,
            format!("the file is larger than {} KiB", MAX_BYTES / 1024),
        )]);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| vec![problem(0, None, "the file is not UTF-8 text")])?;
    // Spreadsheets often start their UTF-8 with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or_default();
    let delimiter = if first.matches(';').count() > first.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(false)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(vec![problem(1, None, csv_error(&e))]),
        None => return Err(vec![problem(0, None, "the file is empty")]),
    };
    let columns = columns(&header)?;
    let mut tasks = Vec::new();
    let mut problems = Vec::new();
    for record in records {
        if problems.len() >= MAX_PROBLEMS {
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(problem(line, None, csv_error(&e)));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if tasks.len() + problems.len() >= MAX_ROWS {
            problems.push(problem(line, None, format!("more than {MAX_ROWS} rows")));
            break;
        }
        let mut draft = Draft {
            kind: "invoice".into(),
            ..Draft::default()
        };
        for (column, value) in columns.iter().zip(record.iter()) {
            column.set(&mut draft, value);
        }
        match draft.check(country, secretaries) {
            Ok(task) => tasks.push(task),
            Err(e) => problems.push(row_problem(line, &e)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if tasks.is_empty() {
        return Err(vec![problem(0, None, "the file holds no rows")]);
    }
    Ok(tasks)
}

fn row_problem(line: u64, e: &TaskError) -> Problem {
    problem(line, Some(e.field()), e.to_string())
}

/// The header's columns, each known and named once.
fn columns(header: &csv::StringRecord) -> Result<Vec<Column>, Vec<Problem>> {
    let mut columns: Vec<Column> = Vec::new();
    for name in header.iter() {
        let Some(column) = Column::named(name) else {
            // Shown to the secretary: keep it short and printable.
            let shown: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
            return Err(vec![problem(1, None, format!("unknown column {shown:?}"))]);
        };
        if columns.contains(&column) {
            return Err(vec![problem(1, None, "a column is named twice")]);
        }
        columns.push(column);
    }
    Ok(columns)
}

/// The CSV reader's complaint, without echoing the file's bytes.
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
        _ => "not a CSV row".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr() -> Country {
        Country::from_code("FR").unwrap()
    }

    #[test]
    fn a_french_spreadsheet_export() {
        let file = "\u{feff}Client;Téléphone;Facture;Montant;Échéance\n\
                    Plomberie Martin;01 23 45 67 89;F-101;1 200,00;30/11/2026\n\
                    \n\
                    \"Dupont; fils\";+33612345678;F-102;99,90;2026-12-15\n";
        let tasks = parse(file.as_bytes(), fr(), &[]).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].customer, "Plomberie Martin");
        assert_eq!(tasks[0].phone.as_ref().unwrap().as_str(), "+33123456789");
        assert_eq!(tasks[0].amount_cents, Some(120000));
        assert_eq!(tasks[1].customer, "Dupont; fils");
        assert_eq!(tasks[1].amount_cents, Some(9990));
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_nothing_is_taken() {
        let file = "customer,phone,invoice,amount,due\n\
                    Martin,0123456789,F-1,10.00,2026-11-30\n\
                    Durand,not a number,F-2,20.00,2026-11-30\n\
                    \"Multi\nline\",0123456789,F-3,30.00,2026-11-30\n\
                    Bernard,0123456789,F-4,-3,2026-11-30\n";
        let problems = parse(file.as_bytes(), fr(), &[]).unwrap_err();
        let lines: Vec<(u64, Option<&str>)> = problems.iter().map(|p| (p.line, p.field)).collect();
        assert_eq!(
            lines,
            [
                (3, Some("phone")),
                (4, Some("customer")),
                (6, Some("amount"))
            ]
        );
    }

    #[test]
    fn the_header_must_be_known() {
        let p = parse(b"customer,password\nx,y\n", fr(), &[]).unwrap_err();
        assert_eq!(p[0].line, 1);
        assert!(p[0].message.contains("password"), "{p:?}");
        let p = parse(b"customer,client\nx,y\n", fr(), &[]).unwrap_err();
        assert_eq!(p[0].message, "a column is named twice");
    }

    #[test]
    fn ragged_rows_and_empty_files() {
        let p = parse(b"customer,invoice,amount\nx,F-1\n", fr(), &[]).unwrap_err();
        assert_eq!(
            (p[0].line, p[0].message.as_str()),
            (2, "2 fields where the header has 3")
        );
        assert!(parse(b"", fr(), &[]).is_err());
        assert!(parse(b"customer,invoice,amount\n", fr(), &[]).is_err());
        assert!(parse(&[0xff, 0xfe, b'a'], fr(), &[]).is_err());
    }

    #[test]
    fn other_kinds_and_assignees() {
        let file = "kind,customer,phone,assignee\ncallback,Martin,0123456789,alice\n";
        let tasks = parse(file.as_bytes(), fr(), &["alice"]).unwrap();
        assert_eq!(tasks[0].assignee.as_deref(), Some("alice"));
        let p = parse(file.as_bytes(), fr(), &["bob"]).unwrap_err();
        assert_eq!((p[0].line, p[0].field), (2, Some("assignee")));
    }

    #[test]
    fn too_many_rows() {
        let mut file = String::from("customer,invoice,amount\n");
        for i in 0..=MAX_ROWS {
            file.push_str(&format!("c{i},F-{i},1\n"));
        }
        let p = parse(file.as_bytes(), fr(), &[]).unwrap_err();
        assert!(p.last().unwrap().message.contains("more than"), "{p:?}");
    }
}
