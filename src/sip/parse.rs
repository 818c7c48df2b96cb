//! From bytes to a validated [`SipMessage`], or a [`Rejection`] saying whether and how
//! to answer. Strict where RFC 3261 / RFC 4475 say a message is broken, tolerant of
//! what they call valid however odd (folded lines, compact names, LWS around `/`).
//!
//! Pure. `rsipstack` parses host/port parts (IPv6 brackets and the like); the rest of the
//! grammar checks are ours because its parser is lenient where a server must not be
//! (negative Content-Length, unbalanced quotes, spaces inside a Request-URI).

use std::borrow::Cow;

use rsipstack::sip::HostWithPort;

use super::CallId;
use super::message::{CSeq, Echo, Method, NameAddr, Request, Response, SipMessage};

/// Why a message was refused, and the answer if one can be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What is wrong, for logs and the reason phrase.
    pub why: Cow<'static, str>,
    /// The status to answer with, or `None` to drop (responses, or nothing to answer to).
    pub answer: Option<(u16, Box<Echo>)>,
}

impl Rejection {
    fn drop(why: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            why: why.into(),
            answer: None,
        }
    }
}

/// Where the header section ends: the index after the blank line.
fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// For stream transports: the length of the first complete message in `buf`, `Ok(None)`
/// when more bytes are needed. A message must fit in `max` bytes and declare its
/// Content-Length (RFC 3261 §18.3).
pub fn stream_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, Rejection> {
    let Some(end) = head_end(buf) else {
        return if buf.len() > max {
            Err(Rejection::drop("header section over the size limit"))
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && canonical_name(name.trim()) == "content-length"
        {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| Rejection::drop("unreadable Content-Length on a stream"))?,
            );
        }
    }
    let length =
        length.ok_or_else(|| Rejection::drop("no Content-Length on a stream transport"))?;
    let total = end.saturating_add(length);
    if total > max {
        return Err(Rejection::drop("message over the size limit"));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Full header names for the compact forms of RFC 3261 §7.3.3 and later RFCs, lower case.
fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let full = match lower.as_str() {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "u" => "allow-events",
        _ => return lower,
    };
    full.to_string()
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Parses one datagram, or one message already framed by [`stream_frame_len`].
/// Bytes after Content-Length in a datagram are ignored (RFC 4475 §3.1.1.8).
pub fn parse(data: &[u8]) -> Result<SipMessage, Rejection> {
    let end = head_end(data).ok_or_else(|| Rejection::drop("no blank line after the headers"))?;
    // RFC 3261 text is UTF-8, but an old PBX writes a Latin-1 `é` in a display name: such a
    // byte is taken as data (replaced), not a reason to leave the caller unanswered.
    let head = String::from_utf8_lossy(&data[..end - 4]);
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default();

    // Unfold continuation lines (RFC 3261 §7.3.1) and split name: value.
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut malformed_line = false;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                None => malformed_line = true,
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim_end();
            if !is_token(name) {
                malformed_line = true;
            }
            headers.push((canonical_name(name), value.trim().to_string()));
        } else {
            malformed_line = true;
        }
    }
    let all = |name: &'static str| all_values(&headers, name);
    let one = |name: &'static str| all_values(&headers, name).next();

    if start.starts_with("SIP/") {
        return parse_response(start, &headers, &data[end..])
            .map(|r| SipMessage::Response(Box::new(r)));
    }

    let echo = Echo {
        via: all("via").map(str::to_string).collect(),
        from: one("from").unwrap_or_default().to_string(),
        to: one("to").unwrap_or_default().to_string(),
        call_id: one("call-id").unwrap_or_default().to_string(),
        cseq: one("cseq").unwrap_or_default().to_string(),
        record_route: all("record-route").map(str::to_string).collect(),
    };
    let bad = |status: u16, why: &'static str| Rejection {
        why: why.into(),
        // Without a Via there is nothing a client could match an answer to.
        answer: (!echo.via.is_empty()).then(|| (status, Box::new(echo.clone()))),
    };

    // Request-Line = Method SP Request-URI SP SIP-Version CRLF, single spaces (RFC 3261 §7.1).
    let parts: Vec<&str> = start.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad(400, "malformed Request-Line"));
    }
    let (method_token, uri, version) = (parts[0], parts[1], parts[2]);
    if !is_token(method_token) {
        return Err(bad(400, "malformed method"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(if version.starts_with("SIP/") {
            bad(505, "Version Not Supported")
        } else {
            bad(400, "malformed SIP version")
        });
    }
    let method = Method::from_token(method_token);
    if malformed_line {
        return Err(bad(400, "malformed header line"));
    }

    // Content-Length: one value, digits only, no more than what arrived.
    let lengths: Vec<&str> = all("content-length").collect();
    let body_available = &data[end..];
    let body = match lengths.as_slice() {
        [] => body_available,
        [one] => {
            let n: usize = one
                .parse()
                .ok()
                .filter(|_| one.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad(400, "malformed Content-Length"))?;
            body_available
                .get(..n)
                .ok_or_else(|| bad(400, "Content-Length larger than the message"))?
        }
        _ => return Err(bad(400, "several Content-Length values")),
    };

    for single in [
        "from",
        "to",
        "call-id",
        "cseq",
        "max-forwards",
        "content-type",
        "content-length",
        "expires",
    ] {
        if all(single).nth(1).is_some() {
            return Err(bad(400, "a single-valued header appears twice"));
        }
    }
    if echo.via.is_empty() {
        return Err(bad(400, "missing Via"));
    }
    let (Some(from), Some(to), Some(call_id), Some(cseq)) =
        (one("from"), one("to"), one("call-id"), one("cseq"))
    else {
        return Err(bad(400, "missing From, To, Call-ID or CSeq"));
    };
    if !call_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad(400, "malformed Call-ID"));
    }
    let cseq = parse_cseq(cseq).ok_or_else(|| bad(400, "malformed CSeq"))?;
    if cseq.method != method {
        return Err(bad(400, "CSeq method does not match the Request-Line"));
    }
    let mut branch = None;
    for (i, via) in echo.via.iter().flat_map(|v| split_list(v)).enumerate() {
        let b = parse_via(via).ok_or_else(|| bad(400, "malformed Via"))?;
        if i == 0 {
            branch = b;
        }
    }
    if let Some(mf) = one("max-forwards")
        && !(mf.bytes().all(|b| b.is_ascii_digit()) && mf.parse::<u8>().is_ok())
    {
        return Err(bad(400, "malformed Max-Forwards"));
    }
    if let Some(expires) = one("expires")
        && expires.parse::<u32>().is_err()
    {
        return Err(bad(400, "malformed Expires"));
    }
    // HTTP-date, always GMT (RFC 3261 §20.17).
    if let Some(date) = one("date")
        && !date.ends_with(" GMT")
    {
        return Err(bad(400, "malformed Date"));
    }
    let from = parse_name_addr(from).ok_or_else(|| bad(400, "malformed From"))?;
    let to = parse_name_addr(to).ok_or_else(|| bad(400, "malformed To"))?;
    let mut contacts = Vec::new();
    let mut contact_star = false;
    for value in all("contact") {
        if value == "*" {
            contact_star = true;
            continue;
        }
        for item in split_list(value) {
            contacts.push(parse_name_addr(item).ok_or_else(|| bad(400, "malformed Contact"))?);
        }
    }
    let contact = contacts.first().map(|c| c.uri.clone());
    let uri_user = parse_request_uri(uri).map_err(|why| bad(400, why))?;

    Ok(SipMessage::Request(Box::new(Request {
        method,
        uri: uri.to_string(),
        uri_user,
        call_id: CallId(call_id.to_string()),
        from,
        to,
        cseq,
        branch,
        contact,
        contacts,
        contact_star,
        expires: one("expires").and_then(|e| e.parse().ok()),
        authorization: one("authorization").map(str::to_string),
        record_route: all("record-route")
            .flat_map(split_list)
            .map(str::to_string)
            .collect(),
        refer_to: one("refer-to").and_then(parse_name_addr).map(|n| n.uri),
        max_forwards: one("max-forwards").and_then(|m| m.parse().ok()),
        content_type: one("content-type").map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        }),
        accept: all("accept").reduce(|_, last| last).map(str::to_string),
        require: all("require")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        body: body.to_vec(),
        echo,
    })))
}

