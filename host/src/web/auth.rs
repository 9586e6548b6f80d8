//! API keys: the one check of both route tables. The web server's write
//! routes take `Authorization: Bearer <key>` or `X-Api-Key: <key>`; the
//! admin API's `POST /admin/reload` takes `Authorization: Bearer <key>`.
//! Either way every key is compared in constant time, without stopping
//! early; 401 without a key, 403 with one that matches none.

use std::path::Path;

use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;

use super::ApiError;

/// Which routes a key set guards: the headers it reads and its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    /// The web server's write routes (`[web] keys_env`, `keys_file`).
    Web,
    /// The admin API's reload (`[admin] keys_env`, `keys_file`).
    Admin,
}

pub struct Keys {
    keys: Vec<String>,
    /// Where keys come from, for the 403 message.
    source: String,
    realm: Realm,
}

/// Keys from the environment variable `env` (comma-separated) and from
/// `file` (one per line, `#` comments).
fn read(env: &str, file: Option<&Path>) -> anyhow::Result<Vec<String>> {
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

impl Keys {
    /// The keys of `realm`, from `env` and `file`.
    pub fn load(realm: Realm, env: &str, file: Option<&Path>) -> anyhow::Result<Self> {
        let keys = match realm {
            Realm::Web => read(env, file).map_err(|e| anyhow::anyhow!("web.keys_file: {e}"))?,
            Realm::Admin => read(env, file)?,
        };
        let source = match file {
            Some(f) => format!("${env} or {}", f.display()),
            None => format!("${env}"),
        };
        Ok(Self {
            keys,
            source,
            realm,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a request presents, as this realm reads it.
    fn given<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match self.realm {
            Realm::Admin => bearer,
            Realm::Web => bearer
                .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
                .map(str::trim)
                .filter(|g| !g.is_empty()),
        }
    }

    /// 401 without a key, 403 with one that matches none.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(given) = self.given(headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                match self.realm {
                    Realm::Web => {
                        "missing API key: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`"
                    }
                    Realm::Admin => "missing `Authorization: Bearer <key>`",
                },
            ));
        };
        // Every key is compared, without stopping early.
        let mut ok = subtle::Choice::from(0u8);
        for k in &self.keys {
            ok |= k.as_bytes().ct_eq(given.as_bytes());
        }
        if bool::from(ok) {
            return Ok(());
        }
        let message = match self.realm {
            Realm::Admin => "invalid admin key".to_string(),
            Realm::Web if self.keys.is_empty() => {
                format!("no API keys are configured (set {})", self.source)
            }
            Realm::Web => "invalid API key".to_string(),
        };
        Err(ApiError::new(StatusCode::FORBIDDEN, message))
    }
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

    fn keys(realm: Realm, keys: &[&str]) -> Keys {
        Keys {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            source: "$K".into(),
            realm,
        }
    }

    #[test]
    fn bearer_or_x_api_key_and_the_right_status_for_each_failure() {
        let keys = keys(Realm::Web, &["k1", "secret"]);
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
        let none = self::keys(Realm::Web, &[]);
        let e = none.check(&headers(&[("x-api-key", "x")])).unwrap_err();
        assert!(e.message.contains("$K"), "{}", e.message);
    }

    #[test]
    fn the_admin_realm_takes_a_bearer_key_only() {
        let keys = keys(Realm::Admin, &["k1", "secret-key"]);
        assert!(
            keys.check(&headers(&[("authorization", "Bearer secret-key")]))
                .is_ok()
        );
        let refusal = |h: &[(&str, &str)]| {
            let e = keys.check(&headers(h)).unwrap_err();
            (e.status, e.message)
        };
        assert_eq!(
            refusal(&[("x-api-key", "k1")]),
            (
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <key>`".to_string()
            )
        );
        assert_eq!(
            refusal(&[("authorization", "Bearer guess")]),
            (StatusCode::FORBIDDEN, "invalid admin key".to_string())
        );
        // Not trimmed, as before: the key must be sent exactly.
        assert_eq!(
            refusal(&[("authorization", "Bearer  k1")]).0,
            StatusCode::FORBIDDEN
        );
        let none = self::keys(Realm::Admin, &[]);
        let e = none
            .check(&headers(&[("authorization", "Bearer x")]))
            .unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::FORBIDDEN, "invalid admin key")
        );
    }
}
