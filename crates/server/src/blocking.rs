//! Blocking work, off the async runtime's threads.
//!
//! The service layer (`lakeplan_lake::Lake`), the registry and the [`lakeplan_catalog::Metastore`]
//! under them are synchronous: a call waits for SQLite or for PostgreSQL. Made directly in async
//! code, such a call holds one of the runtime's few worker threads (one per core) for as long as
//! the metastore takes; a few slow calls then stall every other request, `/healthz` and the
//! data-plane workers' heartbeats included (issue 17). [`blocking`] runs the call on tokio's
//! blocking pool instead and awaits it, so the worker thread serves others meanwhile.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lakeplan_core::Error;

/// Runs `f` on the runtime's blocking thread pool and returns its result. A panic in `f`
/// becomes an [`Error::Internal`] (the request answers 500; the server goes on). If the awaiting
/// future is dropped (the client went away), `f` still runs to its end: a metastore call is
/// never abandoned halfway by its caller.
///
/// Must be awaited inside a tokio runtime (any flavour), as every server handler is.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Error> + Send + 'static,
{
    if lakeplan_lake::ops::is_off_the_runtime() {
        // Already a blocking-pool thread driving a request ([`off_the_runtime`]): no hand-off.
        return f();
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(Error::Internal(format!(
            "a blocking operation panicked: {}",
            panic_message(e.into_panic())
        ))
        .into()),
        Err(e) => Err(Error::Internal(format!("a blocking operation did not finish: {e}")).into()),
    }
}

/// Middleware: runs the rest of the request, extractors and handler, on the blocking pool
/// (driven there by the runtime's handle), so a handler that calls the synchronous service layer
/// holds a blocking-pool thread while the metastore answers, never a runtime worker thread.
///
/// An interim measure for the API routes, whose handlers call `Lake` methods directly: once
/// every operation runs its blocking work through [`blocking`] itself, this layer has nothing
/// left to do and goes. It costs one thread hand-off per request, and a blocking-pool thread
/// (of up to 512) for as long as a request's handler runs, waits included. The response body is
/// still streamed by the runtime's threads.
pub async fn off_the_runtime(req: Request, next: Next) -> Response {
    let handle = tokio::runtime::Handle::current();
    let drive = move || lakeplan_lake::ops::off_the_runtime(|| handle.block_on(next.run(req)));
    match tokio::task::spawn_blocking(drive).await {
        Ok(resp) => resp,
        Err(e) => {
            let why = if e.is_panic() {
                format!(
                    "the request's handler panicked: {}",
                    panic_message(e.into_panic())
                )
            } else {
                format!("the request's handler did not finish: {e}")
            };
            crate::error::ApiError::from(Error::Internal(why)).into_response()
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "(no message)".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::error::ApiError;

    /// While blocking work waits (here: until the test lets it go), the runtime's only thread
    /// runs other tasks; the work's value or error comes back as it was.
    #[tokio::test]
    async fn blocking_work_leaves_the_runtime_free_and_returns_its_result() {
        let (release, wait) = mpsc::channel::<()>();
        let held = tokio::spawn(blocking(move || {
            wait.recv_timeout(Duration::from_secs(30))
                .map_err(|e| Error::Internal(e.to_string()))?;
            Ok::<_, Error>(42)
        }));
        // This test's runtime has one thread: were the work on it, this would never run.
        let other = tokio::spawn(async { "other task ran" });
        assert_eq!(other.await.expect("task"), "other task ran");
        assert!(!held.is_finished());
        release.send(()).expect("release");
        assert_eq!(held.await.expect("task").expect("value"), 42);

        let err = blocking(|| Err::<(), _>(Error::NotFound("x".into())))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        // Any error type that a service error converts into, as handlers' ApiError.
        let api: Result<u8, ApiError> = blocking(|| Ok(7)).await;
        assert_eq!(api.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_panic_in_blocking_work_is_an_internal_error() {
        let err = blocking(|| -> Result<(), Error> { panic!("metastore exploded") })
            .await
            .unwrap_err();
        match err {
            Error::Internal(m) => assert!(m.contains("metastore exploded"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