fn all_values<'h>(
    headers: &'h [(String, String)],
    name: &'static str,
) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn parse_response(
    start: &str,
    headers: &[(String, String)],
    rest: &[u8],
) -> Result<Response, Rejection> {
    let mut parts = start.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.eq_ignore_ascii_case("SIP/2.0") || code.len() != 3 {
        return Err(Rejection::drop("malformed Status-Line"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| Rejection::drop("malformed status code"))?;
    if !(100..=699).contains(&status) {
        return Err(Rejection::drop("status code out of range"));
    }
    let one = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let cseq = one("cseq")
        .and_then(parse_cseq)
        .ok_or_else(|| Rejection::drop("response without a valid CSeq"))?;
    let call_id = one("call-id").ok_or_else(|| Rejection::drop("response without Call-ID"))?;
    let branch = one("via")
        .and_then(|v| split_list(v).into_iter().next())
        .and_then(parse_via)
        .ok_or_else(|| Rejection::drop("response without a valid Via"))?;
    let to = one("to").ok_or_else(|| Rejection::drop("response without To"))?;
    let to_tag = parse_name_addr(to).and_then(|n| n.tag);
    let contact = one("contact")
        .and_then(|c| split_list(c).into_iter().next())
        .and_then(parse_name_addr)
        .map(|n| n.uri);
    let challenge = match status {
        401 => one("www-authenticate").map(|c| (false, c.to_string())),
        407 => one("proxy-authenticate").map(|c| (true, c.to_string())),
        _ => None,
    };
    let body = match one("content-length").map(str::parse::<usize>) {
        Some(Ok(n)) => rest
            .get(..n)
            .ok_or_else(|| Rejection::drop("Content-Length larger than the response"))?,
        Some(Err(_)) => return Err(Rejection::drop("malformed Content-Length")),
        None => rest,
    };
    Ok(Response {
        status,
        call_id: CallId(call_id.to_string()),
        cseq,
        branch,
        to: to.to_string(),
        to_tag,
        contact,
        record_route: all_values(headers, "record-route")
            .flat_map(split_list)
            .map(str::to_string)
            .collect(),
        challenge,
        body: body.to_vec(),
    })
}

fn parse_cseq(value: &str) -> Option<CSeq> {
    let mut it = value.split_whitespace();
    let (num, method, rest) = (it.next()?, it.next()?, it.next());
    if rest.is_some() || !num.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
        return None;
    }
    let seq: u32 = num.parse().ok().filter(|n| *n < 1 << 31)?;
    Some(CSeq {
        seq,
        method: Method::from_token(method),
    })
}

/// Splits a header value on commas that are outside quotes and angle brackets.
fn split_list(value: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut angle, mut escaped) =
        (Vec::new(), 0, false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
}

/// One Via value: `SIP / 2.0 / transport sent-by *(; param)`, LWS allowed around `/`.
/// Returns the branch parameter.
fn parse_via(value: &str) -> Option<Option<String>> {
    let mut slashes = value.splitn(3, '/');
    let (proto, version, rest) = (
        slashes.next()?.trim(),
        slashes.next()?.trim(),
        slashes.next()?.trim_start(),
    );
    if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return None;
    }
    let (transport, rest) = rest.split_once([' ', '\t'])?;
    if !is_token(transport) {
        return None;
    }
    let mut params = rest.trim().split(';');
    let sent_by = params.next()?.trim();
    HostWithPort::try_from(sent_by).ok()?;
    if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
        return None;
    }
    let mut branch = None;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param.trim(), None),
        };
        if !is_token(name)
            || value.is_some_and(|v| {
                v.is_empty() || !v.chars().all(|c| is_token_char(c) || ":[]".contains(c))
            })
        {
            return None;
        }
        if name.eq_ignore_ascii_case("branch") {
            branch = value.map(str::to_string);
        }
    }
    Some(branch)
}

