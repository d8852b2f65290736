//! Configuration reload: re-read the file, check it, and swap listener states.
//!
//! Invariants: a reload is all-or-nothing: either every listener gets its new state or none
//! does and the running config stays; a refused reload is logged and counted
//! (`fedgate_config_reloads_total{result="failed"}`); live connections keep the state they
//! started with. Only routes and limits are hot: adding/removing listeners or changing an
//! address or kind needs a restart, and so does any change outside `[[listeners]]` (those
//! are logged and kept at their running values).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedgate_federation::watch::FileWatch;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::gateway::ListenerState;
use crate::telemetry::Metrics;
use fedgate_dataplane::route::RouteError;
use fedgate_federation::error_chain;

/// How often the config file is checked for changes (by content, see `FileWatch`).
pub const CONFIG_POLL: Duration = Duration::from_secs(2);

/// Applies new configurations; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

/// The result of the latest reload attempt, published to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadEvent {
    /// Number of reload attempts so far (0 before the first).
    pub attempt: u64,
    pub ok: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("new configuration is invalid")]
    Config(#[from] ConfigError),
    #[error("{0}; this needs a restart, the running configuration is kept")]
    NeedsRestart(String),
    #[error("listener `{listener}`: routes do not build")]
    Routes {
        listener: String,
        #[source]
        source: RouteError,
    },
}

struct Inner {
    source: PathBuf,
    /// The config in force; replaced only by a successful reload.
    current: Mutex<Arc<Config>>,
    /// One sender per listener; each accept reads the newest state from it.
    states: HashMap<String, watch::Sender<Arc<ListenerState>>>,
    metrics: Metrics,
    /// Counts attempts and reports the last result; tests await it instead of sleeping.
    events: watch::Sender<ReloadEvent>,
}

// === impl Reloader ===

impl Reloader {
    pub(crate) fn new(
        config: Arc<Config>,
        states: HashMap<String, watch::Sender<Arc<ListenerState>>>,
        metrics: Metrics,
    ) -> Reloader {
        let (events, _) = watch::channel(ReloadEvent {
            attempt: 0,
            ok: true,
        });
        let inner = Inner {
            source: config.source.clone(),
            current: Mutex::new(config),
            states,
            metrics,
            events,
        };
        Reloader {
            inner: Arc::new(inner),
        }
    }

    /// Re-reads the config file and applies it (see the module doc for what is hot).
    pub fn reload(&self) -> Result<(), ReloadError> {
        let result = Config::load(&self.inner.source)
            .map_err(ReloadError::from)
            .and_then(|c| self.apply_inner(c));
        self.finish(&result);
        result
    }

    /// Applies an already-parsed configuration.
    pub fn apply(&self, config: Config) -> Result<(), ReloadError> {
        let result = self.apply_inner(config);
        self.finish(&result);
        result
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.lock().clone()
    }

    /// Reload results as they happen.
    pub fn subscribe(&self) -> watch::Receiver<ReloadEvent> {
        self.inner.events.subscribe()
    }

