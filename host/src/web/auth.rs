//! API keys for the write routes: `Authorization: Bearer <key>` or
//! `X-Api-Key: <key>`, compared in constant time against every key.

use std::path::Path;

use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;

use super::ApiError;

pub struct Keys {
    keys: Vec<String>,
    /// Where keys come from, for the 403 message.
    source: String,
}

impl Keys {
    /// Keys from the environment variable `env` (comma-separated) and from
    /// `file` (one per line, `#` comments).
    pub fn load(env: &str, file: Option<&Path>) -> anyhow::Result<Self> {
        let keys = load_keys(env, file).map_err(|e| anyhow::anyhow!("web.keys_file: {e}"))?;
        let source = match file {
            Some(f) => format!("${env} or {}", f.display()),
            None => format!("${env}"),
        };
        Ok(Self { keys, source })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// 401 without a key, 403 with one that matches none.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
        let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API key: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`",
            ));
        };
        // Every key is compared, without stopping early.
        let mut ok = subtle::Choice::from(0u8);
        for k in &self.keys {
            ok |= k.as_bytes().ct_eq(given.as_bytes());
        }
        if bool::from(ok) {
            Ok(())
        } else if self.keys.is_empty() {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("no API keys are configured (set {})", self.source),
            ))
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "invalid API key"))
        }
    }
}

/// Admin keys: from `env` (comma-separated) and `file` (one per line).
pub fn load_keys(env: &str, file: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = std::env::var(env)
        .unwrap_or_default()
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read admin keys from {}: {e}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_or_x_api_key_and_the_right_status_for_each_failure() {
        let keys = Keys {
            keys: vec!["k1".into(), "secret".into()],
            source: "$K".into(),
        };
        assert!(
            keys.check(&headers(&[("authorization", "Bearer secret")]))
                .is_ok()
        );
        assert!(keys.check(&headers(&[("x-api-key", "k1")])).is_ok());
        let status = |h: &[(&str, &str)]| keys.check(&headers(h)).unwrap_err().status;
        assert_eq!(status(&[]), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(&[("authorization", "Basic abc")]),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status(&[("x-api-key", "secre")]), StatusCode::FORBIDDEN);
        assert_eq!(
            status(&[("authorization", "Bearer secrets")]),
            StatusCode::FORBIDDEN
        );
        let none = Keys {
            keys: vec![],
            source: "$K".into(),
        };
        let e = none.check(&headers(&[("x-api-key", "x")])).unwrap_err();
        assert!(e.message.contains("$K"), "{}", e.message);
    }
}
