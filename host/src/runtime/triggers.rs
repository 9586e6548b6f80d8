//! What makes a running pipeline stop or reload: Ctrl-C and SIGTERM stop
//! it; a changed pipeline or plugin file (debounced), SIGHUP and the admin
//! API's `POST /admin/reload` reload it. `--dev` rebuilds plugins whose
//! source changed, which then reload as changed files.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Pipeline, RunOptions, dev, reload};
use crate::web::admin::ReloadRequest;

/// Editors and compilers write in several steps: a file change reloads once
/// the files have been quiet this long.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Waits for Ctrl-C or SIGTERM. The handlers are installed by this call,
/// not on the first poll, so a signal right after start is not missed.
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A reload to run now; `reply` waits for its outcome (the admin API).
pub(super) struct Reload {
    why: String,
    reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// The reload triggers of a running pipeline, all sending on one channel.
pub(super) struct Triggers {
    tx: mpsc::Sender<ReloadRequest>,
    rx: mpsc::Receiver<ReloadRequest>,
    /// Re-created after each file-triggered reload: plugin paths may change.
    watcher: Option<notify::RecommendedWatcher>,
    watch: bool,
    /// A file change waiting for the files to be quiet.
    pending: Option<(Instant, String)>,
    dev: Option<JoinHandle<anyhow::Result<()>>>,
    /// This branch of the pipeline's cancellation tree (SIGHUP, dev).
    cancel: CancellationToken,
}

impl Triggers {
    /// Starts the triggers `opts` asks for — file watching, `hangups` and
    /// `--dev` (what [`dev::prepare`] found) — sending on `tx`, the channel
    /// the pipeline's admin API sends on too; `rx` is its other end.
    pub fn start(
        pipeline: &Pipeline,
        opts: &RunOptions,
        (tx, rx): (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>),
        hangups: Hangups,
        dev: Option<dev::DevWatch>,
    ) -> anyhow::Result<Self> {
        let plan = pipeline.plan();
        let cancel = pipeline.child_token();
        let watcher = match opts.watch {
            true => Some(reload::watch(&reload::watched_files(plan), tx.clone())?),
            false => None,
        };
        forward_sighup(hangups, tx.clone(), cancel.clone());
        let dev = dev.map(|watch| tokio::spawn(dev::run(watch, cancel.child_token())));
        Ok(Self {
            tx,
            rx,
            watcher,
            watch: opts.watch,
            pending: None,
            dev,
            cancel,
        })
    }

    /// The next reload to run: at once when someone waits for its outcome,
    /// else once the files have been quiet for [`DEBOUNCE`]. Cancel-safe.
    pub async fn next(&mut self) -> Reload {
        loop {
            let quiet_at = self.pending.as_ref().map(|(at, _)| *at);
            let debounce = async move {
                match quiet_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                req = self.rx.recv() => {
                    // Never `None`: `self` holds a sender.
                    let Some(req) = req else { continue };
                    match req.reply {
                        Some(reply) => return Reload { why: req.why, reply: Some(reply) },
                        None => self.pending = Some((Instant::now() + DEBOUNCE, req.why)),
                    }
                }
                _ = debounce => {
                    let (_, why) = self.pending.take().expect("pending");
                    return Reload { why, reply: None };
                }
            }
        }
    }

    /// Runs `reload` on `pipeline`: its outcome goes to whoever waits for
    /// it; after a file change or SIGHUP the watcher follows the new plan.
    pub async fn apply(&mut self, reload: Reload, pipeline: &mut Pipeline) -> anyhow::Result<()> {
        let outcome = pipeline.reload_file(&reload.why).await?;
        match reload.reply {
            Some(reply) => {
                let _ = reply.send(outcome.reply());
            }
            None if self.watch => {
                let files = reload::watched_files(pipeline.plan());
                self.watcher = Some(reload::watch(&files, self.tx.clone())?);
            }
            None => {}
        }
        Ok(())
    }

    /// Stops watching, SIGHUP and `--dev`.
    pub async fn stop(self) {
        drop(self.watcher);
        self.cancel.cancel();
        if let Some(dev) = self.dev {
            match dev.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("--dev stopped: {e:#}"),
                Err(e) => tracing::warn!("--dev panicked: {e}"),
            }
        }
    }
}

/// SIGHUP, caught from this call on (its default would end the process):
/// [`Triggers::start`] turns each into a reload.
pub(super) struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    pub fn catch() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }
}

/// Sends a reload request on every SIGHUP until `cancel`.
fn forward_sighup(hangups: Hangups, tx: mpsc::Sender<ReloadRequest>, cancel: CancellationToken) {
    #[cfg(unix)]
    {
        let mut hup = hangups.signal;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    got = hup.recv() => if got.is_none() { break },
                }
                let request = ReloadRequest {
                    why: "SIGHUP".into(),
                    reply: None,
                };
                let _ = tx.send(request).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (hangups, tx, cancel);
}
