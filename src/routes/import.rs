//! CSV uploads as AlcheMix's client sends them: `multipart/form-data` with the file in the
//! field `file` (a header row first), turned into JSON objects under the API's own keys so the
//! rows pass the same field rules as a JSON body. Header names are matched the way AlcheMix
//! matched them (a list of usual spellings per field, first non-empty one wins), ignoring case.

use std::convert::Infallible;

use serde_json::{Map, Value as Json};

use crate::error::ApiError;
use crate::http::Request;

/// AlcheMix's upload limit (its multer configuration).
pub const MAX_FILE_BYTES: u64 = 5 * 1024 * 1024;
/// AlcheMix's row limit per import.
pub const MAX_ROWS: usize = 1000;
/// Form fields besides the file are ids: anything longer is not one.
const MAX_TEXT_FIELD_BYTES: u64 = 1024;

/// One column of an import: the API key it fills, the header names it is read from, and
/// whether the cell holds a list (AlcheMix split ingredients on `;`, `|`, new lines or `,`).
pub struct Column {
    pub key: &'static str,
    pub headers: &'static [&'static str],
    pub list: bool,
}

const fn col(key: &'static str, headers: &'static [&'static str]) -> Column {
    Column {
        key,
        headers,
        list: false,
    }
}

pub const BOTTLE_COLUMNS: &[Column] = &[
    col(
        "name",
        &[
            "name",
            "spirit name",
            "spirit",
            "bottle name",
            "bottle",
            "product name",
            "product",
            "brand",
        ],
    ),
    col("Stock Number", &["stock number", "stock", "number", "#"]),
    col("Liquor Type", &["liquor type", "type", "category"]),
    col(
        "Detailed Spirit Classification",
        &[
            "detailed spirit classification",
            "classification",
            "spirit type",
        ],
    ),
    col("Distillation Method", &["distillation method", "method"]),
    col(
        "ABV (%)",
        &["abv (%)", "abv", "alcohol", "proof", "alcohol content"],
    ),
    col(
        "Distillery Location",
        &["distillery location", "location", "origin", "country"],
    ),
    col(
        "Age Statement or Barrel Finish",
        &[
            "age statement or barrel finish",
            "age statement",
            "age",
            "barrel finish",
            "finish",
        ],
    ),
    col(
        "Additional Notes",
        &["additional notes", "notes", "description", "comments"],
    ),
    col(
        "Profile (Nose)",
        &["profile (nose)", "nose", "aroma", "smell"],
    ),
    col("Palate", &["palate", "taste", "flavor"]),
    col("Finish", &["finish", "aftertaste"]),
];

pub const RECIPE_COLUMNS: &[Column] = &[
    col(
        "name",
        &[
            "name",
            "recipe name",
            "recipe",
            "cocktail",
            "cocktail name",
            "drink",
            "drink name",
        ],
    ),
    Column {
        key: "ingredients",
        headers: &["ingredients", "items", "recipe items", "components"],
        list: true,
    },
    col(
        "instructions",
        &[
            "instructions",
            "method",
            "directions",
            "steps",
            "how to make",
            "preparation",
            "recipe",
        ],
    ),
    col(
        "glass",
        &[
            "glass",
            "glass type",
            "glassware",
            "serve in",
            "serving glass",
        ],
    ),
    col(
        "category",
        &["category", "type", "style", "drink type", "classification"],
    ),
];

/// What an upload carried: the file's bytes and the other form fields.
pub struct Upload {
    pub file: Vec<u8>,
    pub fields: Vec<(String, String)>,
}

impl Upload {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn upload_error(message: &str, detail: impl Into<String>) -> ApiError {
    ApiError::validation(message, vec![detail.into()])
}

/// Reads a `multipart/form-data` body; a missing file, a file over 5 MB or a broken body is a
/// 400 naming the problem.
pub fn upload(req: &Request) -> Result<Upload, ApiError> {
    let boundary = req
        .header("content-type")
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            upload_error(
                "Expected a multipart/form-data upload",
                "content-type: multipart/form-data with a boundary, the CSV in the field 'file'",
            )
        })?;
    let limits = multer::SizeLimit::new()
        .for_field("file", MAX_FILE_BYTES)
        .per_field(MAX_TEXT_FIELD_BYTES);
    let body = bytes::Bytes::copy_from_slice(&req.body);
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut form = multer::Multipart::with_constraints(
        stream,
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    // The whole body is in memory already: the parser's futures never wait on anything.
    futures::executor::block_on(async {
        let mut file = None;
        let mut fields = Vec::new();
        while let Some(field) = form.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_string();
            let data = field.bytes().await.map_err(multipart_error)?;
            if name == "file" {
                file.get_or_insert(data.to_vec());
            } else {
                fields.push((name, String::from_utf8_lossy(&data).into_owned()));
            }
        }
        let file = file.ok_or_else(|| ApiError::bad_request("No file uploaded"))?;
        Ok(Upload { file, fields })
    })
}

