//! The request log in PostgreSQL (the design's RDS), against the
//! throw-away server `tests/support/postgres.sh` starts: migrations, rows
//! per request, TLS as `sslmode` asks, and an untrusted certificate that
//! stops the start.

use std::process::Command;
use std::time::Duration;

use crate::pipeline::write_pipeline;
use crate::util::{cache_dir, wait_for};
use crate::web::{KEY, Server, auth, quote, web_section};

/// The PostgreSQL URL the test set-up exports (tests/support/postgres.sh).
fn postgres_url() -> Option<String> {
    let url = std::env::var("PIPEHOST_TEST_POSTGRES_URL").ok()?;
    Some(url).filter(|u| !u.is_empty())
}

/// The URL, or `None` after saying loudly that the test is skipped.
fn postgres_url_or_skip(test: &str) -> Option<String> {
    let url = postgres_url();
    if url.is_none() {
        eprintln!(
            "\n\n*** SKIPPED {test}: \
             PIPEHOST_TEST_POSTGRES_URL is not set (run through ./x test, which starts \
             a PostgreSQL with tests/support/postgres.sh) ***\n"
        );
    }
    url
}

/// The PEM file of the CA that signed the test server's certificate.
fn postgres_ca() -> String {
    std::env::var("PIPEHOST_TEST_POSTGRES_CA").expect(
        "PIPEHOST_TEST_POSTGRES_CA is not set: start the server with tests/support/postgres.sh",
    )
}

/// A fresh database per run: its name and URL.
fn fresh_database(admin_url: &str) -> (String, String) {
    let db = format!(
        "pipehost_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    pg(async {
        pg_client(admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap()
    });
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    (db, url)
}

/// pipehost's sessions on `db` (seen from the server): (how many, how
/// many of them over TLS).
fn pipehost_sessions(admin_url: &str, db: &str) -> (i64, i64) {
    pg(async {
        let row = pg_client(admin_url)
            .await
            .query_one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.application_name = 'pipehost' AND a.datname = $1",
                &[&db],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    })
}

fn pg<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(conn);
    client
}

#[test]
fn the_request_log_goes_to_postgres_with_migrations() {
    let Some(admin_url) = postgres_url_or_skip("the_request_log_goes_to_postgres_with_migrations")
    else {
        return;
    };
    let (_, url) = fresh_database(&admin_url);
    // No sslmode: `prefer`, and the test server offers TLS with a
    // certificate of its own CA, so the CA is given.
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "{}",
        &web_section(&format!(
            "request_log = {{ url_env = \"WEB_TEST_PG\", ca_file = {:?} }}",
            postgres_ca()
        )),
    );
    let start = || Server::start_with("serve", &pipeline, &[], &[("WEB_TEST_PG", &url)]);
    let server = start();
    let (k, v) = auth();
    let r = server.post(
        "/v1/feeds/forex/records",
        &[(k, v.as_str())],
        format!("{}\n{}", quote("PG", 1), quote("PG", 2)).as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        server.post("/v1/feeds/forex/records", &[], b"x").status,
        401
    );
    let rows = |sql: &'static str| {
        pg(async {
            pg_client(&url)
                .await
                .query_one(sql, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        })
    };
    assert!(
        wait_for(Duration::from_secs(30), || {
            rows(
            "SELECT COUNT(*) FROM request_log WHERE method = 'POST' AND path = '/v1/feeds/forex/records'
             AND status = 202 AND records = 2 AND client LIKE '127.0.0.1:%' AND latency_us > 0
             AND at > now() - interval '5 minutes'"
        ) == 1
        }),
        "{}",
        server.log()
    );
    assert!(wait_for(Duration::from_secs(30), || rows(
        "SELECT COUNT(*) FROM request_log WHERE status = 401"
    ) == 1));
    let r = server.get("/readyz");
    assert_eq!(r.json()["checks"]["request_log"], "ok", "{}", r.body);
    server.stop();

    // A second start applies no migration twice and keeps the rows.
    let server = start();
    assert_eq!(server.get("/healthz").status, 200);
    server.stop();
    assert_eq!(rows("SELECT COUNT(*)::BIGINT FROM schema_migrations"), 1);
    assert!(rows("SELECT COUNT(*) FROM request_log") >= 3);
}

