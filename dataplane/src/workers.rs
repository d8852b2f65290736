//! The data plane's threads: a fixed set of OS threads, each driving its own single-threaded
//! tokio runtime (thread per core, the way nginx workers and haproxy threads work).
//!
//! Why: with tokio's multi-threaded scheduler a connection's task may run on any worker, and
//! an idle worker is woken to steal work whenever another one has some. For small requests
//! that hand-off (a futex wake plus a context switch per request) cost about a third of the
//! gateway's CPU (docs/benchmarks.md). Here a connection is accepted, served and closed by one
//! thread, so a readable socket wakes exactly one thread.
//!
//! Invariants:
//! * [`Workers::start`] returns only once every worker has run its `setup` inside its own
//!   runtime (so sockets handed to it are registered with that worker's reactor), or returns
//!   the first setup error after stopping the workers already started;
//! * tasks a worker spawns (`tokio::spawn` from inside it) stay on that worker's thread;
//! * when a worker's future returns, its runtime is shut down: tasks still pending are
//!   dropped (closing their sockets) and blocking work gets at most [`BLOCKING_GRACE`];
//! * [`Workers::join`] resolves once every worker thread has finished that shutdown, and a
//!   worker that panics still reports that it finished.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;

/// How long a stopping worker waits for its blocking tasks (e.g. a DNS lookup).
pub const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// Running worker threads; see the module invariants.
#[derive(Debug)]
pub struct Workers {
    finished: Vec<oneshot::Receiver<()>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("cannot start data-plane worker {index}: {what}")]
    Start {
        index: usize,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("data-plane worker {index} stopped during setup (it panicked; see the log above)")]
    Lost { index: usize },
}

/// The number of workers to run when the configuration does not say: one per CPU this process
/// may use (affinity and cgroup quotas count), at least one.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

// === impl Workers ===

impl Workers {
    /// Starts one worker per element of `payloads`, named `{name}-{index}`. On each worker
    /// thread, `setup(index, payload)` runs inside the worker's runtime and returns the
    /// future the worker drives until it completes.
    pub async fn start<T, F, Fut>(
        name: &str,
        payloads: Vec<T>,
        setup: F,
    ) -> Result<Workers, WorkerError>
    where
        T: Send + 'static,
        F: Fn(usize, T) -> std::io::Result<Fut> + Clone + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let mut finished = Vec::with_capacity(payloads.len());
        let mut ready = Vec::with_capacity(payloads.len());
        let mut result = Ok(());
        for (index, payload) in payloads.into_iter().enumerate() {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(source) => {
                    result = Err(WorkerError::Start {
                        index,
                        what: "cannot build its async runtime",
                        source,
                    });
                    break;
                }
            };
            let (ready_tx, ready_rx) = oneshot::channel();
            let (finished_tx, finished_rx) = oneshot::channel();
            let setup = setup.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    let _finished = Finished(Some(finished_tx));
                    let future = {
                        let _enter = runtime.enter();
                        setup(index, payload)
                    };
                    match future {
                        Ok(future) => {
                            let _ = ready_tx.send(Ok(()));
                            runtime.block_on(future);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                    runtime.shutdown_timeout(BLOCKING_GRACE);
                });
            if let Err(source) = spawned {
                result = Err(WorkerError::Start {
                    index,
                    what: "cannot spawn its thread",
                    source,
                });
                break;
            }
            finished.push(finished_rx);
            ready.push(ready_rx);
        }
        for (index, rx) in ready.into_iter().enumerate() {
            let outcome = match rx.await {
                Ok(Ok(())) => continue,
                Ok(Err(source)) => WorkerError::Start {
                    index,
                    what: "setup failed",
                    source,
                },
                Err(_) => WorkerError::Lost { index },
            };
            if result.is_ok() {
                result = Err(outcome);
            }
        }
        // On error, workers that did start run until their future completes: the caller
        // stops them with whatever signal their futures wait on.
        result.map(|()| Workers { finished })
    }

    pub fn len(&self) -> usize {
        self.finished.len()
    }

    pub fn is_empty(&self) -> bool {
        self.finished.is_empty()
    }

    /// Waits until every worker has stopped and shut its runtime down.
    pub async fn join(self) {
        for rx in self.finished {
            // An error means the sender was dropped without sending: the thread is gone too.
            let _ = rx.await;
        }
    }
}

/// Reports that a worker thread finished, also when it unwinds from a panic.
struct Finished(Option<oneshot::Sender<()>>);

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn each_worker_runs_its_tasks_on_its_own_thread() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let workers = Workers::start("test-worker", vec!["a", "b", "c"], {
            let seen = seen.clone();
            let stop = stop.clone();
            move |index, payload| {
                let seen = seen.clone();
                let done = done_tx.clone();
                // A spawned task (as a connection would be) must stay on this thread.
                let task = tokio::spawn(async move { std::thread::current().id() });
                let stop = stop.clone();
                Ok(async move {
                    let task_thread = task.await.unwrap();
                    let me = std::thread::current();
                    assert_eq!(task_thread, me.id(), "task ran on another thread");
                    seen.lock()
                        .unwrap()
                        .push((index, payload, me.name().unwrap().to_string()));
                    done.send(me.id()).unwrap();
                    stop.cancelled().await;
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(workers.len(), 3);
        let mut threads = Vec::new();
        for _ in 0..3 {
            threads.push(done_rx.recv().await.unwrap());
        }
        threads.sort_by_key(|t| format!("{t:?}"));
        threads.dedup();
        assert_eq!(threads.len(), 3, "three distinct threads");
        assert_ne!(threads[0], std::thread::current().id());
        stop.cancel();
        workers.join().await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (0, "a", "test-worker-0".to_string()),
                (1, "b", "test-worker-1".to_string()),
                (2, "c", "test-worker-2".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn a_setup_error_is_reported_with_the_worker_index() {
        let stop = CancellationToken::new();
        let err = Workers::start("test-worker", vec![0, 1], {
            let stop = stop.clone();
            move |index, _| {
                if index == 1 {
                    return Err(std::io::Error::other("no sockets today"));
                }
                let stop = stop.clone();
                Ok(async move { stop.cancelled().await })
            }
        })
        .await
        .unwrap_err();
        stop.cancel();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            text.contains("worker 1") && text.contains("no sockets today"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn stopping_a_worker_drops_its_pending_tasks() {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let workers = Workers::start("test-worker", vec![held_tx], |_, held_tx| {
            // A task that never finishes by itself, holding the sender.
            tokio::spawn(async move {
                let _held = held_tx;
                std::future::pending::<()>().await
            });
            Ok(async {})
        })
        .await
        .unwrap();
        workers.join().await;
        assert!(
            held_rx.await.is_err(),
            "the pending task (and what it held) was dropped with the runtime"
        );
    }

    #[tokio::test]
    async fn a_panicking_worker_still_reports_finished() {
        let workers = Workers::start("test-worker", vec![()], |_, ()| {
            Ok(async { panic!("worker bug (expected in this test)") })
        })
        .await
        .unwrap();
        workers.join().await;
    }
}
