//! What to send: one or more request templates, picked by weight.
//!
//! From the command line every URL gets the same method, headers and body and
//! the same weight. A scenario file (TOML, or JSON when its name ends in
//! `.json`) lists weighted requests:
//!
//! ```toml
//! [[request]]
//! url = "http://127.0.0.1:8080/"
//! weight = 1
//!
//! [[request]]
//! method = "POST"
//! url = "http://127.0.0.1:8080/api/todo"
//! headers = { "content-type" = "application/json" }
//! body = '{"title": "task {{random}}"}'
//! weight = 2
//! ```
//!
//! Placeholders in a body are filled afresh for every request: `{{random}}`
//! with a random number, `{{letters:N}}` with N random lowercase letters
//! (N from 1 to 4096; the todo locustfile posts 10).
//!
//! A crate of its own (the host's load client uses it as `load::plan`) so
//! that `fuzz/` can fuzz the scenario parser without building the host.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

const RANDOM: &str = "{{random}}";
const LETTERS: &str = "{{letters:";

/// One kind of request to send.
#[derive(Debug, Clone)]
pub struct Template {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the body holds placeholders (checked once here, not per request).
    randomised: bool,
    pub weight: u32,
}

impl Template {
    pub fn new(method: &str, url: &str, headers: &[(String, String)], body: Bytes, weight: u32) -> Result<Template, String> {
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("{method:?} is not an HTTP method"))?;
        let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!("{url:?}: only http:// URLs with a host are supported"));
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| format!("{value:?} is not a header value"))?;
            map.append(name, value);
        }
        if weight == 0 {
            return Err(format!("{url}: weight must be at least 1"));
        }
        let text = String::from_utf8_lossy(&body);
        let randomised = text.contains(RANDOM) || text.contains(LETTERS);
        check_letters(&text)?;
        Ok(Template { method, uri, headers: map, body, randomised, weight })
    }

    /// The body to send this time.
    pub fn body(&self) -> Bytes {
        if !self.randomised {
            return self.body.clone();
        }
        let text = String::from_utf8_lossy(&self.body);
        let mut out = String::with_capacity(text.len() + 16);
        let mut rest = text.as_ref();
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix(RANDOM) {
                out.push_str(&fastrand::u64(..).to_string());
                rest = after;
            } else if let Some((count, after)) = letters(rest) {
                out.extend((0..count).map(|_| fastrand::lowercase()));
                rest = after;
            } else {
                out.push_str("{{");
                rest = &rest[2..];
            }
        }
        out.push_str(rest);
        Bytes::from(out)
    }
}

/// `{{letters:N}}...` -> (N, the rest), for N in 1..=4096.
fn letters(text: &str) -> Option<(usize, &str)> {
    let (count, rest) = text.strip_prefix(LETTERS)?.split_once("}}")?;
    let count: usize = count.parse().ok().filter(|n| (1..=4096).contains(n))?;
    Some((count, rest))
}

/// Every `{{letters:` must be a valid `{{letters:N}}`.
fn check_letters(text: &str) -> Result<(), String> {
    for (i, _) in text.match_indices(LETTERS) {
        if letters(&text[i..]).is_none() {
            return Err(format!("{:?}: expected {{{{letters:N}}}} with N from 1 to 4096", &text[i..text.len().min(i + 20)]));
        }
    }
    Ok(())
}

/// Every template, and the cumulative weights that pick among them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub templates: Vec<Template>,
    cumulative: Vec<u32>,
}

impl Plan {
    pub fn new(templates: Vec<Template>) -> Result<Plan, String> {
        if templates.is_empty() {
            return Err("nothing to send: give one or more URLs or --scenario FILE".into());
        }
        let mut total = 0u32;
        let cumulative = templates
            .iter()
            .map(|t| {
                total = total.saturating_add(t.weight);
                total
            })
            .collect();
        Ok(Plan { templates, cumulative })
    }

    /// Picks a template with probability proportional to its weight.
    pub fn pick(&self) -> &Template {
        if self.templates.len() == 1 {
            return &self.templates[0];
        }
        let total = *self.cumulative.last().unwrap();
        let ticket = fastrand::u32(0..total);
        let index = self.cumulative.partition_point(|&c| c <= ticket);
        &self.templates[index]
    }

