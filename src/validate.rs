//! Field rules for the API's JSON bodies. Over-long or mistyped values are refused with a
//! message naming the field; nothing is truncated, and text is stored exactly as sent.

use serde_json::{Map, Value as Json};

use crate::db::Value;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string of at most this many characters; blank counts as absent.
    Text(usize),
    /// A whole number within the range, as a JSON number or numeric text (AlcheMix's forms
    /// send `"2"`); an empty string counts as absent.
    Int(i64, i64),
    /// A number within the range, as a JSON number or numeric text; an empty string counts
    /// as absent.
    Real(f64, f64),
    /// A list of at most 100 strings of at most 500 characters (or a string holding one).
    StringList,
    /// The id of one of the caller's rows in another table.
    Ref,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The JSON key, which for AlcheMix's bottles is also the literal column name.
    pub key: &'static str,
    pub column: &'static str,
    pub kind: Kind,
    pub required: bool,
}

pub const MAX_LIST_ITEMS: usize = 100;
pub const MAX_ITEM_CHARS: usize = 500;

/// Checks one field's value; `Ok(None)` means "store NULL".
pub fn check(field: &Field, value: &Json) -> Result<Value, String> {
    let name = field.key;
    let out = match (field.kind, value) {
        (_, Json::Null) => Value::Null,
        (Kind::Text(max), Json::String(s)) => {
            if s.trim().is_empty() {
                Value::Null
            } else if s.chars().count() > max {
                return Err(format!("{name}: Must be at most {max} characters"));
            } else {
                Value::Text(s.clone())
            }
        }
        (Kind::Text(_), _) => return Err(format!("{name}: Must be a string")),
        (Kind::Int(..) | Kind::Real(..), Json::String(s)) if s.trim().is_empty() => Value::Null,
        (Kind::Int(min, max), value) => {
            let f = number(value).ok_or_else(|| format!("{name}: Must be a whole number"))?;
            if f.fract() != 0.0 {
                return Err(format!("{name}: Must be a whole number"));
            }
            range(name, f, min as f64, max as f64)?;
            // In range of an i64 bound, so the conversion is exact.
            Value::Int(f as i64)
        }
        (Kind::Real(min, max), value) => {
            let f = number(value).ok_or_else(|| format!("{name}: Must be a number"))?;
            range(name, f, min, max)?;
            Value::Real(f)
        }
        (Kind::Ref, Json::Number(n)) => match n.as_i64() {
            Some(i) if i >= 1 => Value::Int(i),
            _ => return Err(format!("{name}: Must be a positive whole number")),
        },
        (Kind::Ref, Json::String(s)) if s.is_empty() => Value::Null,
        (Kind::Ref, _) => return Err(format!("{name}: Must be a positive whole number")),
        (Kind::StringList, Json::String(s)) => {
            let parsed: Json =
                serde_json::from_str(s).map_err(|_| format!("{name}: String is not valid JSON"))?;
            return check(field, &parsed).map(|v| match v {
                Value::Null => Value::Text("[]".into()),
                v => v,
            });
        }
        (Kind::StringList, Json::Array(items)) => {
            if items.len() > MAX_LIST_ITEMS {
                return Err(format!("{name}: Too many items (maximum {MAX_LIST_ITEMS})"));
            }
            for (i, item) in items.iter().enumerate() {
                match item {
                    Json::String(s) if s.chars().count() <= MAX_ITEM_CHARS => {}
                    Json::String(_) => {
                        return Err(format!(
                            "{name}[{i}]: Must be at most {MAX_ITEM_CHARS} characters"
                        ))
                    }
                    _ => return Err(format!("{name}[{i}]: Must be a string")),
                }
            }
            Value::Text(Json::Array(items.clone()).to_string())
        }
        (Kind::StringList, _) => return Err(format!("{name}: Must be a list of strings")),
    };
    if field.required && out == Value::Null {
        return Err(format!("{name}: Required"));
    }
    Ok(out)
}

/// A JSON number, or text that is one in decimal notation (what AlcheMix's `Number()`
/// coercion accepts from its forms, less the hex, binary and `Infinity` spellings).
fn number(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => {
            let t = s.trim();
            let decimal = !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
            decimal
                .then(|| t.parse::<f64>().ok())
                .flatten()
                .filter(|f| f.is_finite())
        }
        _ => None,
    }
}

fn range(name: &str, v: f64, min: f64, max: f64) -> Result<(), String> {
    if !v.is_finite() || v < min {
        return Err(format!("{name}: Must be at least {min}"));
    }
    if v > max {
        return Err(format!("{name}: Must be at most {max}"));
    }
    Ok(())
}