#[test]
fn the_postgres_request_log_uses_tls_with_sslmode_require_and_not_with_disable() {
    let Some(admin_url) = postgres_url_or_skip(
        "the_postgres_request_log_uses_tls_with_sslmode_require_and_not_with_disable",
    ) else {
        return;
    };
    let (db, url) = fresh_database(&admin_url);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "{}",
        &web_section(&format!(
            "request_log = {{ url_env = \"WEB_TEST_PG\", ca_file = {:?} }}",
            postgres_ca()
        )),
    );
    let count = |status: i32| {
        pg(async {
            pg_client(&url)
                .await
                .query_one(
                    "SELECT COUNT(*) FROM request_log WHERE status = $1",
                    &[&status],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        })
    };
    // A role with a password (SCRAM, which tests/support/postgres.sh allows
    // over TLS only) owning the database: SCRAM-SHA-256-PLUS with the
    // certificate's channel binding, which `channel_binding=require` insists on.
    // First, so that the table is its own.
    pg(async {
        pg_client(&admin_url)
            .await
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE pipehost_scram LOGIN PASSWORD 'scram-pw';
                 EXCEPTION WHEN duplicate_object THEN NULL; END $$;
                 ALTER DATABASE {db} OWNER TO pipehost_scram"
            ))
            .await
            .unwrap()
    });
    let scram = url.replacen("postgres@", "pipehost_scram:scram-pw@", 1);
    for (mode, url, tls) in [
        ("require&channel_binding=require", &scram, true),
        ("require", &url, true),
        ("verify-full", &url, true),
        ("disable", &url, false),
    ] {
        let with_mode = format!("{url}?sslmode={mode}");
        let server = Server::start_with("serve", &pipeline, &[], &[("WEB_TEST_PG", &with_mode)]);
        let before = count(401);
        assert_eq!(
            server.post("/v1/feeds/forex/records", &[], b"x").status,
            401
        );
        assert!(
            wait_for(Duration::from_secs(30), || count(401) == before + 1),
            "sslmode={mode}: the entry is not written\n{}",
            server.log()
        );
        // Every session pipehost holds is (or is not) encrypted.
        let (sessions, encrypted) = pipehost_sessions(&admin_url, &db);
        assert!(sessions >= 1, "sslmode={mode}: no pipehost session");
        assert_eq!(
            encrypted,
            if tls { sessions } else { 0 },
            "sslmode={mode}: {encrypted} of {sessions} sessions over TLS"
        );
        server.stop();
        assert!(wait_for(Duration::from_secs(30), || {
            pipehost_sessions(&admin_url, &db).0 == 0
        }));
    }
}

#[test]
fn a_postgres_server_whose_certificate_is_not_trusted_stops_the_start() {
    let Some(admin_url) =
        postgres_url_or_skip("a_postgres_server_whose_certificate_is_not_trusted_stops_the_start")
    else {
        return;
    };
    let (_, url) = fresh_database(&admin_url);
    // A password (trust auth ignores it) that must not be printed.
    let url = url.replacen("postgres@", "postgres:s3cret-pw@", 1);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "{}",
        &web_section("request_log = { url_env = \"WEB_TEST_PG\" }"),
    );
    // `require`, and no sslmode (`prefer`: the server offers TLS, so it is
    // verified like any other; no quiet fallback to plaintext).
    for with_mode in [format!("{url}?sslmode=require"), url.clone()] {
        let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
            .arg("serve")
            .arg(&pipeline)
            .env("PIPEHOST_CACHE_DIR", cache_dir())
            .env("WEB_TEST_KEYS", KEY)
            .env("WEB_TEST_PG", &with_mode)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{with_mode}: started\n{stderr}");
        assert!(
            stderr.contains("web.request_log")
                && stderr.contains("the server's certificate is not trusted"),
            "{with_mode}: {stderr}"
        );
        assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    }
    // A CA file that is not there is named with its key.
    let pipeline = write_pipeline(
        dir.path(),
        "{}",
        &web_section("request_log = { url_env = \"WEB_TEST_PG\", ca_file = \"missing-ca.pem\" }"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .arg("serve")
        .arg(&pipeline)
        .env("PIPEHOST_CACHE_DIR", cache_dir())
        .env("WEB_TEST_KEYS", KEY)
        .env("WEB_TEST_PG", format!("{url}?sslmode=require"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("web.request_log.ca_file") && stderr.contains("missing-ca.pem"),
        "{stderr}"
    );
}
