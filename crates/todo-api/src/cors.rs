//! CORS as the original service configured it (rocket_cors): every origin
//! allowed and echoed back with credentials, methods GET and POST, request
//! headers Accept and Content-Type. A request without `Origin` gets no CORS
//! headers.

use crate::Reply;

const METHODS: [&str; 2] = ["GET", "POST"];
const HEADERS: [&str; 2] = ["accept", "content-type"];

/// The CORS headers of a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Asked<'a> {
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Method` (preflight).
    pub method: Option<&'a str>,
    /// `Access-Control-Request-Headers` (preflight).
    pub headers: Option<&'a str>,
}

/// The headers every answer to `origin` carries.
pub fn headers(origin: Option<&str>) -> Vec<(&'static str, String)> {
    match origin {
        Some(origin) => vec![
            ("access-control-allow-origin", origin.to_string()),
            ("access-control-allow-credentials", "true".into()),
            ("vary", "Origin".into()),
        ],
        None => Vec::new(),
    }
}

/// Answers a preflight `OPTIONS`: 200 with what is allowed, or 403 naming
/// what is not.
pub fn preflight(asked: &Asked<'_>) -> Reply {
    let refuse = |message: String| Reply {
        status: 403,
        headers: vec![("content-type", "text/plain; charset=utf-8".into())],
        body: message.into(),
    };
    if let Some(method) = asked.method
        && !METHODS.contains(&method)
    {
        return refuse(format!("CORS: method {method} is not allowed (GET, POST)."));
    }
    let requested = asked.headers.unwrap_or("").split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty());
    for header in requested {
        if !HEADERS.contains(&header.as_str()) {
            return refuse(format!("CORS: header {header} is not allowed (Accept, Content-Type)."));
        }
    }
    let mut headers = vec![("allow", "GET, POST, OPTIONS".to_string())];
    if asked.origin.is_some() {
        headers.push(("access-control-allow-methods", METHODS.join(", ")));
        headers.push(("access-control-allow-headers", "Accept, Content-Type".into()));
    }
    Reply { status: 200, headers, body: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflights_allow_get_and_post_with_accept_and_content_type() {
        let asked = Asked { origin: Some("http://app"), method: Some("POST"), headers: Some("Content-Type, accept") };
        let reply = preflight(&asked);
        assert_eq!(reply.status, 200);
        assert!(reply.headers.contains(&("access-control-allow-methods", "GET, POST".into())));
        assert!(reply.headers.contains(&("access-control-allow-headers", "Accept, Content-Type".into())));
        assert_eq!(preflight(&Asked { method: Some("DELETE"), ..asked }).status, 403);
        assert_eq!(preflight(&Asked { headers: Some("X-Token"), ..asked }).status, 403);
        assert_eq!(headers(Some("http://app"))[0], ("access-control-allow-origin", "http://app".into()));
        assert!(headers(None).is_empty());
    }
}
