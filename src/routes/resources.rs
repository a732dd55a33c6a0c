//! The user's bar: inventory, recipes, favorites and collections, described as data and served
//! by one set of scoped CRUD handlers. Every query carries `user_id = ?`, so another user's row
//! is indistinguishable from a missing one.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::api::Ctx;
use crate::db::{Database, DbError, Value};
use crate::error::ApiError;
use crate::http::{json_object, Request, Response};
use crate::routes::import;
use crate::validate::{check_body, Field, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Inventory,
    Recipes,
    Favorites,
    Collections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    List,
    Create,
    Update(i64),
    Delete(i64),
    /// `POST /api/<inventory|recipes>/import`: rows from an uploaded CSV file.
    Import,
    /// `DELETE /api/recipes/all`.
    DeleteAll,
}

/// How updates treat fields the body leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Update {
    /// A full replace: absent fields become NULL (AlcheMix inventory).
    Replace,
    /// Only the fields sent change.
    Partial,
    None,
}

struct Spec {
    table: &'static str,
    fields: &'static [Field],
    update: Update,
    paginated: bool,
    /// (referencing column, referenced table, message when it is not the caller's row)
    reference: Option<(&'static str, &'static str, &'static str)>,
    invalid_id: &'static str,
    not_found: &'static str,
    deleted: &'static str,
    list_extra: &'static str,
    /// Whether `POST …/import` takes a CSV file of rows (AlcheMix: inventory and recipes).
    importable: bool,
}

const fn text(key: &'static str, column: &'static str, max: usize) -> Field {
    Field {
        key,
        column,
        kind: Kind::Text(max),
        required: false,
    }
}

/// The non-blank text every resource is named by (its key is also its column).
const fn required_text(key: &'static str, max: usize) -> Field {
    Field {
        key,
        column: key,
        kind: Kind::Text(max),
        required: true,
    }
}

const BOTTLE_FIELDS: &[Field] = &[
    required_text("name", 255),
    Field {
        key: "Stock Number",
        column: "\"Stock Number\"",
        kind: Kind::Int(0, 999_999),
        required: false,
    },
    text("Liquor Type", "\"Liquor Type\"", 100),
    text(
        "Detailed Spirit Classification",
        "\"Detailed Spirit Classification\"",
        200,
    ),
    text("Distillation Method", "\"Distillation Method\"", 100),
    Field {
        key: "ABV (%)",
        column: "\"ABV (%)\"",
        kind: Kind::Real(0.0, 100.0),
        required: false,
    },
    text("Distillery Location", "\"Distillery Location\"", 200),
    text(
        "Age Statement or Barrel Finish",
        "\"Age Statement or Barrel Finish\"",
        200,
    ),
    text("Additional Notes", "\"Additional Notes\"", 2000),
    text("Profile (Nose)", "\"Profile (Nose)\"", 500),
    text("Palate", "\"Palate\"", 500),
    text("Finish", "\"Finish\"", 500),
];

const RECIPE_FIELDS: &[Field] = &[
    required_text("name", 255),
    Field {
        key: "ingredients",
        column: "ingredients",
        kind: Kind::StringList,
        required: false,
    },
    text("instructions", "instructions", 2000),
    text("glass", "glass", 100),
    text("category", "category", 100),
    Field {
        key: "collection_id",
        column: "collection_id",
        kind: Kind::Ref,
        required: false,
    },
];

const FAVORITE_FIELDS: &[Field] = &[
    required_text("recipe_name", 255),
    Field {
        key: "recipe_id",
        column: "recipe_id",
        kind: Kind::Ref,
        required: false,
    },
];

const COLLECTION_FIELDS: &[Field] = &[
    required_text("name", 100),
    text("description", "description", 500),
];

fn spec(resource: Resource) -> &'static Spec {
    const INVENTORY: Spec = Spec {
        table: "bottles",
        fields: BOTTLE_FIELDS,
        update: Update::Replace,
        paginated: true,
        reference: None,
        invalid_id: "Invalid bottle ID",
        not_found: "Bottle not found",
        deleted: "Bottle deleted successfully",
        list_extra: "",
        importable: true,
    };
    const RECIPES: Spec = Spec {
        table: "recipes",
        fields: RECIPE_FIELDS,
        update: Update::Partial,
        paginated: true,
        reference: Some((
            "collection_id",
            "collections",
            "Collection not found or access denied",
        )),
        invalid_id: "Invalid recipe ID",
        not_found: "Recipe not found or access denied",
        deleted: "Recipe deleted successfully",
        list_extra: "",
        importable: true,
    };
    const FAVORITES: Spec = Spec {
        table: "favorites",
        fields: FAVORITE_FIELDS,
        update: Update::None,
        paginated: false,
        reference: Some(("recipe_id", "recipes", "Invalid recipe ID")),
        invalid_id: "Invalid favorite ID",
        not_found: "Favorite not found",
        deleted: "Favorite removed successfully",
        list_extra: "",
        importable: false,
    };
    const COLLECTIONS: Spec = Spec {
        table: "collections",
        fields: COLLECTION_FIELDS,
        update: Update::Partial,
        paginated: false,
        reference: None,
        invalid_id: "Invalid collection ID",
        not_found: "Collection not found or access denied",
        deleted: "Collection deleted successfully",
        list_extra: ", (SELECT COUNT(*) FROM recipes r WHERE r.collection_id = t.id AND r.user_id = t.user_id) AS recipe_count",
        importable: false,
    };
    match resource {
        Resource::Inventory => &INVENTORY,
        Resource::Recipes => &RECIPES,
        Resource::Favorites => &FAVORITES,
        Resource::Collections => &COLLECTIONS,
    }
}

