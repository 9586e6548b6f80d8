//! Decoding JSON records with errors that name the offending field.

use serde::Deserialize;
use serde_json::error::Category;

/// Decodes one JSON object into `T`, borrowing from `text` where `T` does.
///
/// Errors read `invalid JSON: …` for syntax errors and truncation,
/// ``field `bid`: invalid type: …`` when a field has the wrong type, and
/// ``missing field `bid` `` / ``duplicate field `bid` `` for those, and
/// ``invalid JSON in field `bid`: number out of range`` where a syntax error
/// sits inside a known field. Text that
/// is not a JSON object (an array, a number…) is refused up front, because
/// serde would otherwise accept an array in place of a struct.
pub fn decode_object<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, String> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Err(if trimmed.is_empty() {
            "invalid JSON: empty input".to_string()
        } else {
            "invalid JSON: expected an object".to_string()
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            Category::Data if !path.is_empty() && path != "." => {
                format!("field `{path}`: {inner}")
            }
            Category::Data => inner.to_string(),
            Category::Syntax if !path.is_empty() && path != "." => {
                format!("invalid JSON in field `{path}`: {inner}")
            }
            Category::Syntax | Category::Eof | Category::Io => format!("invalid JSON: {inner}"),
        }
    })?;
    de.end().map_err(|err| format!("invalid JSON: {err}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[derive(Debug, Deserialize)]
    struct Quote<'a> {
        #[serde(borrow)]
        pair: Cow<'a, str>,
        bid: f64,
    }

    #[test]
    fn decodes_and_borrows() {
        let q: Quote = decode_object(r#"{"pair":"EUR/USD","bid":1.5,"extra":[1]}"#).unwrap();
        assert!(matches!(q.pair, Cow::Borrowed("EUR/USD")));
        assert_eq!(q.bid, 1.5);
        let q: Quote = decode_object(r#" {"pair":"EUR\/USD","bid":2}"#).unwrap();
        assert_eq!(q.pair, "EUR/USD");
        assert_eq!(q.bid, 2.0);
    }

    #[test]
    fn errors_name_the_field() {
        let err = decode_object::<Quote>(r#"{"pair":"EUR/USD","bid":"x"}"#).unwrap_err();
        assert!(err.starts_with("field `bid`: invalid type"), "{err}");
        let err = decode_object::<Quote>(r#"{"pair":"EUR/USD"}"#).unwrap_err();
        assert!(err.starts_with("missing field `bid`"), "{err}");
        let err = decode_object::<Quote>(r#"{"pair":"A","pair":"B","bid":1}"#).unwrap_err();
        assert!(err.starts_with("duplicate field `pair`"), "{err}");
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            r#"{"pair":"EUR/USD","bi"#,
            r#"{"pair":}"#,
            r#"{"pair":"A","bid":1} x"#,
            "",
        ] {
            let err = decode_object::<Quote>(bad).unwrap_err();
            assert!(err.starts_with("invalid JSON"), "{bad}: {err}");
        }
        let err = decode_object::<Quote>(r#"{"pair":"A","bid":1e999}"#).unwrap_err();
        assert!(
            err.starts_with("invalid JSON in field `bid`: number out of range"),
            "{err}"
        );
        let err = decode_object::<Quote>(r#"["EUR/USD",1.0]"#).unwrap_err();
        assert_eq!(err, "invalid JSON: expected an object");
    }
}
