//! The metric names a PromQL query reads: what the report records for a
//! KEDA trigger's query, and what xtask checks every overlay's queries
//! and dashboard panels against.

/// The metric names a PromQL expression reads, in the order they first
/// appear: every identifier that is not a function, a keyword, a label name
/// or inside a string, a label matcher block or a range.
pub fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
        // Aggregations, which may take `by (...)` before their parentheses.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    // Whether the last keyword was `by`/`without`/`on`/..., whose (...) lists labels.
    let mut label_list_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if label_list_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                label_list_next = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let is_call = chars.get(next) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&lower.as_str()) {
                    label_list_next = true;
                } else if !is_call && !KEYWORDS.contains(&lower.as_str()) && !names.contains(&word) {
                    names.push(word);
                }
            }
            '$' => {
                // A dashboard variable, such as $namespace.
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_skip_functions_labels_and_strings() {
        let names = metric_names;
        assert_eq!(names(r#"sum(mx_server_active_conn_gauge{namespace="scalelab"})"#), ["mx_server_active_conn_gauge"]);
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le) (rate(scalelab_http_request_duration_seconds_bucket{namespace="$namespace", a="x{y}"}[1m])))"#
            ),
            ["scalelab_http_request_duration_seconds_bucket"]
        );
        assert_eq!(names("count by (guest) (scalelab_guest_info) / on (pod) group_left up"), ["scalelab_guest_info", "up"]);
        assert_eq!(names("sum without (pod) (x) + max by (a) (y)"), ["x", "y"]);
        assert_eq!(names("rate(a_total[5m]) > bool 2e3 and b offset 5m"), ["a_total", "b"]);
    }
}