/// The fields a resource's bodies may carry.
pub fn fields(resource: Resource) -> &'static [Field] {
    spec(resource).fields
}

/// Maps `/api/<resource>[/<id>]` and a method to an action; `None` when the path is unknown.
pub fn resolve(method: &str, path: &str) -> Option<Result<(Resource, Action), ApiError>> {
    let rest = path.strip_prefix("/api/")?;
    let (name, id) = match rest.split_once('/') {
        Some((name, id)) => (name, Some(id)),
        None => (rest, None),
    };
    let resource = match name {
        "inventory" => Resource::Inventory,
        "recipes" => Resource::Recipes,
        "favorites" => Resource::Favorites,
        "collections" => Resource::Collections,
        _ => return None,
    };
    let spec = spec(resource);
    let sub = |allowed: &'static str, action: Action| {
        if method == allowed {
            Ok(action)
        } else {
            Err(ApiError::MethodNotAllowed(allowed))
        }
    };
    let item_methods = if spec.update == Update::None {
        "DELETE"
    } else {
        "PUT, DELETE"
    };
    let action = match (method, id) {
        ("GET" | "HEAD", None) => Ok(Action::List),
        ("POST", None) => Ok(Action::Create),
        (_, None) => Err(ApiError::MethodNotAllowed("GET, HEAD, POST")),
        (_, Some(id)) if id.contains('/') => return None,
        (_, Some("import")) if spec.importable => sub("POST", Action::Import),
        (_, Some("all")) if resource == Resource::Recipes => sub("DELETE", Action::DeleteAll),
        ("PUT", Some(_)) if spec.update == Update::None => {
            Err(ApiError::MethodNotAllowed(item_methods))
        }
        ("PUT" | "DELETE", Some(id)) => match crate::validate::id(id) {
            Some(id) if method == "PUT" => Ok(Action::Update(id)),
            Some(id) => Ok(Action::Delete(id)),
            None => Err(ApiError::bad_request(spec.invalid_id)),
        },
        (_, Some(_)) => Err(ApiError::MethodNotAllowed(item_methods)),
    };
    Some(action.map(|a| (resource, a)))
}

fn columns(spec: &Spec) -> String {
    let mut cols = String::from("t.id, t.user_id");
    for f in spec.fields {
        cols.push_str(", t.");
        cols.push_str(f.column);
    }
    cols.push_str(", t.created_at");
    cols.push_str(spec.list_extra);
    cols
}

/// Rows written straight out as JSON objects under the API's keys (no intermediate tree:
/// list pages are the hot path), with stored lists parsed back.
struct RowsOut<'a> {
    spec: &'a Spec,
    rows: &'a [Vec<Value>],
}

struct RowOut<'a> {
    spec: &'a Spec,
    row: &'a [Value],
}

impl Serialize for RowsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.rows.iter().map(|row| RowOut {
            spec: self.spec,
            row,
        }))
    }
}

