//! The metric names a PromQL query reads: what the report records for a
//! KEDA trigger's query, and what xtask checks every overlay's queries
//! and dashboard panels against.

/// Words of PromQL's syntax, never metric names: keywords, and the
/// aggregations, which may take `by (...)` before their parentheses.
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

/// The keywords whose parenthesised list that follows names labels.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression reads, in the order they first
/// appear: every identifier that is not a function, a keyword, a label name
/// or inside a string, a label matcher block or a range.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut scan = Scanner { chars: expr.chars().collect(), at: 0 };
    let mut names: Vec<String> = Vec::new();
    // Whether the last keyword was `by`/`without`/`on`/..., whose (...) lists labels.
    let mut label_list_next = false;
    while let Some(c) = scan.peek() {
        match c {
            '"' | '\'' | '`' => scan.skip_quoted(c),
            '{' => scan.skip_block('}'),
            '[' => scan.skip_block(']'),
            '(' if label_list_next => {
                scan.skip_past(')');
                label_list_next = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let word = scan.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    label_list_next = true;
                } else if !scan.call_follows() && !KEYWORDS.contains(&lower.as_str()) && !names.contains(&word) {
                    names.push(word);
                }
            }
            '$' => {
                // A dashboard variable, such as $namespace.
                scan.at += 1;
                scan.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
            }
            c if c.is_ascii_digit() || c == '.' => {
                scan.take_while(|c| c.is_ascii_alphanumeric() || c == '.');
            }
            _ => scan.at += 1,
        }
    }
    names
}

/// A cursor over an expression's characters.
struct Scanner {
    chars: Vec<char>,
    /// The next character to read; may pass the end after an escape at it.
    at: usize,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    /// Reads the characters from the cursor while `pred` holds.
    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while self.peek().is_some_and(&pred) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// Past the string that opens at the cursor with `quote`, escapes included.
    fn skip_quoted(&mut self, quote: char) {
        self.at += 1;
        while let Some(c) = self.peek()
            && c != quote
        {
            self.at += if c == '\\' { 2 } else { 1 };
        }
        self.at += 1;
    }

    /// Past the `{...}` or `[...]` at the cursor, whose strings may hold `close`.
    fn skip_block(&mut self, close: char) {
        while let Some(c) = self.peek()
            && c != close
        {
            if c == '"' {
                self.skip_quoted('"');
            } else {
                self.at += 1;
            }
        }
        self.at += 1;
    }

    /// Past the next `close`.
    fn skip_past(&mut self, close: char) {
        while self.peek().is_some_and(|c| c != close) {
            self.at += 1;
        }
        self.at += 1;
    }

    /// Whether a `(` follows, past whitespace: the word read was a function.
    fn call_follows(&self) -> bool {
        self.chars[self.at..].iter().find(|c| !c.is_whitespace()) == Some(&'(')
    }
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
        assert_eq!(names(r#"a{l="x\"} y"} + label_replace(b, "dst", "$1", "src", "(.*)")"#), ["a", "b"]);
    }

    #[test]
    fn an_unfinished_expression_ends_the_scan_without_a_panic() {
        for expr in [r#"a{b="\"#, "c[5", "sum by (d", "'e", "f $", "g\\"] {
            let _ = metric_names(expr);
        }
        assert_eq!(metric_names("x + sum by (le"), ["x"]);
    }
}