fn multipart_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. }
            if field_name.as_deref() == Some("file") =>
        {
            upload_error("File too large", "file: at most 5 MB")
        }
        multer::Error::FieldSizeExceeded { field_name, .. } => upload_error(
            "Form field too large",
            format!(
                "{}: at most {MAX_TEXT_FIELD_BYTES} bytes",
                field_name.unwrap_or_default()
            ),
        ),
        e => upload_error("Malformed multipart/form-data body", e.to_string()),
    }
}

/// One data row: its line in the file (the header is line 1) and its values by API key.
pub struct Row {
    pub line: u64,
    pub values: Map<String, Json>,
}

/// Parses the file: a header row, then at most [`MAX_ROWS`] rows. An unreadable file, an
/// empty one or one with too many rows is refused whole.
pub fn rows(file: &[u8], columns: &[Column]) -> Result<Vec<Row>, ApiError> {
    let file = file.strip_prefix(b"\xef\xbb\xbf").unwrap_or(file);
    let parse_error = |e: csv::Error| upload_error("Failed to parse CSV file", e.to_string());
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers: Vec<String> = reader
        .headers()
        .map_err(parse_error)?
        .iter()
        .map(str::to_lowercase)
        .collect();
    // For each column, the positions of the headers it may be read from, in preference order.
    let sources: Vec<Vec<usize>> = columns
        .iter()
        .map(|c| {
            c.headers
                .iter()
                .filter_map(|h| headers.iter().position(|x| x == h))
                .collect()
        })
        .collect();
    let mut rows = Vec::new();
    // Lines are counted from the bytes: the reader's own line count misses skipped blank lines.
    let (mut counted_to, mut line) = (0usize, 1u64);
    for record in reader.records() {
        let record = record.map_err(parse_error)?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(upload_error(
                "Too many rows",
                format!("at most {MAX_ROWS} rows per import"),
            ));
        }
        let mut values = Map::new();
        for (column, positions) in columns.iter().zip(&sources) {
            let cell = positions
                .iter()
                .filter_map(|&i| record.get(i))
                .find(|v| !v.is_empty());
            if let Some(cell) = cell {
                let value = if column.list {
                    Json::Array(split_list(cell).map(|s| Json::String(s.into())).collect())
                } else {
                    Json::String(cell.to_string())
                };
                values.insert(column.key.to_string(), value);
            }
        }
        // The reader's position is where it began reading, before the blank lines it skipped.
        let mut start = record
            .position()
            .map_or(counted_to, |p| {
                usize::try_from(p.byte()).unwrap_or(usize::MAX)
            })
            .clamp(counted_to, file.len());
        while file.get(start).is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            start += 1;
        }
        line += file[counted_to..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        counted_to = start;
        rows.push(Row { line, values });
    }
    if rows.is_empty() {
        return Err(ApiError::bad_request("CSV file is empty"));
    }
    Ok(rows)
}

