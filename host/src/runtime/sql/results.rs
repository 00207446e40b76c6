//! Where a backend writes a query's result as it reads it, value by value:
//! whole rows of values (`query` in `wit/sql.wit`) or packed (`query-packed`,
//! the texts' and blobs' bytes back to back in one list).
//!
//! Both backends hand over borrowed values ([`ValueRef`]: Postgres's row
//! buffer, SQLite's statement), so a packed result is written straight from
//! them: no `String` or `Vec` per value, no row vector, and no second copy.
//! At the todo guest's `GET /api/todos` (50 rows, Postgres) the values in
//! between cost about 18,000 instructions a request, 11% of the whole
//! (callgrind). Each collector counts the bytes against the result's cap as
//! it goes.

use super::{Error, Rows, Value};
use crate::runtime::bindings::sql::{Cell, PackedRows};
use std::borrow::Cow;

/// A value as a backend holds it. A text is UTF-8 by both backends'
/// contracts; SQLite does not enforce it, so an invalid one is made valid
/// (U+FFFD) as it is collected.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(value: &'a Value) -> ValueRef<'a> {
        match value {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(blob) => ValueRef::Blob(blob),
        }
    }
}

/// A result being collected.
pub trait Collect: Send + 'static {
    type Output: Send + 'static;
    /// Before the first value: the column names, and the cap in bytes.
    fn start(columns: Vec<String>, cap: usize) -> Self;
    /// A row starts: its values follow, one per column (none for a row of
    /// no columns, which Postgres's `SELECT FROM t` gives).
    fn start_row(&mut self);
    /// The next value of the row, column after column.
    fn push(&mut self, value: ValueRef<'_>) -> Result<(), Error>;
    fn finish(self) -> Self::Output;
}

/// Counts the bytes of a result against the cap as values are collected.
struct Budget {
    left: usize,
    cap: usize,
}

impl Budget {
    fn new(cap: usize) -> Budget {
        Budget { left: cap, cap }
    }

    fn spend(&mut self, value: ValueRef<'_>) -> Result<(), Error> {
        let size = match value {
            ValueRef::Null => 1,
            ValueRef::Integer(_) | ValueRef::Real(_) => 8,
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.len(),
        };
        self.left = self.left.checked_sub(size).ok_or_else(|| {
            Error::TooLarge(format!("the result is larger than {} bytes (--database-max-result); select fewer rows", self.cap))
        })?;
        Ok(())
    }
}

/// `bytes` as valid UTF-8: as they are when they are (ASCII, the common
/// case, is checked a word at a time and inline), else with U+FFFD for what
/// is not.
fn utf8(bytes: &[u8]) -> Cow<'_, [u8]> {
    if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
        Cow::Borrowed(bytes)
    } else {
        Cow::Owned(String::from_utf8_lossy(bytes).into_owned().into_bytes())
    }
}

/// Whole rows of values.
pub struct WholeRows {
    rows: Rows,
    budget: Budget,
}

impl Collect for WholeRows {
    type Output = Rows;

    fn start(columns: Vec<String>, cap: usize) -> WholeRows {
        WholeRows { rows: Rows { columns, rows: Vec::new() }, budget: Budget::new(cap) }
    }

    fn start_row(&mut self) {
        self.rows.rows.push(Vec::with_capacity(self.rows.columns.len()));
    }

    fn push(&mut self, value: ValueRef<'_>) -> Result<(), Error> {
        self.budget.spend(value)?;
        let row = self.rows.rows.last_mut().expect("start_row comes before a row's values");
        row.push(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(bytes) => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
            ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        });
        Ok(())
    }

    fn finish(self) -> Rows {
        self.rows
    }
}

/// Cells a packed result has room for from the start. Neither backend knows
/// how many rows a query gives before it has read them all, and grown from
/// empty, a list is reallocated and copied at each doubling: seven times for
/// the 600-odd bytes of the todo guest's newest 50 tasks, about 1,400
/// instructions of a request's 140,000 (callgrind, `GET /api/todos`), with a
/// cache miss for most lines copied.
const FIRST_CELLS: usize = 64;

/// Bytes of texts and blobs a packed result has room for from the start
/// (see [`FIRST_CELLS`]); never more than the result's cap.
const FIRST_DATA: usize = 1024;

/// A packed result (see `packed-rows` in `wit/sql.wit`).
pub struct Packed {
    packed: PackedRows,
    budget: Budget,
}

impl Collect for Packed {
    type Output = PackedRows;

    /// Starts with room for a small result, so that one of up to
    /// [`FIRST_CELLS`] cells and [`FIRST_DATA`] bytes never regrows its lists.
    fn start(columns: Vec<String>, cap: usize) -> Packed {
        let cells = Vec::with_capacity(FIRST_CELLS);
        let data = Vec::with_capacity(FIRST_DATA.min(cap));
        Packed { packed: PackedRows { columns, cells, data }, budget: Budget::new(cap) }
    }

    /// Rows are implied: every row has one cell per column.
    fn start_row(&mut self) {}

    fn push(&mut self, value: ValueRef<'_>) -> Result<(), Error> {
        self.budget.spend(value)?;
        let PackedRows { cells, data, .. } = &mut self.packed;
        cells.push(match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(r) => Cell::Real(r),
            ValueRef::Text(bytes) => {
                let text = utf8(bytes);
                data.extend_from_slice(&text);
                Cell::Text(length(text.len())?)
            }
            ValueRef::Blob(bytes) => {
                data.extend_from_slice(bytes);
                Cell::Blob(length(bytes.len())?)
            }
        });
        Ok(())
    }

    fn finish(self) -> PackedRows {
        self.packed
    }
}