impl Serialize for RowOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.row.len()))?;
        let mut values = self.row.iter();
        let mut next = || values.next().unwrap_or(&Value::Null);
        map.serialize_entry("id", next())?;
        map.serialize_entry("user_id", next())?;
        for f in self.spec.fields {
            match (f.kind, next()) {
                (Kind::StringList, Value::Text(text)) => {
                    let list: Json = serde_json::from_str(text).unwrap_or_else(|_| json!([]));
                    map.serialize_entry(f.key, &list)?;
                }
                (_, value) => map.serialize_entry(f.key, value)?,
            }
        }
        map.serialize_entry("created_at", next())?;
        if !self.spec.list_extra.is_empty() {
            map.serialize_entry("recipe_count", next())?;
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    page: i64,
    limit: i64,
    total: i64,
    total_pages: i64,
    has_next_page: bool,
    has_previous_page: bool,
}

#[derive(Serialize)]
struct ListPage<'a> {
    success: bool,
    data: RowsOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination>,
}

pub fn dispatch(
    resource: Resource,
    action: Action,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response, ApiError> {
    let user = cx.user()?;
    let spec = spec(resource);
    match action {
        Action::List => list(spec, req, cx.db, user),
        Action::Create => create(spec, req, cx.db, user),
        Action::Update(id) => update(spec, id, req, cx.db, user),
        Action::Delete(id) => delete(spec, id, cx.db, user),
        Action::Import => import(resource, spec, req, cx.db, user),
        Action::DeleteAll => delete_all(spec, cx.db, user),
    }
}

/// The list a query-less GET of `resource` answers, and its page cache name: what a write
/// hands the cache. `None` for a list without pages that is longer than a write should read
/// back (an import of many favorites, one write each, must not read the whole list each time).
pub fn first_page(
    resource: Resource,
    db: &dyn Database,
    user: i64,
) -> Result<Option<(String, Vec<u8>)>, ApiError> {
    let spec = spec(resource);
    let name = first_page_name(resource);
    if spec.paginated {
        let first = Page {
            page: 1,
            limit: DEFAULT_LIMIT,
        };
        return Ok(Some((name, list_at(spec, Some(first), db, user)?.body)));
    }
    let rows = unpaged(spec, db, user, Some(READ_BACK_MAX_ROWS + 1))?;
    if rows.len() > READ_BACK_MAX_ROWS {
        return Ok(None);
    }
    Ok(Some((name, list_page(spec, &rows, None).body)))
}

/// The page cache's name of a query-less GET of `resource`'s list: its table, and for lists
/// with pages the first page at the default size (as the guard's rule for the list names it).
pub fn first_page_name(resource: Resource) -> String {
    let spec = spec(resource);
    if spec.paginated {
        format!("{}:1:{DEFAULT_LIMIT}", spec.table)
    } else {
        spec.table.to_string()
    }
}

/// The most rows of a list without pages a write reads back for the cache.
const READ_BACK_MAX_ROWS: usize = 100;

const DEFAULT_LIMIT: i64 = 50;

pub struct Page {
    pub page: i64,
    pub limit: i64,
}

/// `?page` (≥ 1, default 1) and `?limit` (1–100, default 50), as AlcheMix.
pub fn page(req: &Request) -> Result<Page, ApiError> {
    let parse = |name: &str, default: i64, max: i64, error: &str| -> Result<i64, ApiError> {
        match req.query_param(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|v| (1..=max).contains(v))
                .ok_or_else(|| {
                    ApiError::validation(
                        error,
                        vec![format!("{name} must be an integer between 1 and {max}")],
                    )
                }),
        }
    };
    Ok(Page {
        page: parse("page", 1, 1_000_000, "Invalid page parameter")?,
        limit: parse("limit", DEFAULT_LIMIT, 100, "Invalid limit parameter")?,
    })
}

fn list(spec: &Spec, req: &Request, db: &dyn Database, user: i64) -> Result<Response, ApiError> {
    let page = if spec.paginated {
        Some(page(req)?)
    } else {
        None
    };
    list_at(spec, page, db, user)
}

