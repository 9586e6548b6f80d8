//! Decoding a plugin's configuration.
//!
//! The host hands every plugin its `config` table from pipeline.toml as a JSON
//! object (`{}` when there is none). Plugins decode it into a serde struct,
//! normally with `#[serde(deny_unknown_fields)]`, and check the values with
//! their own code; [`key_error`] formats such a reason the same way.

use serde::de::DeserializeOwned;

/// Decodes a configuration JSON object into `T`.
///
/// An empty or all-whitespace string counts as `{}`. The error names the
/// offending key where serde can tell it, e.g.
/// ``invalid config: key `malformed_rate`: invalid type: string "x", expected f64``
/// or ``invalid config: unknown field `foo`, expected one of `pairs`, `malformed_rate` ``.
pub fn config<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    if !json.trim_start().starts_with('{') {
        return Err("invalid config: expected a JSON object".to_string());
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = describe(err.inner());
        if path.is_empty() || path == "." {
            format!("invalid config: {inner}")
        } else {
            format!("invalid config: key `{path}`: {inner}")
        }
    })?;
    de.end()
        .map_err(|err| format!("invalid config: {}", describe(&err)))?;
    Ok(value)
}

/// Reads the plugin's configuration from the host and decodes it with
/// [`config`]. **Wasm only**: calls the `host.config` import.
pub fn load_config<T: DeserializeOwned>() -> Result<T, String> {
    config(&crate::host::config())
}

/// A configuration error about `key`, worded like the ones [`config`] returns.
pub fn key_error(key: &str, message: impl std::fmt::Display) -> String {
    format!("invalid config: key `{key}`: {message}")
}

/// A parser's `dataset` key as the name its events carry (shared by every
/// event: cloning it is a reference count); refused when blank.
pub fn dataset_name(dataset: &str) -> Result<crate::types::Name, String> {
    if dataset.trim().is_empty() {
        return Err(key_error("dataset", "must not be empty"));
    }
    Ok(crate::types::Name::from(dataset.to_string()))
}

/// serde_json's message without the trailing " at line L column C": the JSON
/// comes from the host, so positions in it mean nothing to the user.
fn describe(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default)]
        pairs: Option<Vec<String>>,
        #[serde(default)]
        malformed_rate: f64,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        depth: u32,
    }

    #[test]
    fn a_dataset_must_not_be_blank() {
        assert_eq!(dataset_name("fx").unwrap(), "fx");
        assert_eq!(
            dataset_name(" ").unwrap_err(),
            "invalid config: key `dataset`: must not be empty"
        );
    }

    #[test]
    fn empty_object_and_empty_string_give_defaults() {
        let expected = Conf {
            pairs: None,
            malformed_rate: 0.0,
            nested: None,
        };
        assert_eq!(config::<Conf>("{}").unwrap(), expected);
        assert_eq!(config::<Conf>("").unwrap(), expected);
        assert_eq!(config::<Conf>("  \n").unwrap(), expected);
    }

    #[test]
    fn decodes_values() {
        let c: Conf = config(r#"{"pairs":["EUR/USD"],"malformed_rate":0.5}"#).unwrap();
        assert_eq!(c.pairs.unwrap(), vec!["EUR/USD".to_string()]);
        assert_eq!(c.malformed_rate, 0.5);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = config::<Conf>(r#"{"pair":["EUR/USD"]}"#).unwrap_err();
        assert!(err.starts_with("invalid config: "), "{err}");
        assert!(err.contains("unknown field `pair`"), "{err}");
        assert!(!err.contains("line 1"), "{err}");
    }

    #[test]
    fn mistyped_key_is_named() {
        let err = config::<Conf>(r#"{"malformed_rate":"high"}"#).unwrap_err();
        assert!(err.contains("key `malformed_rate`"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
        let err = config::<Conf>(r#"{"pairs":["A",3]}"#).unwrap_err();
        assert!(err.contains("key `pairs[1]`"), "{err}");
        let err = config::<Conf>(r#"{"nested":{"depth":-1}}"#).unwrap_err();
        assert!(err.contains("key `nested.depth`"), "{err}");
    }

    #[test]
    fn not_an_object_or_trailing_garbage() {
        assert_eq!(
            config::<Conf>("[]").unwrap_err(),
            "invalid config: expected a JSON object"
        );
        assert!(config::<Conf>("3").is_err());
        assert!(config::<Conf>("{} x").is_err());
        assert!(config::<Conf>("{").is_err());
    }

    #[test]
    fn key_error_format() {
        assert_eq!(
            key_error("pairs", "must not be empty"),
            "invalid config: key `pairs`: must not be empty"
        );
    }
}
