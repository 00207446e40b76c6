//! JSON as httpbin 0.9.2 writes it: Python's `json.dumps`, which escapes
//! every character outside printable ASCII as `\uXXXX` (`ensure_ascii`),
//! writes floats as Python's `repr`, and keeps objects in insertion order
//! unless asked to sort.
//!
//! Two layouts: [`pretty`] is Flask 1.0's `jsonify` (indent 2, keys sorted,
//! separators `", "` and `": "`, so a line ending in a comma ends in a
//! space, and one trailing newline); [`compact`] is plain `json.dumps`
//! (separators `", "` and `": "` on one line, insertion order), which
//! `/stream` writes.

use std::fmt::Write;

/// A JSON value whose objects keep the order their keys were added in.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number, already in Python's spelling (see [`Json::float`]).
    Number(String),
    String(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn str(text: impl Into<String>) -> Json {
        Json::String(text.into())
    }

    pub fn int(value: i64) -> Json {
        Json::Number(value.to_string())
    }

    /// A float as Python's `repr` spells it: the shortest digits that read
    /// back the same, positional from 1e-4 up to 1e16 (always with a
    /// fraction: `1.0`), scientific beyond (`1e+16`, `1.5e-05`), and
    /// `Infinity`/`NaN` as `json.dumps` writes them.
    pub fn float(value: f64) -> Json {
        Json::Number(python_float(value))
    }

    /// An object from `(key, value)` pairs, in that order.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A value parsed by `serde_json`, as Python's `json.loads` would give
    /// it back: integers stay integers (within 64 bits), other numbers are
    /// floats. serde_json's objects come sorted by key, which [`pretty`]
    /// sorts anyway.
    pub fn from_serde(value: serde_json::Value) -> Json {
        match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Json::Number(i.to_string()),
                (_, Some(u)) => Json::Number(u.to_string()),
                _ => Json::float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Json::String(s),
            serde_json::Value::Array(items) => Json::List(items.into_iter().map(Json::from_serde).collect()),
            serde_json::Value::Object(map) => Json::Object(map.into_iter().map(|(k, v)| (k, Json::from_serde(v))).collect()),
        }
    }
}

/// Flask 1.0's pretty `jsonify` body: indent 2, sorted keys, `", "` at the
/// end of lines, one trailing newline.
pub fn pretty(value: &Json) -> String {
    // Room for a small document (`/uuid`, `/ip`) without growing.
    let mut out = String::with_capacity(256);
    write_pretty(&mut out, value, 0);
    out.push('\n');
    out
}

/// `json.dumps(value)`: one line, insertion order.
pub fn compact(value: &Json) -> String {
    let mut out = String::new();
    write_compact(&mut out, value);
    out
}

fn write_pretty(out: &mut String, value: &Json, depth: usize) {
    let indent = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    match value {
        Json::List(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                indent(out, depth + 1);
                write_pretty(out, item, depth + 1);
            }
            indent(out, depth);
            out.push(']');
        }
        Json::Object(pairs) if !pairs.is_empty() => {
            let mut sorted: Vec<&(String, Json)> = pairs.iter().collect();
            // Python sorts by code point, which is UTF-8 byte order.
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                indent(out, depth + 1);
                write_string(out, key);
                out.push_str(": ");
                write_pretty(out, item, depth + 1);
            }
            indent(out, depth);
            out.push('}');
        }
        other => write_compact(out, other),
    }
}

fn write_compact(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => write_string(out, s),
        Json::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_compact(out, item);
            }
            out.push(']');
        }
        Json::Object(pairs) => {
            out.push('{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_compact(out, item);
            }
            out.push('}');
        }
    }
}

/// A string with `ensure_ascii`: printable ASCII as is, the usual short
/// escapes, everything else `\uXXXX` in lower-case hex (UTF-16 surrogate
/// pairs above U+FFFF). Runs of printable ASCII (most of any string) are
/// found a word at a time (`crates/json-runs`) and copied whole.
fn write_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut rest = text;
    while !rest.is_empty() {
        let plain = json_runs::printable_ascii(rest.as_bytes());
        out.push_str(&rest[..plain]);
        rest = &rest[plain..];
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            write_escaped(out, c);
            rest = chars.as_str();
        }
    }
    out.push('"');
}

/// One character that printable ASCII does not cover, escaped.
fn write_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        _ => {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
}

fn python_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde-x".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} always has an exponent");
    let exponent: i32 = exponent.parse().expect("a decimal exponent");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{text}")
    } else {
        let fraction = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{}{fraction}e{exp_sign}{:02}", &digits[..1], exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_output_is_flask_1_jsonify() {
        let value = Json::object([
            ("uuid", Json::str("x")),
            ("args", Json::object([("b", Json::List(vec![Json::str("1"), Json::str("2")])), ("a", Json::object::<String>([]))])),
            ("empty", Json::List(vec![])),
        ]);
        assert_eq!(
            pretty(&value),
            "{\n  \"args\": {\n    \"a\": {}, \n    \"b\": [\n      \"1\", \n      \"2\"\n    ]\n  }, \n  \"empty\": [], \n  \"uuid\": \"x\"\n}\n"
        );
        assert_eq!(pretty(&Json::object([("uuid", Json::str("u"))])), "{\n  \"uuid\": \"u\"\n}\n");
    }

    #[test]
    fn strings_are_escaped_as_ensure_ascii_does() {
        let text = "a\"\\/\n\t\u{1}\u{7f}é€😀";
        assert_eq!(compact(&Json::str(text)), r#""a\"\\/\n\t\u0001\u007f\u00e9\u20ac\ud83d\ude00""#);
    }

    /// Escaping one character at a time, as `write_string` did before it
    /// copied runs: the reference it must agree with.
    fn escaped_by_char(text: &str) -> String {
        let mut out = String::from('"');
        for c in text.chars() {
            match c {
                ' '..='~' if c != '"' && c != '\\' => out.push(c),
                _ => super::write_escaped(&mut out, c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn runs_of_plain_text_are_escaped_as_one_character_at_a_time() {
        let pieces = ["", "plain", "\"", "\\", "\n", "\u{1}", "\u{7f}", "é", "€", "😀", " ~", "a\"b\\c"];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}{b}{c}");
                    assert_eq!(compact(&Json::str(text.as_str())), escaped_by_char(&text), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn compact_keeps_insertion_order() {
        let value = Json::object([("z", Json::int(1)), ("a", Json::Null), ("m", Json::Bool(true))]);
        assert_eq!(compact(&value), r#"{"z": 1, "a": null, "m": true}"#);
    }

    #[test]
    fn floats_are_spelled_as_python_repr() {
        for (value, python) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1500.0, "1500.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (-2.5, "-2.5"),
            (1e100, "1e+100"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(python_float(value), python, "{value}");
        }
    }
}
