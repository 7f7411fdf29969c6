//! The PostgreSQL bulk-load baseline the benchmarks compare the hub with: `COPY … FROM STDIN`
//! of `records` rows in the text format.

use sqlx::PgConnection;

/// A `records` row as stored: k, kind, year, id, region, hh, fields, deleted, rev.
pub type RecordRow = (String, i64, i64, String, String, String, String, i64, i64);

/// One value of COPY's text format.
fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

/// `rows` copied into `table` (which has the columns of `records`) in one `COPY`, encoding
/// included.
pub async fn copy_records(conn: &mut PgConnection, table: &str, rows: &[RecordRow]) -> sqlx::Result<()> {
    let mut text = String::with_capacity(rows.iter().map(|r| r.6.len() + 96).sum());
    for (k, kind, year, id, region, hh, fields, deleted, rev) in rows {
        push_text(&mut text, k);
        text.push_str(&format!("\t{kind}\t{year}\t"));
        for col in [id, region, hh, fields] {
            push_text(&mut text, col);
            text.push('\t');
        }
        text.push_str(&format!("{deleted}\t{rev}\n"));
    }
    let statement = format!("COPY {table} (k, kind, year, id, region, hh, fields, deleted, rev) FROM STDIN");
    let mut copy = conn.copy_in_raw(&statement).await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}
