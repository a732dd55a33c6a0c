//! The headers between edge-guard and the app behind it (Spin 4.1 middleware): what the guard
//! verified, on the request, and what the app tells the guard, on its answer. Both sides read
//! these names; neither imports the other.

/// Every request header of this prefix is the guard's: any a client sent is removed before the
/// app sees the request, so the app can trust the ones it finds.
pub const IDENTITY_PREFIX: &str = "x-edge-";
/// The verified user (the token's `userId`), set only when the route asked for a token.
pub const USER_HEADER: &str = "x-edge-user-id";
/// The client's subject (its address, or its IPv6 subnet) as the limits named it.
pub const CLIENT_HEADER: &str = "x-edge-client";
/// The request's id, which the guard's response carries: the app logs under it.
pub const REQUEST_ID_HEADER: &str = "x-edge-request-id";
/// The database schema version the store vouches for, as the check read it: the app behind
/// skips its own check of the schema once some instance verified it.
pub const SCHEMA_HEADER: &str = "x-edge-schema";
/// The version of the user's data the check read (the page cache's tag), on a request that
/// may write: the app retires the user's cached pages from it, and hands the cache the page it
/// reads back after its write under the version that follows.
pub const DATA_VERSION_HEADER: &str = "x-edge-data-version";
/// Set by the app on its answer: the route pattern it matched, for the guard's request line
/// (the guard's own rules are coarser, and it never logs a raw path).
pub const ROUTE_HEADER: &str = "x-edge-route";
