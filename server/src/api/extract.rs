//! Extractors whose rejections are the API's own error shape, naming the field at fault.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::listener::BodyTimeout;

/// Like `axum::Json`, but malformed bodies get `{"error","message","field"}`.
pub struct ApiJson<T>(pub T);

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Turns a serde error at `path` into the API error: syntax → 400, shape → 422 naming
/// the field.
fn classify(path: String, err: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let msg = err.to_string();
    // serde reports a missing field at its parent; name the field itself. (Unknown fields
    // are already reported at their own path.)
    let field = match msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        Some(name) if path == "." => name.to_string(),
        Some(name) => format!("{path}.{name}"),
        None if path == "." => String::new(),
        None => path,
    };
    let message = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    match err.classify() {
        Category::Data => Error::Invalid { field, message },
        Category::Syntax | Category::Eof | Category::Io => Error::BadRequest {
            code: "invalid_json",
            message: format!("malformed JSON: {msg}"),
            field: None,
        },
    }
}

/// Parses JSON bytes into `T`, naming the failing field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let read = |bytes: &[u8]| {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de)
    };
    match read(bytes) {
        Ok(value) => Ok(value),
        Err(e) => {
            // JSON Schema counts `7.0` as an integer, so a client may send whole numbers so.
            // Only a body refused for its shape is read again, with those as integers (as
            // bytes, through the same reader: no second deserializer per type in the binary).
            if e.inner().classify() == serde_json::error::Category::Data {
                let retry =
                    whole_floats_as_integers(bytes).and_then(|v| serde_json::to_vec(&v).ok());
                if let Some(Ok(value)) = retry.map(|b| read(&b)) {
                    return Ok(value);
                }
            }
            Err(classify(e.path().to_string(), e.inner()))
        }
    }
}

/// The body with every whole-number float (`7.0`, `1e3`) in integer range as an integer;
/// `None` when it has none.
fn whole_floats_as_integers(bytes: &[u8]) -> Option<serde_json::Value> {
    use serde_json::Value;
    fn walk(v: &mut Value) -> bool {
        match v {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Exactly representable: |f| < 2^63 (i64) or < 2^64 (u64).
                let whole = f.fract() == 0.0;
                if whole && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
                {
                    *v = Value::from(f as i64);
                    true
                } else if whole && (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    *v = Value::from(f as u64);
                    true
                } else {
                    false
                }
            }
            Value::Array(items) => items.iter_mut().fold(false, |c, i| walk(i) | c),
            Value::Object(map) => map.values_mut().fold(false, |c, i| walk(i) | c),
            _ => false,
        }
    }
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    walk(&mut value).then_some(value)
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !is_json(ct) {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge
            } else if timed_out(&e) {
                Error::TimedOut(BodyTimeout.to_string())
            } else {
                Error::BadRequest {
                    code: "invalid_body",
                    message: e.body_text(),
                    field: None,
                }
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Whether reading the body failed because its deadline passed (the listener's).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<BodyTimeout>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Like `axum::extract::Query`, with the API's error shape naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| Error::Invalid {
                field: e.path().to_string(),
                message: e.inner().to_string(),
            })
    }
}

/// The numeric id in a path (`/rules/{id}`): anything that is not one names no resource,
/// so it is a 404 like any unknown id, not a malformed request.
pub struct IdPath(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| Error::not_found("that id"))?;
        raw.parse()
            .map(IdPath)
            .map_err(|_| Error::not_found(format!("id {raw:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        mac: String,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        nics: Vec<Inner>,
        count: u32,
    }

    fn field_of(json: &str) -> (String, String) {
        match parse_json::<Outer>(json.as_bytes()) {
            Err(Error::Invalid { field, message }) => (field, message),
            Err(Error::BadRequest { code, .. }) => ("<bad>".into(), code.into()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"nics":[{"mac":1}],"count":1}"#).0,
            "nics[0].mac"
        );
        assert_eq!(field_of(r#"{"nics":[],"count":"x"}"#).0, "count");
        assert_eq!(field_of(r#"{"nics":[{}],"count":1}"#).0, "nics[0].mac");
        assert_eq!(field_of(r#"{"nics":[]}"#).0, "count");
        assert_eq!(
            field_of(r#"{"nics":[}"#),
            ("<bad>".into(), "invalid_json".into())
        );
    }

    #[test]
    fn whole_floats_are_integers() {
        let o: Outer = parse_json(br#"{"nics":[],"count":7.0}"#).unwrap();
        assert_eq!(o.count, 7);
        let o: Outer = parse_json(br#"{"nics":[],"count":1e3}"#).unwrap();
        assert_eq!(o.count, 1000);
        assert_eq!(field_of(r#"{"nics":[],"count":7.5}"#).0, "count");
        assert_eq!(field_of(r#"{"nics":[],"count":-1.0}"#).0, "count");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}