    /// Reads a scenario file: JSON when its name ends in `.json`, else TOML.
    pub fn from_file(path: &Path) -> Result<Plan, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let json = path.extension().is_some_and(|e| e == "json");
        Plan::parse(&text, json, &path.display().to_string())
    }

    /// Parses a scenario's text (JSON or TOML); errors start with `origin`.
    pub fn parse(text: &str, json: bool, origin: &str) -> Result<Plan, String> {
        let file: ScenarioFile = if json {
            serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?
        } else {
            toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?
        };
        let templates = file
            .request
            .into_iter()
            .map(|r| {
                let headers: Vec<(String, String)> = r.headers.into_iter().collect();
                Template::new(&r.method, &r.url, &headers, Bytes::from(r.body), r.weight).map_err(|e| format!("{origin}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Plan::new(templates)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    request: Vec<ScenarioRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioRequest {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_method() -> String {
    "GET".into()
}

fn default_weight() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("scalelab-plan-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_toml_scenario_parses_with_defaults() {
        let path = write(
            "mixed.toml",
            r#"
            [[request]]
            url = "http://127.0.0.1:8080/"
            [[request]]
            url = "http://127.0.0.1:8080/api/todos"
            [[request]]
            method = "post"
            url = "http://127.0.0.1:8080/api/todo"
            headers = { "content-type" = "application/json" }
            body = '{"title":"t{{random}}"}'
            weight = 2
            "#,
        );
        let plan = Plan::from_file(&path).unwrap();
        assert_eq!(plan.templates.len(), 3);
        assert_eq!(plan.templates[0].method, Method::GET);
        assert_eq!(plan.templates[2].method, Method::POST);
        assert_eq!(plan.templates[2].headers["content-type"], "application/json");
        let body = plan.templates[2].body();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.starts_with("{\"title\":\"t") && !text.contains("{{"), "{text}");
        assert_ne!(plan.templates[2].body(), plan.templates[2].body());
    }

    #[test]
    fn letters_placeholders_give_n_fresh_lowercase_letters() {
        let body = Bytes::from_static(br#"{"task":"{{letters:10}}","n":{{random}},"keep":"{{x}}"}"#);
        let template = Template::new("POST", "http://h:1/api/todo", &[], body, 1).unwrap();
        let first = String::from_utf8(template.body().to_vec()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&first).unwrap();
        let task = value["task"].as_str().unwrap();
        assert!(task.len() == 10 && task.bytes().all(|b| b.is_ascii_lowercase()), "{first}");
        assert_eq!(value["keep"], "{{x}}");
        assert_ne!(template.body(), template.body());
        for bad in ["{{letters:0}}", "{{letters:x}}", "{{letters:5000}}", "{{letters:3"] {
            let err = Template::new("POST", "http://h:1/", &[], Bytes::from(bad), 1).unwrap_err();
            assert!(err.contains("letters:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_json_scenario_parses_and_errors_name_the_file() {
        let path = write("s.json", r#"{"request":[{"url":"http://h:1/x","weight":3}]}"#);
        assert_eq!(Plan::from_file(&path).unwrap().templates[0].weight, 3);

        let bad = write("bad.toml", "[[request]]\nurl = \"http://h/\"\nwieght = 2\n");
        let err = Plan::from_file(&bad).unwrap_err();
        assert!(err.contains("bad.toml") && err.contains("wieght"), "{err}");
        let https = write("tls.toml", "[[request]]\nurl = \"https://h/\"\n");
        assert!(Plan::from_file(&https).unwrap_err().contains("http://"));
        let empty = write("empty.toml", "");
        assert!(Plan::from_file(&empty).unwrap_err().contains("nothing to send"));
    }

    #[test]
    fn picks_follow_the_weights() {
        let t = |w| Template::new("GET", "http://h/", &[], Bytes::new(), w).unwrap();
        let plan = Plan::new(vec![t(1), t(1), t(2)]).unwrap();
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            let picked = plan.pick() as *const Template;
            let index = plan.templates.iter().position(|t| std::ptr::eq(t, picked)).unwrap();
            counts[index] += 1;
        }
        // Expected 10k, 10k, 20k: allow 5%.
        for (count, expected) in counts.iter().zip([10_000.0, 10_000.0, 20_000.0]) {
            assert!((*count as f64 - expected).abs() < expected * 0.05, "{counts:?}");
        }
    }

    proptest::proptest! {
        /// Any text, as TOML or as JSON, is a plan or an error naming its
        /// origin; never a panic.
        #[test]
        fn any_scenario_text_parses_or_is_refused(text in "\\PC{0,200}", json in proptest::bool::ANY) {
            if let Err(e) = Plan::parse(&text, json, "scenario.x") {
                proptest::prop_assert!(e.starts_with("scenario.x: ") || e.starts_with("nothing to send"), "{}", e);
            }
        }

        /// Well-formed scenarios keep every request and weight, and each
        /// body is sent with its placeholders filled.
        #[test]
        fn generated_scenarios_round_trip(
            requests in proptest::collection::vec(
                ("(GET|POST|put|delete)", "[a-z0-9/]{0,12}", 1u32..1000, "[a-z ]{0,8}", 1usize..64, proptest::bool::ANY),
                1..6,
            ),
        ) {
            let mut text = String::new();
            for (method, path, weight, prefix, letters, random) in &requests {
                let body = if *random { format!("{prefix}{{{{letters:{letters}}}}}-{{{{random}}}}") } else { prefix.clone() };
                text += &format!("[[request]]\nmethod = {method:?}\nurl = \"http://127.0.0.1:8080/{path}\"\nweight = {weight}\nbody = {body:?}\n");
            }
            let plan = Plan::parse(&text, false, "generated").unwrap();
            proptest::prop_assert_eq!(plan.templates.len(), requests.len());
            for (template, (method, _, weight, prefix, letters, random)) in plan.templates.iter().zip(&requests) {
                proptest::prop_assert_eq!(template.method.as_str(), method.to_ascii_uppercase());
                proptest::prop_assert_eq!(template.weight, *weight);
                let body = String::from_utf8(template.body().to_vec()).unwrap();
                proptest::prop_assert!(!body.contains("{{"), "{}", body);
                if *random {
                    proptest::prop_assert!(body.len() > prefix.len() + letters, "{}", body);
                } else {
                    proptest::prop_assert_eq!(&body, prefix);
                }
            }
        }
    }
}
