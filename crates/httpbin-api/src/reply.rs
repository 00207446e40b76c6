//! What a route answers, and the answers several routes share: Flask's
//! defaults, werkzeug's error and redirect pages (as werkzeug 0.14, which
//! httpbin 0.9.2 ran on, wrote them), and httpbin's `status_code`.

use crate::json::{self, Json};

/// Flask's content type for a body a view returned as a string.
pub const HTML: &str = "text/html; charset=utf-8";

/// A response: status, headers in order, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }

    /// Flask's `jsonify`: pretty JSON, `application/json`.
    pub fn json(value: &Json) -> Reply {
        Reply::new(200, "application/json", json::pretty(value))
    }

    /// A response without a content type (httpbin replaces the headers of
    /// some status responses whole).
    pub fn bare(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// werkzeug's page for an HTTP error.
pub fn error(status: u16) -> Reply {
    let (title, text) = match status {
        400 => ("Bad Request", "The browser (or proxy) sent a request that this server could not understand."),
        404 => (
            "Not Found",
            "The requested URL was not found on the server.  If you entered the URL manually please check your spelling and try again.",
        ),
        405 => ("Method Not Allowed", "The method is not allowed for the requested URL."),
        _ => (
            "Internal Server Error",
            "The server encountered an internal error and was unable to complete your request.  Either the server is overloaded or there is an error in the application.",
        ),
    };
    let status = if matches!(status, 400 | 404 | 405) { status } else { 500 };
    let body = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<title>{status} {title}</title>\n<h1>{title}</h1>\n<p>{text}</p>\n"
    );
    Reply::new(status, HTML, body)
}

/// Flask's `redirect(location)`: a 302 with werkzeug's little page.
pub fn redirect(location: &str) -> Reply {
    let escaped = html_escape(location);
    let body = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n<p>You should be redirected automatically to target URL: <a href=\"{escaped}\">{escaped}</a>.  If not click the link."
    );
    Reply::new(302, HTML, body).header("Location", location)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const REDIRECT_LOCATION: &str = "/redirect/1";

/// The media types `/status/406` says it accepts.
const ACCEPTED_MEDIA_TYPES: [&str; 5] = ["image/webp", "image/svg+xml", "image/jpeg", "image/png", "image/*"];

/// httpbin's `status_code(code)`: an empty `text/html` response, except
/// for the codes it gives a meaning to, whose headers replace the defaults
/// (so they carry no content type unless they name one).
pub fn status(code: u16) -> Reply {
    match code {
        301 | 302 | 303 | 305 | 307 => Reply::bare(code, &[("location", REDIRECT_LOCATION)], ""),
        401 => Reply::bare(code, &[("WWW-Authenticate", "Basic realm=\"Fake Realm\"")], ""),
        402 => Reply::bare(code, &[("x-more-info", "http://vimeo.com/22053820")], "Fuck you, pay me!"),
        406 => {
            let body = Json::object([
                ("message", Json::str("Client did not request a supported media type.")),
                ("accept", Json::List(ACCEPTED_MEDIA_TYPES.iter().map(|t| Json::str(*t)).collect())),
            ]);
            Reply::bare(code, &[("Content-Type", "application/json")], &json::compact(&body))
        }
        407 => Reply::bare(code, &[("Proxy-Authenticate", "Basic realm=\"Fake Realm\"")], ""),
        418 => Reply::bare(code, &[("x-more-info", "http://tools.ietf.org/html/rfc2324")], crate::documents::TEAPOT),
        // werkzeug drops the entity headers of a 304.
        304 => Reply::bare(code, &[], ""),
        _ => Reply::new(code, HTML, ""),
    }
}

/// `/status/{codes}`: one code, or a weighted choice (`200:0.5,500:0.5`,
/// weight 1 when left out). `uniform` is a draw in [0, 1). A code that is
/// not an integer, or one HTTP cannot carry as a final status (outside
/// 200..=999, where Python would send it anyway), is a 400.
pub fn status_codes(codes: &str, uniform: f64) -> Reply {
    let invalid = || Reply::new(400, HTML, "Invalid status code");
    let parse_code = |text: &str| text.trim().parse::<i64>().ok();
    let code = if !codes.contains(',') {
        parse_code(codes)
    } else {
        let mut choices = Vec::new();
        for choice in codes.split(',') {
            let (code, weight) = choice.split_once(':').unwrap_or((choice, "1"));
            match (parse_code(code), weight.trim().parse::<f64>()) {
                (Some(code), Ok(weight)) => choices.push((code, weight)),
                _ => return invalid(),
            }
        }
        Some(weighted_choice(&choices, uniform))
    };
    match code.and_then(|c| u16::try_from(c).ok()).filter(|c| (200..=999).contains(c)) {
        Some(code) => status(code),
        None => invalid(),
    }
}

/// httpbin's `weighted_choice`: `bisect` of `uniform(0, total)` into the
/// cumulative weights.
fn weighted_choice(choices: &[(i64, f64)], uniform: f64) -> i64 {
    let total: f64 = choices.iter().map(|(_, w)| w).sum();
    let x = uniform * total;
    let mut cumulative = 0.0;
    for &(code, weight) in choices {
        cumulative += weight;
        if x < cumulative {
            return code;
        }
    }
    choices.last().map_or(0, |(code, _)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_codes_follow_their_weights() {
        assert_eq!(status_codes("200:0.5,500:0.5", 0.2).status, 200);
        assert_eq!(status_codes("200:0.5,500:0.5", 0.7).status, 500);
        assert_eq!(status_codes("201,202", 0.99).status, 202);
        assert_eq!(status_codes("abc", 0.5), Reply::new(400, HTML, "Invalid status code"));
        assert_eq!(status_codes("200:x", 0.5).status, 400);
        assert_eq!(status_codes("99", 0.5).status, 400);
    }

    #[test]
    fn special_codes_replace_the_default_headers() {
        assert_eq!(status(302).headers, vec![("location".to_string(), "/redirect/1".to_string())]);
        assert_eq!(
            String::from_utf8(status(406).body).unwrap(),
            r#"{"message": "Client did not request a supported media type.", "accept": ["image/webp", "image/svg+xml", "image/jpeg", "image/png", "image/*"]}"#
        );
        assert_eq!(status(204), Reply::new(204, HTML, ""));
    }
}
