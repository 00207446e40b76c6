//! A query's result packed for the guest (`query-packed` in `wit/sql.wit`):
//! the bytes of every text and blob back to back in one list, the values as
//! cells that give their lengths. Lowering `list<list<value>>` into a guest
//! calls the guest's allocator once per row and once per text (about 570
//! instructions a call in wasmtime, half of a 50-row list's cost), and the
//! guest's bindings then build as many objects; a packed result takes four
//! allocations plus one per column name.

use super::{Error, Rows, Value};
use crate::runtime::bindings::sql::{Cell, PackedRows};

/// `rows`, packed. A text or blob longer than a `u32` counts (which no
/// guest's 32-bit memory could hold) fails as too large.
pub fn pack(rows: Rows) -> Result<PackedRows, Error> {
    let width = rows.columns.len();
    let mut cells = Vec::with_capacity(rows.rows.len() * width);
    let bytes = rows.rows.iter().flatten().map(|value| match value {
        Value::Text(text) => text.len(),
        Value::Blob(blob) => blob.len(),
        _ => 0,
    });
    let mut data = Vec::with_capacity(bytes.sum());
    for value in rows.rows.into_iter().flatten() {
        cells.push(match value {
            Value::Null => Cell::Null,
            Value::Integer(i) => Cell::Integer(i),
            Value::Real(r) => Cell::Real(r),
            Value::Text(text) => {
                data.extend_from_slice(text.as_bytes());
                Cell::Text(length(text.len())?)
            }
            Value::Blob(blob) => {
                data.extend_from_slice(&blob);
                Cell::Blob(length(blob.len())?)
            }
        });
    }
    Ok(PackedRows { columns: rows.columns, cells, data })
}

fn length(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::TooLarge(format!("a value of {len} bytes is larger than a packed result can carry")))
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

    #[test]
    fn packed_rows_unpack_to_the_same_values() {
        let rows = vec![
            vec![Value::Integer(1), Value::Text("héllo".into()), Value::Blob(vec![0, 255]), Value::Null],
            vec![Value::Integer(-2), Value::Text(String::new()), Value::Blob(Vec::new()), Value::Real(1.5)],
            vec![Value::Integer(3), Value::Text("\"x\"\n".into()), Value::Null, Value::Real(-0.0)],
        ];
        let columns: Vec<String> = ["id", "text", "blob", "other"].map(String::from).into();
        let packed = pack(Rows { columns: columns.clone(), rows: rows.clone() }).unwrap();
        assert_eq!(packed.columns, columns);
        assert_eq!(packed.cells.len(), 12);
        assert_eq!(packed.data.len(), "héllo".len() + 2 + 4);
        assert_eq!(unpack(&packed), rows);
    }

    #[test]
    fn no_rows_pack_to_nothing_but_the_columns() {
        let packed = pack(Rows { columns: vec!["task".into()], rows: Vec::new() }).unwrap();
        assert_eq!((packed.columns.len(), packed.cells.len(), packed.data.len()), (1, 0, 0));
    }
}
