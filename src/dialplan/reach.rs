//! Where an executive can be reached, parsed once when the plan loads, and which
//! destinations a secretary's REFER may send a caller to (the company's executives and
//! the URIs its plan names: never an open relay).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::{Company, ExecutiveId, Step, TransferTarget};

/// One entry of an executive's `reach` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReachEntry {
    /// The phones an account registers (`user:NAME`).
    Account(String),
    /// A number, called through the trunk (`tel:+33…`, or a number the plan wrote).
    Number(String),
    /// A SIP URI: sent to its host when that is an IP address, else through the trunk.
    Uri(String),
}

impl ReachEntry {
    /// Reads `user:NAME`, `tel:NUMBER`, `sip:`/`sips:` URIs; `None` for anything else.
    pub fn parse(text: &str) -> Option<ReachEntry> {
        if let Some(user) = text.strip_prefix("user:") {
            return (!user.is_empty()).then(|| ReachEntry::Account(user.to_string()));
        }
        if let Some(number) = text.strip_prefix("tel:") {
            return (!number.is_empty()).then(|| ReachEntry::Number(number.to_string()));
        }
        (text.starts_with("sip:") || text.starts_with("sips:"))
            .then(|| ReachEntry::Uri(text.to_string()))
    }

    /// For a URI entry whose host is an IP address: where to send the INVITE.
    pub fn direct_address(&self) -> Option<SocketAddr> {
        match self {
            ReachEntry::Uri(uri) => direct_address(uri),
            _ => None,
        }
    }
}

impl fmt::Display for ReachEntry {
    /// As the operator writes it (`user:marie`, `tel:+336…`, `sip:…`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReachEntry::Account(user) => write!(f, "user:{user}"),
            ReachEntry::Number(number) => write!(f, "tel:{number}"),
            ReachEntry::Uri(uri) => f.write_str(uri),
        }
    }
}

/// The address of a `sip:user@IP[:port]` URI, when its host is an IP address (sent there
/// directly; any other host goes through the trunk).
pub fn direct_address(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let hostport = rest.rsplit('@').next()?.split(';').next()?;
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip: IpAddr = hostport
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, 5060))
}

/// Where a secretary may send this call with a REFER to `uri`: one of the company's
/// executives (by id, or any of their reach entries, or their number) or a destination
/// the plan's transfer steps name. Anything else is refused.
pub fn allowed_refer(company: &Company, uri: &str) -> Option<TransferTarget> {
    let bare = uri.split(';').next().unwrap_or(uri);
    let user = bare
        .split_once(':')
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split('@').next())
        .unwrap_or_default();
    for (id, exec) in &company.executives {
        let reached = |r: &ReachEntry| match r {
            ReachEntry::Number(n) => !user.is_empty() && n == user,
            ReachEntry::Uri(u) => u == bare,
            ReachEntry::Account(_) => r.to_string() == bare,
        };
        if user == id.0 || exec.reach.iter().any(reached) {
            return Some(TransferTarget::Executive(id.clone()));
        }
    }
    let named_in_plan = company
        .routes
        .iter()
        .flat_map(|r| r.steps.iter())
        .chain(company.steplists.values().flatten())
        .any(|s| matches!(s, Step::Transfer { to: TransferTarget::Uri(u), .. } if u == bare));
    named_in_plan.then(|| TransferTarget::Uri(bare.to_string()))
}

/// Whether a transfer to this executive that a secretary asks for from the console is
/// screened: when one of the plan's `transfer` steps to them screens, the company wants
/// its executive asked before a caller is put through, whoever sends the caller.
pub fn screens_transfers_to(company: &Company, executive: &ExecutiveId) -> bool {
    company
        .routes
        .iter()
        .flat_map(|r| r.steps.iter())
        .chain(company.steplists.values().flatten())
        .any(|s| {
            matches!(s, Step::Transfer { to: TransferTarget::Executive(id), screening: true, .. }
                if id == executive)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::parse_str;

    #[test]
    fn entries_read_as_written_and_print_back() {
        for text in ["user:marie", "tel:+33611111111", "sip:marie@192.0.2.1:5070"] {
            let entry = ReachEntry::parse(text).unwrap();
            assert_eq!(entry.to_string(), text);
        }
        assert_eq!(ReachEntry::parse("user:"), None);
        assert_eq!(ReachEntry::parse("http://x"), None);
    }

    #[test]
    fn only_ip_hosts_are_called_directly() {
        assert_eq!(
            direct_address("sip:marie@127.0.0.1:5070"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            direct_address("sip:marie@192.0.2.1;transport=udp"),
            Some("192.0.2.1:5060".parse().unwrap())
        );
        assert_eq!(direct_address("sip:+33611111111@trunk.example.com"), None);
        assert_eq!(direct_address("tel:+33611111111"), None);
    }

    #[test]
    fn a_refer_goes_only_to_an_executive_or_a_destination_the_plan_names() {
        let company = parse_str(
            r#"
[company]
id = "acme"
name = "ACME"
numbers = ["+33180000001"]
[executives.marie]
name = "Marie"
reach = ["sip:marie@192.0.2.1", "+33611111111"]
[[route]]
name = "r"
steps = [{ transfer = { to = "sip:desk@192.0.2.9" } }]
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let marie = Some(TransferTarget::Executive(ExecutiveId("marie".into())));
        assert_eq!(allowed_refer(&company, "sip:marie@anywhere.example"), marie);
        assert_eq!(
            allowed_refer(&company, "sip:marie@192.0.2.1;transport=udp"),
            marie
        );
        assert_eq!(
            allowed_refer(&company, "sip:+33611111111@trunk.example"),
            marie
        );
        assert_eq!(
            allowed_refer(&company, "sip:desk@192.0.2.9"),
            Some(TransferTarget::Uri("sip:desk@192.0.2.9".into()))
        );
        assert_eq!(
            allowed_refer(&company, "sip:+33999999999@evil.example"),
            None
        );
        assert_eq!(allowed_refer(&company, "sip:@192.0.2.66"), None);
    }

    #[test]
    fn a_console_transfer_is_screened_only_when_the_plans_transfer_to_them_is() {
        let company = parse_str(
            r#"
[company]
id = "acme"
name = "ACME"
numbers = ["+33180000001"]
[executives.marie]
name = "Marie"
reach = ["user:marie"]
[executives.paul]
name = "Paul"
reach = ["user:paul"]
[steplists]
urgent = [{ transfer = { to = "marie", screening = true } }]
[[route]]
name = "r"
steps = [{ transfer = { to = "paul" } }]
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(screens_transfers_to(&company, &ExecutiveId("marie".into())));
        assert!(!screens_transfers_to(&company, &ExecutiveId("paul".into())));
        assert!(!screens_transfers_to(
            &company,
            &ExecutiveId("nobody".into())
        ));
    }
}