/// A text's or blob's length as a cell gives it. One longer than a `u32`
/// counts (which no guest's 32-bit memory could hold) fails as too large.
fn length(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::TooLarge(format!("a value of {len} bytes is larger than a packed result can carry")))
}

/// Collects values already read, as `C` would have from the backend.
#[cfg(test)]
pub fn collect<C: Collect>(columns: &[&str], values: &[Value], cap: usize) -> Result<C::Output, Error> {
    let mut collector = C::start(columns.iter().map(|c| c.to_string()).collect(), cap);
    for row in values.chunks(columns.len().max(1)) {
        collector.start_row();
        for value in row {
            collector.push(value.into())?;
        }
    }
    Ok(collector.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unpacks as a guest would, for comparison with the rows packed.
    fn unpack(packed: &PackedRows) -> Vec<Vec<Value>> {
        let mut offset = 0;
        let mut take = |len: u32| {
            let bytes = packed.data[offset..offset + len as usize].to_vec();
            offset += len as usize;
            bytes
        };
        let values: Vec<Value> = packed
            .cells
            .iter()
            .map(|cell| match *cell {
                Cell::Null => Value::Null,
                Cell::Integer(i) => Value::Integer(i),
                Cell::Real(r) => Value::Real(r),
                Cell::Text(len) => Value::Text(String::from_utf8(take(len)).unwrap()),
                Cell::Blob(len) => Value::Blob(take(len)),
            })
            .collect();
        assert_eq!(offset, packed.data.len(), "every byte belongs to a cell");
        values.chunks(packed.columns.len()).map(<[Value]>::to_vec).collect()
    }

    fn sample() -> Vec<Vec<Value>> {
        vec![
            vec![Value::Integer(1), Value::Text("héllo".into()), Value::Blob(vec![0, 255]), Value::Null],
            vec![Value::Integer(-2), Value::Text(String::new()), Value::Blob(Vec::new()), Value::Real(1.5)],
            vec![Value::Integer(3), Value::Text("\"x\"\n".into()), Value::Null, Value::Real(-0.0)],
        ]
    }

    const COLUMNS: [&str; 4] = ["id", "text", "blob", "other"];

    #[test]
    fn packed_rows_unpack_to_the_whole_rows() {
        let values: Vec<Value> = sample().concat();
        let packed = collect::<Packed>(&COLUMNS, &values, 1 << 20).unwrap();
        assert_eq!(packed.columns, COLUMNS);
        assert_eq!(packed.cells.len(), 12);
        assert_eq!(packed.data.len(), "héllo".len() + 2 + 4);
        assert_eq!(unpack(&packed), sample());
        let whole = collect::<WholeRows>(&COLUMNS, &values, 1 << 20).unwrap();
        assert_eq!((whole.columns.as_slice(), whole.rows), (COLUMNS.map(String::from).as_slice(), sample()));
    }

    #[test]
    fn no_rows_collect_to_nothing_but_the_columns() {
        let packed = collect::<Packed>(&["task"], &[], 100).unwrap();
        assert_eq!((packed.columns.len(), packed.cells.len(), packed.data.len()), (1, 0, 0));
        assert!(collect::<WholeRows>(&["task"], &[], 100).unwrap().rows.is_empty());
    }

    #[test]
    fn rows_of_no_columns_are_kept_whole() {
        let mut whole = WholeRows::start(Vec::new(), 100);
        whole.start_row();
        whole.start_row();
        assert_eq!(whole.finish().rows, [Vec::<Value>::new(), Vec::new()]);
    }

    #[test]
    fn invalid_utf8_text_is_made_valid_in_both_forms() {
        let mut packed = Packed::start(vec!["t".into()], 100);
        let mut whole = WholeRows::start(vec!["t".into()], 100);
        for text in [&b"ok"[..], b"a\xffb", "é".as_bytes()] {
            packed.start_row();
            packed.push(ValueRef::Text(text)).unwrap();
            whole.start_row();
            whole.push(ValueRef::Text(text)).unwrap();
        }
        let expected = ["ok", "a\u{fffd}b", "é"].map(|t| vec![Value::Text(t.into())]);
        assert_eq!(unpack(&packed.finish()), expected);
        assert_eq!(whole.finish().rows, expected);
    }

    #[test]
    fn the_cap_counts_every_value_in_both_forms() {
        let values = [Value::Text("12345".into()), Value::Integer(7), Value::Null];
        // 5 + 8 + 1 bytes.
        assert!(collect::<Packed>(&["v"], &values, 14).is_ok());
        assert!(collect::<WholeRows>(&["v"], &values, 14).is_ok());
        for error in [collect::<Packed>(&["v"], &values, 13).unwrap_err(), collect::<WholeRows>(&["v"], &values, 13).unwrap_err()]
        {
            assert!(matches!(&error, Error::TooLarge(m) if m.contains("larger than 13 bytes")), "{error:?}");
        }
    }

    #[test]
    fn a_small_packed_result_is_collected_without_regrowing_its_lists() {
        // The todo guest's newest 50 tasks: 50 cells, 500 bytes.
        let tasks: Vec<Value> = (0..50).map(|i| Value::Text(format!("task{i:06}"))).collect();
        let packed = collect::<Packed>(&["task"], &tasks, 1 << 20).unwrap();
        assert_eq!((packed.cells.len(), packed.data.len()), (50, 500));
        assert_eq!((packed.cells.capacity(), packed.data.capacity()), (FIRST_CELLS, FIRST_DATA), "a list was regrown");
        // The first room never exceeds a smaller cap.
        assert!(Packed::start(vec!["t".into()], 10).packed.data.capacity() < FIRST_DATA);
    }
}