fn list_at(
    spec: &Spec,
    page: Option<Page>,
    db: &dyn Database,
    user: i64,
) -> Result<Response, ApiError> {
    let Some(Page { page, limit }) = page else {
        return Ok(list_page(spec, &unpaged(spec, db, user, None)?, None));
    };
    // One statement gives the page and the total; only a page past the end needs a count.
    // Under Spin every request compiles its statement on a new connection, so its shape is
    // chosen by compile cost: a scalar subquery, not `COUNT(*) OVER ()` (a third dearer), and
    // LIMIT as a literal, because a bound LIMIT makes SQLite compile the statement twice (it
    // replans once the value is bound). `limit` is an integer checked to 1..=100.
    let mut rows = db
        .execute(
            &format!(
                "SELECT {cols}, (SELECT COUNT(*) FROM {table} WHERE user_id = ?1) FROM {table} t \
                 WHERE t.user_id = ?1 ORDER BY t.created_at DESC, t.id DESC \
                 LIMIT {limit} OFFSET ?2",
                cols = columns(spec),
                table = spec.table
            ),
            &[Value::Int(user), Value::Int((page - 1) * limit)],
        )
        .map_err(ApiError::from)?;
    let total = match rows.rows.first() {
        Some(row) => row.last().and_then(Value::as_i64).unwrap_or(0),
        None => db
            .execute(
                &format!("SELECT COUNT(*) FROM {} WHERE user_id = ?", spec.table),
                &[Value::Int(user)],
            )
            .map_err(ApiError::from)?
            .first_i64()
            .unwrap_or(0),
    };
    for row in &mut rows.rows {
        row.pop();
    }
    let total_pages = (total + limit - 1) / limit;
    Ok(list_page(
        spec,
        &rows.rows,
        Some(Pagination {
            page,
            limit,
            total,
            total_pages,
            has_next_page: page < total_pages,
            has_previous_page: page > 1,
        }),
    ))
}

/// A list without pages, newest first; `cap` bounds the rows read (a literal: it is ours).
fn unpaged(
    spec: &Spec,
    db: &dyn Database,
    user: i64,
    cap: Option<usize>,
) -> Result<Vec<Vec<Value>>, ApiError> {
    let limit = cap.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let select = format!(
        "SELECT {} FROM {} t WHERE t.user_id = ? ORDER BY t.created_at DESC, t.id DESC{limit}",
        columns(spec),
        spec.table
    );
    Ok(db
        .execute(&select, &[Value::Int(user)])
        .map_err(ApiError::from)?
        .rows)
}

fn list_page(spec: &Spec, rows: &[Vec<Value>], pagination: Option<Pagination>) -> Response {
    Response::json(
        200,
        &ListPage {
            success: true,
            data: RowsOut { spec, rows },
            pagination,
        },
    )
}

fn body(req: &Request) -> Result<serde_json::Map<String, Json>, ApiError> {
    json_object(&req.body).ok_or_else(|| ApiError::bad_request("Invalid JSON body"))
}

fn checked(spec: &Spec, req: &Request, all: bool) -> Result<Vec<(Field, Value)>, ApiError> {
    check_body(spec.fields, &body(req)?, all)
        .map_err(|problems| ApiError::validation("Validation failed", problems))
}

/// A reference must name one of the caller's own rows: a 400, never a foreign-key 500.
fn check_reference(
    spec: &Spec,
    values: &[(Field, Value)],
    db: &dyn Database,
    user: i64,
) -> Result<(), ApiError> {
    let Some((column, table, message)) = spec.reference else {
        return Ok(());
    };
    let Some((_, Value::Int(id))) = values.iter().find(|(f, _)| f.column == column) else {
        return Ok(());
    };
    let found = db
        .execute(
            &format!("SELECT 1 FROM {table} WHERE id = ? AND user_id = ?"),
            &[Value::Int(*id), Value::Int(user)],
        )
        .map_err(ApiError::from)?;
    if found.rows.is_empty() {
        return Err(ApiError::validation(
            message,
            vec![format!("{column}: No such item")],
        ));
    }
    Ok(())
}

fn fetch(spec: &Spec, id: i64, db: &dyn Database, user: i64) -> Result<Json, ApiError> {
    let rows = db
        .execute(
            &format!(
                "SELECT {} FROM {} t WHERE t.id = ? AND t.user_id = ?",
                columns(spec),
                spec.table
            ),
            &[Value::Int(id), Value::Int(user)],
        )
        .map_err(ApiError::from)?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| ApiError::NotFound(spec.not_found.into()))?;
    serde_json::to_value(RowOut { spec, row }).map_err(|e| ApiError::Internal(e.to_string()))
}