/// `name-addr / addr-spec` followed by `;params` (RFC 3261 §20.10, §25.1).
pub fn parse_name_addr(value: &str) -> Option<NameAddr> {
    let value = value.trim();
    let (display, uri, params) = if let Some(lt) = find_unquoted(value, '<') {
        let display = value[..lt].trim();
        let display = if display.is_empty() {
            None
        } else if let Some(inner) = display.strip_prefix('"') {
            Some(unquote(inner)?)
        } else if display.split_whitespace().all(is_token) {
            Some(display.split_whitespace().collect::<Vec<_>>().join(" "))
        } else {
            return None;
        };
        let gt = value[lt..].find('>')? + lt;
        (display, &value[lt + 1..gt], &value[gt + 1..])
    } else {
        // addr-spec without brackets: its parameters are the header's (RFC 3261 §20.10),
        // and it may not contain `?`, `,` or `;`-separated URI parts.
        let (uri, params) = match value.find(';') {
            Some(i) => (value[..i].trim_end(), &value[i..]),
            None => (value, ""),
        };
        if uri.contains(['?', ',']) {
            return None;
        }
        (None, uri, params)
    };
    if uri.is_empty() || uri.contains(char::is_whitespace) {
        return None;
    }
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        || rest.is_empty()
    {
        return None;
    }
    let mut tag = None;
    let mut expires = None;
    let mut instance = None;
    let params = params.trim();
    if !params.is_empty() {
        for param in params.strip_prefix(';')?.split(';') {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (param.trim(), None),
            };
            if !is_token(name) || value.is_some_and(|v| v.is_empty()) {
                return None;
            }
            if let Some(v) = value
                && v.starts_with('"')
            {
                unquote(&v[1..])?;
            }
            if name.eq_ignore_ascii_case("tag") {
                tag = value.map(str::to_string);
            }
            if name.eq_ignore_ascii_case("expires") {
                // Delta-seconds must fit 32 bits (RFC 3261 §25.1, RFC 4475 §3.1.2.4).
                expires = Some(value?.parse::<u32>().ok()?);
            }
            if name.eq_ignore_ascii_case("+sip.instance") {
                instance = value.and_then(|v| match v.strip_prefix('"') {
                    Some(inner) => unquote(inner),
                    None => Some(v.to_string()),
                });
            }
        }
    }
    Some(NameAddr {
        display,
        uri: uri.to_string(),
        user: uri_user(scheme, rest),
        tag,
        expires,
        instance,
    })
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The content of a quoted string whose opening quote is already consumed; `None` when
/// it is unterminated or followed by anything but whitespace.
fn unquote(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            // quoted-pair excludes CR and LF (RFC 3261 §25.1): an escaped line break would
            // forge a line in whatever prints the name.
            '\\' => match chars.next()? {
                '\r' | '\n' => return None,
                escaped => out.push(escaped),
            },
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            // qdtext has no control characters but the tab.
            c if c.is_control() && c != '\t' => return None,
            c => out.push(c),
        }
    }
    None
}