/// Checks the fields present in `body` (all of `fields` when `all`, absent ones as null).
/// Returns the columns to write, or every problem found.
pub fn check_body(
    fields: &[Field],
    body: &Map<String, Json>,
    all: bool,
) -> Result<Vec<(Field, Value)>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for field in fields {
        let value = match body.get(field.key) {
            Some(v) => v,
            None if all => &Json::Null,
            None => continue,
        };
        match check(field, value) {
            Ok(v) => out.push((*field, v)),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A positive row id from a path segment.
pub fn id(segment: &str) -> Option<i64> {
    if segment.is_empty() || segment.len() > 18 || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok().filter(|i| *i >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAME: Field = Field {
        key: "name",
        column: "name",
        kind: Kind::Text(5),
        required: true,
    };
    const STOCK: Field = Field {
        key: "Stock Number",
        column: "\"Stock Number\"",
        kind: Kind::Int(0, 999_999),
        required: false,
    };
    const ABV: Field = Field {
        key: "ABV (%)",
        column: "abv",
        kind: Kind::Real(0.0, 100.0),
        required: false,
    };
    const LIST: Field = Field {
        key: "ingredients",
        column: "ingredients",
        kind: Kind::StringList,
        required: false,
    };

    #[test]
    fn text() {
        assert_eq!(check(&NAME, &json!("gin")), Ok(Value::Text("gin".into())));
        assert_eq!(check(&NAME, &json!("  ")), Err("name: Required".into()));
        assert_eq!(
            check(&NAME, &json!("toolong")),
            Err("name: Must be at most 5 characters".into())
        );
        assert_eq!(
            check(&NAME, &json!(5)),
            Err("name: Must be a string".into())
        );
        assert_eq!(check(&NAME, &json!("<b>'")), Ok(Value::Text("<b>'".into())));
    }

    #[test]
    fn numbers() {
        assert_eq!(check(&STOCK, &json!(3)), Ok(Value::Int(3)));
        assert_eq!(check(&STOCK, &json!(3.0)), Ok(Value::Int(3)));
        assert!(check(&STOCK, &json!(3.5)).is_err());
        assert_eq!(
            check(&STOCK, &json!(1_000_000)),
            Err("Stock Number: Must be at most 999999".into())
        );
        assert!(check(&STOCK, &json!(-1)).is_err());
        assert_eq!(check(&STOCK, &json!("3")), Ok(Value::Int(3)));
        assert_eq!(check(&STOCK, &json!(" 12 ")), Ok(Value::Int(12)));
        assert_eq!(check(&STOCK, &json!("")), Ok(Value::Null));
        assert_eq!(
            check(&STOCK, &json!("2.5")),
            Err("Stock Number: Must be a whole number".into())
        );
        assert_eq!(
            check(&STOCK, &json!("two")),
            Err("Stock Number: Must be a whole number".into())
        );
        assert!(check(&STOCK, &json!(true)).is_err());
        assert_eq!(check(&ABV, &json!("47.3")), Ok(Value::Real(47.3)));
        assert_eq!(check(&ABV, &json!("")), Ok(Value::Null));
        for bad in ["abc", "inf", "NaN", "0x10", "4 7", "1e999"] {
            assert_eq!(
                check(&ABV, &json!(bad)),
                Err("ABV (%): Must be a number".into()),
                "{bad}"
            );
        }
        assert_eq!(
            check(&ABV, &json!("101")),
            Err("ABV (%): Must be at most 100".into())
        );
        assert_eq!(check(&ABV, &json!(40.5)), Ok(Value::Real(40.5)));
        assert!(check(&ABV, &json!(101)).is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(
            check(&LIST, &json!(["a", "b"])),
            Ok(Value::Text("[\"a\",\"b\"]".into()))
        );
        assert_eq!(
            check(&LIST, &json!("[\"a\"]")),
            Ok(Value::Text("[\"a\"]".into()))
        );
        assert!(check(&LIST, &json!("not json")).is_err());
        assert!(check(&LIST, &json!([1])).is_err());
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert!(check(&LIST, &json!(many)).is_err());
    }

    #[test]
    fn bodies_report_every_problem() {
        let body = json!({"name": 1, "Stock Number": -5})
            .as_object()
            .unwrap()
            .clone();
        let err = check_body(&[NAME, STOCK, ABV], &body, true).unwrap_err();
        assert_eq!(err.len(), 2);
        let ok = check_body(
            &[NAME, STOCK],
            &json!({"name": "x"}).as_object().unwrap().clone(),
            false,
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn ids() {
        assert_eq!(id("42"), Some(42));
        for bad in [
            "0",
            "-1",
            "1.5",
            "abc",
            "",
            "1e3",
            "99999999999999999999",
            " 1",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
    }
}