fn create(spec: &Spec, req: &Request, db: &dyn Database, user: i64) -> Result<Response, ApiError> {
    let values = checked(spec, req, true)?;
    check_reference(spec, &values, db, user)?;
    let id = insert(spec, values, db, user)?;
    Ok(Response::data(201, fetch(spec, id, db, user)?))
}

/// Inserts one checked row of the caller's; returns its id.
fn insert(
    spec: &Spec,
    values: Vec<(Field, Value)>,
    db: &dyn Database,
    user: i64,
) -> Result<i64, ApiError> {
    let cols: Vec<&str> = values.iter().map(|(f, _)| f.column).collect();
    let marks = vec!["?"; values.len() + 1].join(", ");
    let mut params = vec![Value::Int(user)];
    params.extend(values.into_iter().map(|(f, v)| match (f.kind, v) {
        (Kind::StringList, Value::Null) => Value::Text("[]".into()),
        (_, v) => v,
    }));
    db.execute(
        &format!(
            "INSERT INTO {} (user_id, {}) VALUES ({marks}) RETURNING id",
            spec.table,
            cols.join(", ")
        ),
        &params,
    )
    .map_err(|e| write_error(spec, e))?
    .first_i64()
    .ok_or_else(|| ApiError::Internal("insert returned no id".into()))
}

/// A referenced row deleted between the reference check and the write (another request of
/// the same user) fails the foreign key: the same 400 the check gives, never a 500.
fn write_error(spec: &Spec, e: DbError) -> ApiError {
    match spec.reference {
        Some((column, _, message)) if e.is_foreign_key_violation() => {
            ApiError::validation(message, vec![format!("{column}: No such item")])
        }
        _ => ApiError::from(e),
    }
}

/// `POST …/import`: every row that passes the field rules is stored, all in one transaction,
/// and every other row is reported with its line; a file refused whole stores nothing.
fn import(
    resource: Resource,
    spec: &Spec,
    req: &Request,
    db: &dyn Database,
    user: i64,
) -> Result<Response, ApiError> {
    let upload = import::upload(req)?;
    let (columns, collection) = match resource {
        Resource::Recipes => (
            import::RECIPE_COLUMNS,
            import_collection(&upload, db, user)?,
        ),
        _ => (import::BOTTLE_COLUMNS, None),
    };
    let rows = import::rows(&upload.file, columns)?;
    let mut good = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for mut row in rows {
        if let Some(id) = collection {
            row.values.insert("collection_id".into(), json!(id));
        }
        match check_body(spec.fields, &row.values, true) {
            Ok(values) => good.push(values),
            Err(problems) => errors.push(json!({ "row": row.line, "error": problems.join(", ") })),
        }
    }
    let imported = good.len();
    crate::db::transaction(db, || {
        good.into_iter()
            .try_for_each(|values| insert(spec, values, db, user).map(drop))
    })?;
    let mut body = json!({
        "success": true,
        "imported": imported,
        // AlcheMix's client reads an inventory import's `count`.
        "count": imported,
        "failed": errors.len(),
    });
    if !errors.is_empty() {
        body["errors"] = Json::Array(errors);
    }
    Ok(Response::json(200, &body))
}

/// A recipe import's optional `collection_id` form field: one of the caller's collections.
fn import_collection(
    upload: &import::Upload,
    db: &dyn Database,
    user: i64,
) -> Result<Option<i64>, ApiError> {
    let raw = match upload.field("collection_id").map(str::trim) {
        None | Some("") => return Ok(None),
        Some(raw) => raw,
    };
    let Some(id) = crate::validate::id(raw) else {
        return Err(ApiError::validation(
            "Collection not found or access denied",
            vec!["collection_id: Must be a positive whole number".into()],
        ));
    };
    let field = RECIPE_FIELDS
        .iter()
        .find(|f| f.key == "collection_id")
        .copied()
        .ok_or_else(|| ApiError::Internal("recipes have no collection field".into()))?;
    check_reference(
        spec(Resource::Recipes),
        &[(field, Value::Int(id))],
        db,
        user,
    )?;
    Ok(Some(id))
}