/// The user part of a `sip:`/`sips:` URI, percent-decoded, or a `tel:` number.
fn uri_user(scheme: &str, rest: &str) -> Option<String> {
    if scheme.eq_ignore_ascii_case("tel") {
        return Some(rest.split(';').next().unwrap_or_default().to_string());
    }
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next().unwrap_or_default();
    Some(percent_decode(user))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a Request-URI and returns its user part. Unknown schemes pass here: the
/// endpoint answers them with 416 (RFC 3261 §8.2.2.1).
fn parse_request_uri(uri: &str) -> Result<Option<String>, &'static str> {
    if uri.starts_with('<') || uri.contains(char::is_whitespace) {
        return Err("malformed Request-URI");
    }
    let (scheme, rest) = uri.split_once(':').ok_or("Request-URI without a scheme")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err("malformed Request-URI scheme");
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let host_part = match rest.find('@') {
            Some(at) => &rest[at + 1..],
            None => rest,
        };
        // Headers are not allowed in a Request-URI (RFC 3261 §19.1.5).
        if host_part.contains('?') {
            return Err("headers in the Request-URI");
        }
        let host_port = host_part.split(';').next().unwrap_or_default();
        if host_port.is_empty()
            || HostWithPort::try_from(host_port).is_err()
            || !valid_host_port(host_port)
        {
            return Err("malformed host in the Request-URI");
        }
    }
    Ok(uri_user(scheme, rest))
}

