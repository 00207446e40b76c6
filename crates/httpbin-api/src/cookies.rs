//! Cookies as httpbin 0.9.2 reads and sets them (werkzeug 0.14's rules).

/// Cookies httpbin hides unless the query has `show_env` (its hosting's
/// analytics).
const ENV_COOKIES: &[&str] = &[
    "_gauges_unique",
    "_gauges_unique_year",
    "_gauges_unique_month",
    "_gauges_unique_day",
    "_gauges_unique_hour",
    "__utmz",
    "__utma",
    "__utmb",
];

/// The `Cookie` header's pairs, first value of each name, a quoted value
/// unquoted.
pub fn parse(header: Option<&str>, show_env: bool) -> Vec<(String, String)> {
    let mut cookies: Vec<(String, String)> = Vec::new();
    for pair in header.unwrap_or("").split(';') {
        let Some((name, value)) = pair.split_once('=') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || cookies.iter().any(|(n, _)| n == name) || (!show_env && ENV_COOKIES.contains(&name)) {
            continue;
        }
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).map_or(value.to_string(), unescape);
        cookies.push((name.to_string(), value));
    }
    cookies
}

fn unescape(quoted: &str) -> String {
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// `Set-Cookie` for `set_cookie(name, value)`: `name=value; Path=/`, the
/// value quoted when it holds anything but cookie-safe characters.
pub fn set(name: &str, value: &str, secure: bool) -> String {
    format!("{name}={}{}; Path=/", quote(value), if secure { "; Secure" } else { "" })
}

/// `Set-Cookie` for `delete_cookie(name)`.
pub fn delete(name: &str) -> String {
    format!("{name}=; Expires=Thu, 01-Jan-1970 00:00:00 GMT; Max-Age=0; Path=/")
}

/// werkzeug 0.14's `_cookie_quote`: as is when every byte is legal, else
/// in double quotes with `"` and `\` escaped, `,` and `;` and bytes outside
/// printable ASCII as octal escapes.
fn quote(value: &str) -> String {
    let legal = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:".contains(&b);
    if value.bytes().all(legal) {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for b in value.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b',' | b';' => out.push_str(&format!("\\{b:03o}")),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_first_value_wins_and_env_ones_hide() {
        let header = Some("a=1; b=\"x y\"; a=2; __utma=z; bad");
        assert_eq!(parse(header, false), vec![("a".into(), "1".into()), ("b".into(), "x y".into())]);
        assert_eq!(parse(header, true).len(), 3);
    }

    #[test]
    fn set_cookie_quotes_only_what_needs_it() {
        assert_eq!(set("a", "1", false), "a=1; Path=/");
        assert_eq!(set("b", "x y", false), "b=\"x y\"; Path=/");
        assert_eq!(set("c", "a;b", true), "c=\"a\\073b\"; Secure; Path=/");
        assert_eq!(delete("a"), "a=; Expires=Thu, 01-Jan-1970 00:00:00 GMT; Max-Age=0; Path=/");
    }
}
