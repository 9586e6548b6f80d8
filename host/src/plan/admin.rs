//! `[admin]` validated into an [`AdminPlan`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::Checker;
use crate::config::AdminConfig;

/// The admin HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPlan {
    pub listen: SocketAddr,
    pub keys_env: String,
    pub keys_file: Option<PathBuf>,
}

/// The admin API; `None` (with an error) when the address does not parse.
pub(super) fn build(c: &mut Checker, base: &Path, a: &AdminConfig) -> Option<AdminPlan> {
    match a.listen.get_ref().parse() {
        Ok(listen) => Some(AdminPlan {
            listen,
            keys_env: a
                .keys_env
                .clone()
                .unwrap_or_else(|| "PIPEHOST_ADMIN_KEYS".into()),
            keys_file: a.keys_file.as_ref().map(|f| base.join(f)),
        }),
        Err(e) => {
            let line = c.line(&a.listen);
            c.err(
                line,
                "admin.listen",
                format!(
                    "{:?}: not an address like \"127.0.0.1:9464\": {e}",
                    a.listen.get_ref()
                ),
            );
            None
        }
    }
}
