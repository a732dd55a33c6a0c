//! What PostgreSQL spells differently from the shared queries, for the drivers of both worlds:
//! numbered parameters, and sorting its errors (SQLSTATE codes) into the kinds routes handle.

use super::DbErrorKind;

/// The statement with SQLite's `?N` and `?` parameters as PostgreSQL's `$N`. A bare `?` takes
/// the number after the largest one so far, as SQLite numbers it. Quoted text and identifiers
/// are left alone.
pub fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut largest: u32 = 0;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), _) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                let number = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => largest.saturating_add(1),
                };
                largest = largest.max(number);
                out.push('$');
                out.push_str(&number.to_string());
            }
            (None, _) => out.push(c),
        }
    }
    out
}

/// The kind of a server error, by its SQLSTATE code.
pub fn kind_of_code(code: &str) -> DbErrorKind {
    match code {
        "23505" => DbErrorKind::UniqueViolation,
        "23503" => DbErrorKind::ForeignKeyViolation,
        // undefined_table, undefined_column
        "42P01" | "42703" => DbErrorKind::MissingSchema,
        // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
        "57P01" | "57P02" | "57P03" | "53300" => DbErrorKind::Unavailable,
        // connection_exception and its subclasses
        c if c.starts_with("08") => DbErrorKind::Unavailable,
        _ => DbErrorKind::Other,
    }
}

/// The kind of a query failure known only as text (`fermyon:spin/postgres@2.0.0` flattens
/// every failure to the client library's debug form; a later interface's `text` case is one
/// that came without a server error). A server error names its code as `SqlState(E…)`; a
/// connection that closed or failed under the query says so by its error kind.
pub fn kind_of_text(text: &str) -> DbErrorKind {
    if let Some(rest) = text.split("SqlState(E").nth(1) {
        if let Some(code) = rest.get(..5) {
            return kind_of_code(code);
        }
    }
    const BROKEN: &[&str] = &["kind: Closed", "kind: Io", "kind: Connect", "kind: Timeout"];
    if BROKEN.iter().any(|k| text.contains(k)) {
        DbErrorKind::Unavailable
    } else {
        DbErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_outside_quotes() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ? AND c > ?"),
            "SELECT a FROM t WHERE b = $1 AND c > $2"
        );
        assert_eq!(
            placeholders("SELECT ?1, ?2 WHERE lower(e) = ?1 ORDER BY e = ?1"),
            "SELECT $1, $2 WHERE lower(e) = $1 ORDER BY e = $1"
        );
        assert_eq!(
            placeholders(r#"UPDATE t SET "What?" = ?, note = 'why?' WHERE id = ?"#),
            r#"UPDATE t SET "What?" = $1, note = 'why?' WHERE id = $2"#
        );
        assert_eq!(placeholders("VALUES (?2, ?)"), "VALUES ($2, $3)");
        assert_eq!(placeholders("it''s ?"), "it''s $1");
    }

    #[test]
    fn errors_are_sorted_by_their_code() {
        assert_eq!(kind_of_code("23505"), DbErrorKind::UniqueViolation);
        assert_eq!(kind_of_code("23503"), DbErrorKind::ForeignKeyViolation);
        assert_eq!(kind_of_code("42P01"), DbErrorKind::MissingSchema);
        assert_eq!(kind_of_code("08006"), DbErrorKind::Unavailable);
        assert_eq!(kind_of_code("57P01"), DbErrorKind::Unavailable);
        assert_eq!(kind_of_code("22P02"), DbErrorKind::Other);
        assert_eq!(
            kind_of_text(
                r#"Error { kind: Db, cause: Some(DbError { severity: "ERROR", code: SqlState(E23505), message: "duplicate key" }) }"#
            ),
            DbErrorKind::UniqueViolation
        );
        assert_eq!(
            kind_of_text("Error { kind: Closed, cause: None }"),
            DbErrorKind::Unavailable
        );
        assert_eq!(
            kind_of_text("Error { kind: ToSql(0), cause: Some(WrongType) }"),
            DbErrorKind::Other
        );
    }
}