/// Stricter than `rsipstack`'s host parser: a bracketed IPv6 reference must close and
/// hold a valid address, and a port must be a number below 65536.
fn valid_host_port(s: &str) -> bool {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+33180000001@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
        From: \"Jean \\\"Jo\\\"\" <sip:+33612345678@127.0.0.1>;tag=abc\r\n\
        To: <sip:+33180000001@127.0.0.1>\r\n\
        Call-ID: c1@host\r\n\
        CSeq: 1 INVITE\r\n\
        Max-Forwards: 70\r\n\
        Contact: <sip:caller@127.0.0.1:5070>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\r\nEXTRA";

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_a_plain_invite() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri_user.as_deref(), Some("+33180000001"));
        assert_eq!(r.from.display.as_deref(), Some("Jean \"Jo\""));
        assert_eq!(r.from.tag.as_deref(), Some("abc"));
        assert_eq!(r.to.tag, None);
        assert_eq!(r.branch.as_deref(), Some("z9hG4bK-1"));
        assert_eq!(r.body, b"v=0\r");
        assert_eq!(r.content_type.as_deref(), Some("application/sdp"));
        assert_eq!(
            r.cseq,
            CSeq {
                seq: 1,
                method: Method::Invite
            }
        );
    }

    #[test]
    fn answers_400_with_the_headers_to_echo() {
        let broken = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        let rejection = parse(broken.as_bytes()).unwrap_err();
        let (status, echo) = rejection.answer.unwrap();
        assert_eq!(status, 400);
        assert_eq!(echo.call_id, "c1@host");
        assert_eq!(echo.via.len(), 1);
        let broken = INVITE.replace("Content-Length: 4", "Content-Length: -4");
        assert_eq!(parse(broken.as_bytes()).unwrap_err().answer.unwrap().0, 400);
        let broken = INVITE.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        assert_eq!(parse(broken.as_bytes()).unwrap_err().answer.unwrap().0, 505);
    }

    #[test]
    fn a_display_name_cannot_carry_a_line_break_or_a_bare_control_character() {
        for from in [
            "From: \"Evil\\\nurgent\" <sip:+33612345678@127.0.0.1>;tag=abc",
            "From: \"Evil\\\rurgent\" <sip:+33612345678@127.0.0.1>;tag=abc",
            "From: \"Evil\u{1b}[2J\" <sip:+33612345678@127.0.0.1>;tag=abc",
        ] {
            let broken = INVITE.replace(
                "From: \"Jean \\\"Jo\\\"\" <sip:+33612345678@127.0.0.1>;tag=abc",
                from,
            );
            assert_ne!(broken, INVITE);
            let rejection = parse(broken.as_bytes()).unwrap_err();
            assert_eq!(rejection.answer.map(|a| a.0), Some(400), "{from:?}");
        }
        // Escaped, an ESC is legal SIP (quoted-pair): it is data, escaped where printed.
        let escaped = INVITE.replace("Jean \\\"Jo\\\"", "Jean \\\u{1b}");
        assert_eq!(
            request(&escaped).from.display.as_deref(),
            Some("Jean \u{1b}")
        );
    }

    #[test]
    fn a_latin1_byte_in_a_display_name_is_data_not_silence() {
        let mut bytes = INVITE.replace("Jean \\\"Jo\\\"", "Ren").into_bytes();
        let at = bytes.windows(3).position(|w| w == b"Ren").unwrap() + 3;
        bytes.insert(at, 0xe9); // Latin-1 é
        match parse(&bytes) {
            Ok(SipMessage::Request(r)) => {
                assert_eq!(r.from.display.as_deref(), Some("Ren\u{fffd}"));
                assert_eq!(r.call_id.0, "c1@host");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stream_framing_waits_for_the_body() {
        let bytes = INVITE.as_bytes();
        let head = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(stream_frame_len(&bytes[..head + 2], 65536), Ok(None));
        assert_eq!(stream_frame_len(bytes, 65536), Ok(Some(head + 4)));
        assert!(stream_frame_len(bytes, 100).is_err());
    }

    #[test]
    fn name_addr_grammar() {
        assert!(parse_name_addr("\"Mr. J. User <sip:j.user@example.com>").is_none());
        assert!(parse_name_addr("Bell, Alexander <sip:a@example.com>").is_none());
        assert!(parse_name_addr("<sip:a@example.com>;;tag=1").is_none());
        assert!(parse_name_addr("\"Watson\" < sip:t@example.org >").is_none());
        assert!(parse_name_addr("sip:user@example.com?Route=%3Csip:x%3E").is_none());
        let n = parse_name_addr("sip:%75se%72@example.com;tag=9").unwrap();
        assert_eq!(
            (n.user.as_deref(), n.tag.as_deref()),
            (Some("user"), Some("9"))
        );
        let n = parse_name_addr("tel:+33-1-80-00-00-01").unwrap();
        assert_eq!(n.user.as_deref(), Some("+33-1-80-00-00-01"));
    }
}
