//! `POST /v1/feeds/{feed}/records`: raw log lines from clients onto the
//! stream. The body is one line or several separated by `\n` (a trailing
//! `\r` is dropped, blank lines are skipped). The lines of a request go
//! into one aggregated stream record ([`crate::wire::aggregate`]; several
//! past its 1 MiB cap, and a lone line as a plain record) under
//! `<feed>:<key>`, the key from `X-Partition-Key` or `?key=`, else a hash of
//! the record's content so requests spread over the shards. The processor
//! unpacks it into one record per line. A body of more than
//! `web.max_request_lines` lines gets 413; an aggregate holds at most
//! `web.max_aggregate_lines` (more make several records); a key longer than
//! 256 bytes with its `<feed>:` (Kinesis' limit) gets 400. 202 with the
//! counts once every line
//! is stored; 503 when the stream did not store them (retry). A 408 (the
//! request timeout ran out while the lines waited for their commit) may
//! still have stored them: a retry is at-least-once.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, Shared};
use crate::backend::StreamRecord;
use crate::telemetry::stats::Stats;
use crate::wire::aggregate;
use crate::wire::message::stream_key;

#[derive(Debug, Deserialize)]
pub struct IngestQuery {
    key: Option<String>,
}

/// The 202 body (a struct: no JSON map built per request).
#[derive(Serialize)]
struct Answer<'a> {
    accepted: u64,
    bytes: usize,
    feed: &'a str,
}

/// Records a response accepted, for the request log.
#[derive(Debug, Clone, Copy)]
pub struct Accepted(pub u64);

/// Reads a body of at most `limit` bytes: 413 past it.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than web.body_limit ({limit} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Splits a body into its lines: `\n`-separated, `\r` trimmed, blanks skipped.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
}

/// A client's partition key: not empty, and `<feed>:<key>` within
/// Kinesis' 256 bytes ([`aggregate::MAX_KEY_BYTES`]), so a key is never
/// copied at great length into every line the processor unpacks.
fn check_key(feed: &str, from: &str, key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the partition key ({from}) is empty"
        )));
    }
    let max = aggregate::MAX_KEY_BYTES.saturating_sub(feed.len() + 1);
    if key.len() > max {
        return Err(ApiError::bad_request(format!(
            "the partition key ({from}) is {} bytes; at most {max} for feed {feed:?} \
             (the stream key \"{feed}:<key>\" is at most {} bytes, Kinesis' limit)",
            key.len(),
            aggregate::MAX_KEY_BYTES
        )));
    }
    Ok(())
}

pub async fn ingest(
    State(s): State<Shared>,
    Path(feed): Path<String>,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    s.keys.check(&headers)?;
    let ingested = s.feeds.load().get(&feed)?.ingested.clone();
    let body = read_body(body, &headers, s.body_limit).await?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: send one log line, or several separated by newlines",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not valid UTF-8 (at byte {}): log lines must be text",
            e.valid_up_to()
        ))
    })?;
    let header_key = headers
        .get("x-partition-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("X-Partition-Key is not visible ASCII"))
        })
        .transpose()?;
    let fixed_key = match (header_key, q.key.as_deref()) {
        (Some(k), _) => Some(("X-Partition-Key", k)),
        (None, Some(k)) => Some(("?key=", k)),
        (None, None) => None,
    };
    if let Some((from, key)) = fixed_key {
        check_key(&feed, from, key)?;
    }
    if lines(text).nth(s.max_request_lines).is_some() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body holds more than web.max_request_lines ({}) lines: \
                 send them in several requests",
                s.max_request_lines
            ),
        ));
    }
    let packed = aggregate::pack_bounded(
        lines(text).map(str::as_bytes),
        text.len(),
        aggregate::MAX_RECORD_BYTES,
        s.max_aggregate_lines,
    );
    if packed.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: only blank lines; send one log line, or several separated by newlines",
        ));
    }
    let n: u64 = packed.iter().map(|p| p.lines as u64).sum();
    let records: Vec<StreamRecord> = packed
        .into_iter()
        .map(|p| StreamRecord {
            partition_key: match fixed_key {
                Some((_, k)) => stream_key(&feed, k),
                None => stream_key(&feed, &p.content_key()),
            },
            data: p.data,
        })
        .collect();
    s.producer.put(records).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the stream did not store the records (retry): {e}"),
        )
    })?;
    Stats::add(&s.stats.ingested, n);
    ingested.increment(n);
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(Answer {
            accepted: n,
            bytes: body.len(),
            feed: &feed,
        }),
    )
        .into_response();
    resp.extensions_mut().insert(Accepted(n));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_newlines_trim_cr_and_skip_blanks() {
        let got: Vec<&str> = lines("a\r\nb\n\n  \nc").collect();
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!(lines("one").count(), 1);
        assert_eq!(lines("\n\r\n").count(), 0);
    }

    #[test]
    fn content_keys_are_stable_and_spread() {
        let key = |text: &str| {
            aggregate::pack(
                lines(text).map(str::as_bytes),
                text.len(),
                aggregate::MAX_RECORD_BYTES,
            )[0]
            .content_key()
        };
        assert_eq!(key("x\ny"), key("x\ny"));
        assert_ne!(key("x\ny"), key("x\nz"));
        assert_ne!(key("x"), key("y"));
    }
}
