//! Reads (and writes) one UTF-8 text column of a parquet file, row group by row group.
//!
//! Uses the `parquet` crate's column readers directly (no arrow): rows are decoded in
//! batches of [`ROWS_PER_BATCH`] from one row group at a time, so memory stays bounded by a
//! batch of strings whatever the file size.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::SchemaDescriptor;

use crate::error::{DataError, Result};

/// Rows decoded per call into the column reader.
pub const ROWS_PER_BATCH: usize = 1024;

fn pq(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> DataError + '_ {
    move |source| DataError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn column_names(schema: &SchemaDescriptor) -> String {
    schema
        .columns()
        .iter()
        .map(|c| c.path().string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Index of the top-level, non-repeated UTF-8/BYTE_ARRAY column `column`.
fn text_column(path: &Path, schema: &SchemaDescriptor, column: &str) -> Result<usize> {
    let missing = |expected: &str| DataError::MissingColumn {
        path: path.to_path_buf(),
        column: column.into(),
        expected: expected.into(),
        found: column_names(schema),
    };
    let (i, desc) = schema
        .columns()
        .iter()
        .enumerate()
        .find(|(_, c)| c.path().parts() == [column])
        .ok_or_else(|| missing("a top-level BYTE_ARRAY (UTF8) column"))?;
    if desc.physical_type() != PhysicalType::BYTE_ARRAY || desc.max_rep_level() > 0 {
        return Err(missing(&format!(
            "a non-repeated BYTE_ARRAY column, not {:?}{}",
            desc.physical_type(),
            if desc.max_rep_level() > 0 {
                " (repeated)"
            } else {
                ""
            }
        )));
    }
    let is_string = matches!(desc.logical_type(), Some(LogicalType::String) | None)
        || desc.converted_type() == ConvertedType::UTF8;
    if !is_string {
        return Err(missing(&format!(
            "a string column, not logical type {:?}",
            desc.logical_type()
        )));
    }
    Ok(i)
}

/// Number of rows of `path` (from the footer).
pub fn parquet_rows(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| DataError::io(path, "opening", e))?;
    let reader = SerializedFileReader::new(file).map_err(pq(path))?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Calls `f` with the text of each row of `column`, in order (`None` for a null).
///
/// Returns the number of rows read. `f` may stop early by returning `Ok(false)`.
pub fn read_parquet_text(
    path: &Path,
    column: &str,
    mut f: impl FnMut(Option<&str>) -> Result<bool>,
) -> Result<u64> {
    let file = File::open(path).map_err(|e| DataError::io(path, "opening", e))?;
    let reader = SerializedFileReader::new(file).map_err(pq(path))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let col = text_column(path, &schema, column)?;
    let max_def = schema.column(col).max_def_level();
    let mut rows = 0u64;
    let mut values: Vec<ByteArray> = Vec::with_capacity(ROWS_PER_BATCH);
    let mut defs: Vec<i16> = Vec::with_capacity(ROWS_PER_BATCH);
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(pq(path))?;
        let ColumnReader::ByteArrayColumnReader(mut cr) =
            group.get_column_reader(col).map_err(pq(path))?
        else {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                column: column.into(),
                expected: "a BYTE_ARRAY column reader".into(),
                found: column_names(&schema),
            });
        };
        let cr: &mut parquet::column::reader::ColumnReaderImpl<ByteArrayType> = &mut cr;
        loop {
            values.clear();
            defs.clear();
            let (records, _, _) = cr
                .read_records(
                    ROWS_PER_BATCH,
                    if max_def > 0 { Some(&mut defs) } else { None },
                    None,
                    &mut values,
                )
                .map_err(pq(path))?;
            if records == 0 {
                break;
            }
            let mut next_value = values.iter();
            for r in 0..records {
                let present = max_def == 0 || defs.get(r) == Some(&max_def);
                let text = if present {
                    let v = next_value.next().ok_or_else(|| DataError::Parquet {
                        path: path.to_path_buf(),
                        source: parquet::errors::ParquetError::General(format!(
                            "row {rows}: fewer values than definition levels"
                        )),
                    })?;
                    Some(
                        std::str::from_utf8(v.data()).map_err(|source| DataError::Utf8 {
                            path: path.to_path_buf(),
                            location: format!("row {rows} of column `{column}`"),
                            source,
                        })?,
                    )
                } else {
                    None
                };
                rows += 1;
                if !f(text)? {
                    return Ok(rows);
                }
            }
        }
    }
    Ok(rows)
}

/// Writes `texts` as a one-column parquet file (`message schema { REQUIRED BYTE_ARRAY
/// <column> (UTF8); }`), `rows_per_group` rows per row group. Used by tests and to turn a
/// corpus into the parquet that `{ local = … }` reads.
pub fn write_parquet_text(
    path: &Path,
    column: &str,
    texts: &[&str],
    rows_per_group: usize,
) -> Result<()> {
    let schema = parse_message_type(&format!(
        "message schema {{ REQUIRED BYTE_ARRAY {column} (UTF8); }}"
    ))
    .map_err(pq(path))?;
    let file = File::create(path).map_err(|e| DataError::io(path, "creating", e))?;
    let props = Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), props).map_err(pq(path))?;
    for chunk in texts.chunks(rows_per_group.max(1)) {
        let mut group = writer.next_row_group().map_err(pq(path))?;
        if let Some(mut col) = group.next_column().map_err(pq(path))? {
            let values: Vec<ByteArray> = chunk.iter().map(|t| ByteArray::from(*t)).collect();
            col.typed::<ByteArrayType>()
                .write_batch(&values, None, None)
                .map_err(pq(path))?;
            col.close().map_err(pq(path))?;
        }
        group.close().map_err(pq(path))?;
    }
    writer.close().map_err(pq(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_in_order_across_row_groups_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let rows: Vec<String> = (0..2500).map(|i| format!("row {i} ü")).collect();
        let refs: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
        write_parquet_text(&path, "text", &refs, 700).unwrap();
        assert_eq!(parquet_rows(&path).unwrap(), 2500);
        let mut got = Vec::new();
        let n = read_parquet_text(&path, "text", |t| {
            got.push(t.unwrap().to_string());
            Ok(true)
        })
        .unwrap();
        assert_eq!(n, 2500);
        assert_eq!(got, rows);
        // Early stop after 3 rows.
        let mut seen = 0;
        let n = read_parquet_text(&path, "text", |_| {
            seen += 1;
            Ok(seen < 3)
        })
        .unwrap();
        assert_eq!((n, seen), (3, 3));
    }

    #[test]
    fn optional_column_yields_none_for_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet");
        let schema =
            parse_message_type("message schema { OPTIONAL BYTE_ARRAY text (UTF8); }").unwrap();
        let file = File::create(&path).unwrap();
        let mut w = SerializedFileWriter::new(
            file,
            Arc::new(schema),
            Arc::new(WriterProperties::builder().build()),
        )
        .unwrap();
        let mut g = w.next_row_group().unwrap();
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(
                &[ByteArray::from("a"), ByteArray::from("c")],
                Some(&[1, 0, 1]),
                None,
            )
            .unwrap();
        c.close().unwrap();
        g.close().unwrap();
        w.close().unwrap();
        let mut got = Vec::new();
        read_parquet_text(&path, "text", |t| {
            got.push(t.map(str::to_string));
            Ok(true)
        })
        .unwrap();
        assert_eq!(
            got,
            vec![Some("a".to_string()), None, Some("c".to_string())]
        );
    }
}
