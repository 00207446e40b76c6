//! One psql process kept open for many statements: a sampler that asks
//! Postgres something ten times a second does it over one connection, not
//! one new connection (a new backend and a password handshake) each time,
//! which would load the very server a benchmark measures.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};

/// What psql prints after each statement's output, so that a statement
/// that fails (its error goes to stderr) still ends its answer.
const END: &str = "__scalelab_session_end__";

pub struct Session {
    /// psql itself, killed and reaped on drop.
    child: Child,
    /// Statements go in here, one at a time.
    input: ChildStdin,
    /// Their unaligned output comes back here, line by line.
    output: BufReader<ChildStdout>,
}

impl Session {
    /// Takes a psql started with piped input and output (`-Atq`).
    pub(crate) fn new(mut child: Child) -> Result<Session> {
        let input = child.stdin.take().context("psql has no input pipe")?;
        let output = BufReader::new(child.stdout.take().context("psql has no output pipe")?);
        Ok(Session { child, input, output })
    }

    /// Runs one statement and returns its output's lines (rows, columns
    /// separated by `|`). A statement that fails returns no lines: its error
    /// goes to psql's stderr.
    pub fn query(&mut self, sql: &str) -> Result<Vec<String>> {
        let statement = sql.trim().trim_end_matches(';');
        if statement.contains('\n') {
            bail!("a session's statement is one line: {sql:?}");
        }
        writeln!(self.input, "{statement};\n\\echo {END}").context("writing to psql")?;
        self.input.flush().context("writing to psql")?;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.output.read_line(&mut line).context("reading from psql")? == 0 {
                bail!("psql ended before answering {sql:?}");
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line == END {
                return Ok(lines);
            }
            lines.push(line.to_string());
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