/// AlcheMix's rule: the first of `;`, `|` or a new line the cell holds separates its items,
/// otherwise commas do.
fn split_list(cell: &str) -> impl Iterator<Item = &str> {
    let sep = [';', '|', '\n']
        .into_iter()
        .find(|c| cell.contains(*c))
        .unwrap_or(',');
    cell.split(sep).map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(parts: &[(&str, &str)]) -> Request {
        let mut body = String::new();
        for (name, value) in parts {
            body.push_str(&format!(
                "--XyZ\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"a.csv\"\r\n\
                 content-type: text/csv\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str("--XyZ--\r\n");
        Request {
            method: "POST".into(),
            headers: vec![(
                "content-type".into(),
                "multipart/form-data; boundary=XyZ".into(),
            )],
            body: body.into_bytes(),
            ..Request::default()
        }
    }

    #[test]
    fn uploads() {
        let up = upload(&multipart(&[
            ("collection_id", "7"),
            ("file", "name\nGin\n"),
        ]))
        .unwrap();
        assert_eq!(up.file, b"name\nGin\n");
        assert_eq!(up.field("collection_id"), Some("7"));
        let e = upload(&multipart(&[("other", "x")])).err().unwrap();
        assert_eq!(e, ApiError::bad_request("No file uploaded"));
        let plain = Request {
            headers: vec![("content-type".into(), "application/json".into())],
            ..Request::default()
        };
        assert_eq!(upload(&plain).err().unwrap().status(), 400);
        let big = "a".repeat(MAX_FILE_BYTES as usize + 1);
        let e = upload(&multipart(&[("file", &big)])).err().unwrap();
        assert!(
            matches!(e, ApiError::BadRequest { ref message, .. } if message == "File too large")
        );
    }

    #[test]
    fn rows_by_header_aliases_with_their_lines() {
        let csv = "\u{feff}Brand,ABV,Stock\n\"Maker's Mark\",45,2\n\n,,\nRye,\"50.5\",\n\n\"Multi\nline\",1,\nLast,,,\n";
        let rows = rows(csv.as_bytes(), BOTTLE_COLUMNS).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].line, 2);
        assert_eq!((rows[2].line, rows[3].line), (7, 9));
        assert_eq!(rows[0].values["name"], "Maker's Mark");
        assert_eq!(rows[0].values["ABV (%)"], "45");
        assert_eq!(rows[0].values["Stock Number"], "2");
        assert_eq!(rows[1].line, 5);
        assert!(!rows[1].values.contains_key("Stock Number"));
    }

    #[test]
    fn ingredients_split_like_alchemix() {
        let csv = "name,ingredients\nA,\"gin; tonic\"\nB,\"rum, lime\"\nC,\"x|y, z\"\n";
        let rows = rows(csv.as_bytes(), RECIPE_COLUMNS).unwrap();
        let list = |i: usize| rows[i].values["ingredients"].clone();
        assert_eq!(list(0), serde_json::json!(["gin", "tonic"]));
        assert_eq!(list(1), serde_json::json!(["rum", "lime"]));
        assert_eq!(list(2), serde_json::json!(["x", "y, z"]));
    }

    #[test]
    fn empty_and_oversized_files_are_refused() {
        assert_eq!(
            rows(b"name\n", BOTTLE_COLUMNS).err().unwrap(),
            ApiError::bad_request("CSV file is empty")
        );
        let many = format!("name\n{}", "x\n".repeat(MAX_ROWS + 1));
        assert!(matches!(
            rows(many.as_bytes(), BOTTLE_COLUMNS).err().unwrap(),
            ApiError::BadRequest { ref message, .. } if message == "Too many rows"
        ));
        let exact = format!("name\n{}", "x\n".repeat(MAX_ROWS));
        assert_eq!(
            rows(exact.as_bytes(), BOTTLE_COLUMNS).unwrap().len(),
            MAX_ROWS
        );
    }
}
