//! [`Checker`]: collects every error of a file with its line and key, and
//! reads the value types every section shares (durations, sizes, ranges,
//! names).

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::{parse_duration, parse_size};
use crate::config::{self, ConfigError};

/// Collects errors so all of them are reported at once.
pub(super) struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// The errors collected, if any.
    pub(super) fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    pub(super) fn line<T>(&self, v: &Spanned<T>) -> Option<usize> {
        let span = v.span();
        (span.end > 0).then(|| config::line_of(self.text, span.start))
    }

    pub(super) fn err(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            key: Some(key.to_string()),
            message: message.into(),
        });
    }

    /// An error at the line of `v` (when given).
    pub(super) fn err_at<T>(
        &mut self,
        v: Option<&Spanned<T>>,
        key: &str,
        message: impl Into<String>,
    ) {
        let line = v.and_then(|v| self.line(v));
        self.err(line, key, message);
    }

    pub(super) fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(v.get_ref()) {
            Ok(d) if d >= min => d,
            Ok(d) => {
                self.err(
                    self.line(v),
                    key,
                    format!("{d:?} is too short: at least {min:?}"),
                );
                default
            }
            Err(e) => {
                self.err(self.line(v), key, e);
                default
            }
        }
    }

    pub(super) fn size(&mut self, v: &Option<Spanned<String>>, key: &str, default: usize) -> usize {
        let Some(v) = v else { return default };
        match parse_size(v.get_ref()) {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                self.err(self.line(v), key, "must be more than 0 bytes");
                default
            }
            Err(e) => {
                self.err(self.line(v), key, e);
                default
            }
        }
    }

    pub(super) fn range(&mut self, v: &Spanned<u32>, key: &str, min: u32, max: u32) -> u32 {
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(
                self.line(v),
                key,
                format!("{n} is out of range: {min} to {max}"),
            );
            return n.clamp(min, max);
        }
        n
    }

    pub(super) fn opt_range(
        &mut self,
        v: &Option<Spanned<u32>>,
        key: &str,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        match v {
            Some(v) => self.range(v, key, min, max),
            None => default,
        }
    }

    pub(super) fn name(&mut self, name: &str, line: Option<usize>, key: &str) {
        let ok = !name.is_empty()
            && name.len() <= 80
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            self.err(
                line,
                key,
                format!("{name:?} is not a valid name: use 1-80 of a-z, 0-9, '-', '_'"),
            );
        }
    }

    /// Checks a resource name when the file (or the environment) gives one;
    /// names derived from `pipeline.name` are valid when it is.
    pub(super) fn given_name(&mut self, name: &Option<String>, key: &str) {
        if let Some(n) = name {
            self.name(n, None, key);
        }
    }

    /// A key prefix: not empty, ends with '/', no leading '/'.
    pub(super) fn prefix(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: &str,
    ) -> String {
        let Some(p) = v else {
            return default.to_string();
        };
        let s = p.get_ref();
        if s.is_empty() || !s.ends_with('/') || s.starts_with('/') {
            let line = self.line(p);
            self.err(
                line,
                key,
                format!(
                    "{s:?}: a prefix like {default:?} (not empty, ends with '/', no leading '/')"
                ),
            );
        }
        s.clone()
    }
}
