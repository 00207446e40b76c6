//! Request bodies as werkzeug reads them for httpbin's `form`, `files` and
//! `data`: URL-encoded forms, `multipart/form-data`, and the raw body.

use crate::url::parse_qsl;

/// A parsed body: fields and files in the order they came.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// Form fields (name, value).
    pub fields: Vec<(String, String)>,
    /// Uploaded files (field name, content type as sent, content).
    pub files: Vec<(String, Option<String>, Vec<u8>)>,
    /// What Flask's `request.data` holds: empty for form bodies (their
    /// parsing consumed it), the body otherwise.
    pub data: Vec<u8>,
}

/// Reads `body` by its content type. A multipart body without a boundary,
/// or one that does not parse, gives no fields (as werkzeug does).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Parsed {
    let media = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/x-www-form-urlencoded") => {
            Parsed { fields: parse_qsl(&String::from_utf8_lossy(body)), ..Parsed::default() }
        }
        Some("multipart/form-data") => {
            let boundary = content_type.and_then(|ct| parameter(ct, "boundary"));
            boundary.map(|b| multipart(body, b.as_bytes())).unwrap_or_default()
        }
        _ => Parsed { data: body.to_vec(), ..Parsed::default() },
    }
}

/// A `name=value` or `name="value"` parameter of a header value.
fn parameter(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| {
            let value = value.trim();
            value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).replace("\\\"", "\"")
        })
    })
}

/// `multipart/form-data` (RFC 7578): parts between `--boundary` lines,
/// each with headers, a blank line and its content. A part with a
/// `filename` is a file, any other a field (its content read as UTF-8).
fn multipart(body: &[u8], boundary: &[u8]) -> Parsed {
    let delimiter = [b"--".as_slice(), boundary].concat();
    let mut parsed = Parsed::default();
    let Some(start) = find(body, &delimiter) else { return parsed };
    let mut rest = &body[start + delimiter.len()..];
    let next_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
    loop {
        // After a delimiter: "--" ends the body, a line break starts a part.
        if rest.starts_with(b"--") {
            break;
        }
        let Some(line_end) = find(rest, b"\r\n") else { break };
        rest = &rest[line_end + 2..];
        let Some(end) = find(rest, &next_delimiter) else { break };
        let part = &rest[..end];
        rest = &rest[end + next_delimiter.len()..];
        let Some(head_end) = find(part, b"\r\n\r\n") else { continue };
        let (head, content) = (&part[..head_end], &part[head_end + 4..]);
        let head = String::from_utf8_lossy(head);
        let header = |name: &str| {
            head.split("\r\n").find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
            })
        };
        let Some(disposition) = header("content-disposition") else { continue };
        let Some(name) = parameter(&disposition, "name") else { continue };
        if parameter(&disposition, "filename").is_some() {
            parsed.files.push((name, header("content-type"), content.to_vec()));
        } else {
            parsed.fields.push((name, String::from_utf8_lossy(content).into_owned()));
        }
    }
    parsed
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_forms_are_fields_and_leave_no_data() {
        let parsed = parse(Some("application/x-www-form-urlencoded"), b"a=1&a=2&b=x+y");
        assert_eq!(parsed.fields.len(), 3);
        assert_eq!(parsed.fields[2], ("b".to_string(), "x y".to_string()));
        assert!(parsed.data.is_empty());
        assert_eq!(parse(Some("text/plain"), b"raw").data, b"raw");
        assert_eq!(parse(None, b"raw").data, b"raw");
    }

    #[test]
    fn multipart_bodies_split_into_fields_and_files() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XX\r\n\
Content-Disposition: form-data; name=\"f\"; filename=\"f.bin\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\r\n--XX--\r\n";
        let parsed = parse(Some("multipart/form-data; boundary=\"XX\""), body);
        assert_eq!(parsed.fields, vec![("a".to_string(), "hello".to_string())]);
        assert_eq!(parsed.files, vec![("f".to_string(), Some("image/png".to_string()), b"\x89PNG\r\n".to_vec())]);
        assert!(parsed.data.is_empty());
        assert_eq!(parse(Some("multipart/form-data"), body), Parsed::default());
    }
}