/// `DELETE /api/recipes/all`: the caller's recipes; favorites that pointed at them keep their
/// name and lose the link (the foreign key's `ON DELETE SET NULL`), as in AlcheMix.
fn delete_all(spec: &Spec, db: &dyn Database, user: i64) -> Result<Response, ApiError> {
    let deleted = db
        .execute(
            &format!("DELETE FROM {} WHERE user_id = ? RETURNING id", spec.table),
            &[Value::Int(user)],
        )
        .map_err(ApiError::from)?
        .rows
        .len();
    let noun = if deleted == 1 { "recipe" } else { "recipes" };
    Ok(Response::json(
        200,
        &json!({ "success": true, "deleted": deleted, "message": format!("Deleted {deleted} {noun}") }),
    ))
}

fn update(
    spec: &Spec,
    id: i64,
    req: &Request,
    db: &dyn Database,
    user: i64,
) -> Result<Response, ApiError> {
    let values = checked(spec, req, spec.update == Update::Replace)?;
    if values.is_empty() {
        if spec.table == "collections" {
            return Err(ApiError::bad_request("No valid fields to update"));
        }
        return Ok(Response::data(200, fetch(spec, id, db, user)?));
    }
    check_reference(spec, &values, db, user)?;
    let sets: Vec<String> = values
        .iter()
        .map(|(f, _)| format!("{} = ?", f.column))
        .collect();
    let mut params: Vec<Value> = values
        .into_iter()
        .map(|(f, v)| match (f.kind, v) {
            (Kind::StringList, Value::Null) => Value::Text("[]".into()),
            (_, v) => v,
        })
        .collect();
    params.push(Value::Int(id));
    params.push(Value::Int(user));
    let updated = db
        .execute(
            &format!(
                "UPDATE {} SET {} WHERE id = ? AND user_id = ? RETURNING id",
                spec.table,
                sets.join(", ")
            ),
            &params,
        )
        .map_err(|e| write_error(spec, e))?;
    if updated.rows.is_empty() {
        return Err(ApiError::NotFound(spec.not_found.into()));
    }
    Ok(Response::data(200, fetch(spec, id, db, user)?))
}

fn delete(spec: &Spec, id: i64, db: &dyn Database, user: i64) -> Result<Response, ApiError> {
    let deleted = db
        .execute(
            &format!(
                "DELETE FROM {} WHERE id = ? AND user_id = ? RETURNING id",
                spec.table
            ),
            &[Value::Int(id), Value::Int(user)],
        )
        .map_err(ApiError::from)?;
    if deleted.rows.is_empty() {
        return Err(ApiError::NotFound(spec.not_found.into()));
    }
    Ok(Response::message(spec.deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution() {
        assert_eq!(
            resolve("GET", "/api/inventory").unwrap(),
            Ok((Resource::Inventory, Action::List))
        );
        assert_eq!(
            resolve("PUT", "/api/recipes/7").unwrap(),
            Ok((Resource::Recipes, Action::Update(7)))
        );
        assert_eq!(
            resolve("DELETE", "/api/favorites/3").unwrap(),
            Ok((Resource::Favorites, Action::Delete(3)))
        );
        assert_eq!(
            resolve("PUT", "/api/favorites/3").unwrap(),
            Err(ApiError::MethodNotAllowed("DELETE"))
        );
        assert_eq!(
            resolve("POST", "/api/recipes/import").unwrap(),
            Ok((Resource::Recipes, Action::Import))
        );
        assert_eq!(
            resolve("GET", "/api/inventory/import").unwrap(),
            Err(ApiError::MethodNotAllowed("POST"))
        );
        assert_eq!(
            resolve("DELETE", "/api/recipes/all").unwrap(),
            Ok((Resource::Recipes, Action::DeleteAll))
        );
        assert_eq!(
            resolve("POST", "/api/favorites/import").unwrap(),
            Err(ApiError::MethodNotAllowed("DELETE"))
        );
        assert_eq!(
            resolve("DELETE", "/api/inventory/all").unwrap(),
            Err(ApiError::bad_request("Invalid bottle ID"))
        );
        assert_eq!(
            resolve("PUT", "/api/inventory/abc").unwrap(),
            Err(ApiError::bad_request("Invalid bottle ID"))
        );
        assert_eq!(
            resolve("PATCH", "/api/inventory").unwrap(),
            Err(ApiError::MethodNotAllowed("GET, HEAD, POST"))
        );
        assert!(resolve("GET", "/api/nothing").is_none());
        assert!(resolve("GET", "/api/inventory/1/2").is_none());
    }
}