    /// Reloads whenever the file's content changes (see `fedgate_federation::watch`),
    /// checking every `interval`, until `shutdown`.
    pub async fn watch_file(self, interval: Duration, shutdown: CancellationToken) {
        // The watch only detects changes; `reload` reads and checks the file itself, so a
        // missing or unreadable file is a refused (and counted) reload, as any other.
        let mut watch: FileWatch<(), Infallible> =
            FileWatch::new([self.inner.source.clone()], |_| Ok(()));
        let _ = watch.load();
        watch
            .run(interval, shutdown, |_| {
                tracing::info!(path = %self.inner.source.display(), "config file changed; reloading");
                let _ = self.reload();
            })
            .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Config>> {
        // A poisoned lock only means a panic elsewhere mid-swap; the Arc inside is intact.
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, result: &Result<(), ReloadError>) {
        let ok = result.is_ok();
        self.inner.metrics.reload(ok);
        match result {
            Ok(()) => tracing::info!(path = %self.inner.source.display(), "configuration reloaded"),
            Err(e) => {
                tracing::error!(path = %self.inner.source.display(), error = %error_chain(e), "configuration reload refused; keeping the running configuration")
            }
        }
        self.inner.events.send_modify(|ev| {
            ev.attempt += 1;
            ev.ok = ok;
        });
    }

    fn apply_inner(&self, new: Config) -> Result<(), ReloadError> {
        let mut current = self.lock();
        let old = current.clone();
        let old_names: Vec<_> = old.listeners.iter().map(|l| l.name.as_str()).collect();
        let new_names: Vec<_> = new.listeners.iter().map(|l| l.name.as_str()).collect();
        if old_names.len() != new_names.len() || new_names.iter().any(|n| !old_names.contains(n)) {
            return Err(ReloadError::NeedsRestart(format!(
                "the set of listeners changed (running: {old_names:?}, new: {new_names:?})"
            )));
        }
        // Build every new state before swapping any, so a failure leaves all untouched.
        let mut next = Vec::with_capacity(new.listeners.len());
        for l in &new.listeners {
            let Some(o) = old.listener(&l.name) else {
                continue;
            };
            if o.listen != l.listen || o.kind() != l.kind() {
                return Err(ReloadError::NeedsRestart(format!(
                    "listener `{}` changed its address or kind",
                    l.name
                )));
            }
            let Some(tx) = self.inner.states.get(&l.name) else {
                continue;
            };
            let previous = tx.borrow().clone();
            let state = ListenerState::new(l.clone(), Some(&previous)).map_err(|source| {
                ReloadError::Routes {
                    listener: l.name.clone(),
                    source,
                }
            })?;
            next.push((tx, Arc::new(state)));
        }
        let cold = [
            ("trust_domain", old.trust_domain != new.trust_domain),
            (
                "[identity]",
                old.identity != new.identity || old.identity_socket != new.identity_socket,
            ),
            ("[admin]", old.admin != new.admin),
            ("[federation]", old.federation != new.federation),
            ("[bridge]", old.bridge != new.bridge),
            ("log_format", old.log_format != new.log_format),
            ("workers", old.workers != new.workers),
            ("accept", old.accept != new.accept),
        ];
        for (what, changed) in cold {
            if changed {
                tracing::warn!(
                    setting = what,
                    "changed in the config file but applies only after a restart"
                );
            }
        }
        for (tx, state) in next {
            tx.send_replace(state);
        }
        // Keep the running values of cold settings so /status tells the truth.
        let mut applied = (*old).clone();
        applied.listeners = new.listeners;
        applied.drain_timeout = new.drain_timeout;
        *current = Arc::new(applied);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "trust_domain = \"a.test\"\n[[listeners]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n[[listeners.routes]]\nsni = \"*.b.test\"\nupstreams = [\"10.0.0.1:1\"]\n";

    fn config(src: &str) -> Config {
        Config::parse(src, Path::new("/nonexistent/gw.toml")).unwrap()
    }

    fn reloader() -> (Reloader, watch::Receiver<Arc<ListenerState>>) {
        let c = config(BASE);
        let state = ListenerState::new(c.listeners[0].clone(), None).unwrap();
        let (tx, rx) = watch::channel(Arc::new(state));
        let states = HashMap::from([("e".to_string(), tx)]);
        (Reloader::new(Arc::new(c), states, Metrics::default()), rx)
    }

    #[test]
    fn applies_routes_and_counts_attempts() {
        let (r, states) = reloader();
        let events = r.subscribe();
        r.apply(config(&BASE.replace("*.b.test", "*.c.test")))
            .unwrap();
        assert!(states.borrow().route(Some("x.c.test")).is_some());
        assert!(states.borrow().route(Some("x.b.test")).is_none());
        assert_eq!(
            *events.borrow(),
            ReloadEvent {
                attempt: 1,
                ok: true
            }
        );
        assert_eq!(r.current().listeners[0].routes()[0].sni, "*.c.test");
    }

    #[test]
    fn refuses_changes_that_need_a_restart_and_keeps_everything() {
        let (r, states) = reloader();
        let before = states.borrow().clone();
        for changed in [
            BASE.replace("127.0.0.1:0", "127.0.0.1:9"),
            BASE.replace("name = \"e\"", "name = \"f\""),
            format!("{BASE}[[listeners]]\nname = \"g\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n"),
        ] {
            let e = r.apply(config(&changed)).unwrap_err();
            assert!(matches!(e, ReloadError::NeedsRestart(_)), "{e}");
            assert!(Arc::ptr_eq(&before, &states.borrow()), "state must not change");
        }
        assert_eq!(r.current().listeners[0].listen.port(), 0);
        assert_eq!(r.subscribe().borrow().attempt, 3);
        assert!(!r.subscribe().borrow().ok);
    }

    #[test]
    fn unreadable_file_is_a_refused_reload() {
        let (r, _states) = reloader();
        assert!(matches!(
            r.reload(),
            Err(ReloadError::Config(ConfigError::Read { .. }))
        ));
    }
}
