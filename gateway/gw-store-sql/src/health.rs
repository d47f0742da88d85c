//! Failing fast while PostgreSQL is known to be down.
//!
//! Without this, every statement during an outage waits the pool's whole acquire timeout (5 s by default: sqlx
//! keeps retrying a refused connection until then) before it reports the outage, so each request holds its
//! caller, a task and a slot of the HTTP server for seconds only to answer 503. [`GatedPool`] wraps the pool with a
//! [`HealthGate`]: the first statement that fails because the database cannot be used (see
//! [`crate::error::is_unavailable`]) closes the gate, and from then on statements fail at once with an
//! "unavailable" error (the edge's 503 with `Retry-After`) instead of queueing for a connection. One background
//! probe per gate opens a fresh connection, with its own short timeout, after a short and growing pause; the first
//! probe that connects opens the gate again. Statements already waiting when the gate closed finish as they would
//! have. Design: `docs/src/design/store-one-crate-two-backends.md`, "Failing fast".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryFutureExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection, Either, Execute, Executor, PgConnection, PgPool, Postgres, Transaction};

use crate::error::is_unavailable;

/// The first pause before a probe; each failed probe doubles it, up to [`PROBE_PAUSE_MAX`].
const PROBE_PAUSE_MIN: Duration = Duration::from_millis(100);
const PROBE_PAUSE_MAX: Duration = Duration::from_secs(1);
/// How long a probe may take to connect: a server that does not answer within it is still down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the database is known to be down, and the probe that finds out when it is back.
#[derive(Debug)]
pub(crate) struct HealthGate {
    down: AtomicBool,
    probing: AtomicBool,
    connect: PgConnectOptions,
}

impl HealthGate {
    pub(crate) fn new(connect: PgConnectOptions) -> Arc<Self> {
        Arc::new(Self { down: AtomicBool::new(false), probing: AtomicBool::new(false), connect })
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// `Ok` while the database is thought to be up; the outage error at once while it is known to be down.
    fn admit(&self) -> Result<(), sqlx::Error> {
        if self.is_down() { Err(known_down()) } else { Ok(()) }
    }

    /// Closes the gate when `error` says the database cannot be used, and starts the probe that opens it again.
    fn observe(self: &Arc<Self>, error: &sqlx::Error) {
        if !is_unavailable(error) || is_known_down(error) {
            return;
        }
        // Without a runtime there is nobody to probe; the gate stays open rather than closed for good.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        self.down.store(true, Ordering::Release);
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(%error, "PostgreSQL is unavailable: failing fast until a probe connects again");
        runtime.spawn(Arc::clone(self).probe());
    }

    /// Checks at once whether the database still takes connections, closing the gate if not: for a sign of an
    /// outage that is not a statement's error (the wake-up listener's connection dropped, say), so that requests
    /// fail fast from the moment the server went away rather than after the first of them waited the acquire
    /// timeout. Nothing happens while a probe is already running.
    pub(crate) fn suspect(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let gate = Arc::clone(self);
        runtime.spawn(async move {
            if gate.connects().await {
                // A statement may have closed the gate meanwhile (and found this probe running): it is reachable.
                gate.probing.store(false, Ordering::Release);
                gate.down.store(false, Ordering::Release);
            } else {
                gate.down.store(true, Ordering::Release);
                tracing::warn!("PostgreSQL refuses connections: failing fast until a probe connects again");
                gate.probe().await;
            }
        });
    }

    async fn connects(&self) -> bool {
        match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&self.connect)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                true
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "PostgreSQL probe failed");
                false
            }
            Err(_) => {
                tracing::debug!("PostgreSQL probe timed out");
                false
            }
        }
    }

    async fn probe(self: Arc<Self>) {
        let mut pause = PROBE_PAUSE_MIN;
        loop {
            tokio::time::sleep(pause).await;
            if self.connects().await {
                break;
            }
            pause = (pause * 2).min(PROBE_PAUSE_MAX);
        }
        // Probing first, then down: a failure observed in between starts a new probe instead of being lost.
        self.probing.store(false, Ordering::Release);
        self.down.store(false, Ordering::Release);
        tracing::info!("PostgreSQL is reachable again");
    }
}

/// The error a statement gets while the gate is closed: an I/O "not connected", which the store maps to
/// `StoreError::Unavailable` like any other connection failure.
fn known_down() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, KNOWN_DOWN))
}

const KNOWN_DOWN: &str = "PostgreSQL is down (a connection failed moments ago; a probe is retrying)";

fn is_known_down(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::NotConnected
        && io.to_string() == KNOWN_DOWN)
}

/// The PostgreSQL pool behind a [`HealthGate`]: used exactly like a `PgPool` (`&pool` is an executor; `begin`,
/// `acquire`), but failing at once while the database is known to be down.
#[derive(Debug, Clone)]
pub(crate) struct GatedPool {
    pool: PgPool,
    gate: Arc<HealthGate>,
}

impl GatedPool {
    pub(crate) fn new(pool: PgPool, connect: PgConnectOptions) -> Self {
        Self { pool, gate: HealthGate::new(connect) }
    }

    /// The pool itself, ungated (for tests that need a raw connection, and for the `LISTEN` task).
    pub(crate) fn inner(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn gate(&self) -> &Arc<HealthGate> {
        &self.gate
    }

    fn observed<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(error) = &result {
            self.gate.observe(error);
        }
        result
    }

    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.gate.admit()?;
        self.observed(self.pool.begin().await)
    }

    pub(crate) async fn begin_with(
        &self,
        statement: impl sqlx::SqlSafeStr,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.gate.admit()?;
        self.observed(self.pool.begin_with(statement).await)
    }

    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.gate.admit()?;
        self.observed(self.pool.acquire().await)
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

impl<'p> Executor<'p> for &'_ GatedPool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures::stream::BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        if let Err(error) = self.gate.admit() {
            return futures::stream::once(async move { Err(error) }).boxed();
        }
        let gate = Arc::clone(&self.gate);
        (&self.pool)
            .fetch_many(query)
            .inspect(move |step| {
                if let Err(error) = step {
                    gate.observe(error);
                }
            })
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures::future::BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        if let Err(error) = self.gate.admit() {
            return futures::future::ready(Err(error)).boxed();
        }
        let gate = Arc::clone(&self.gate);
        (&self.pool).fetch_optional(query).inspect_err(move |error| gate.observe(error)).boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> futures::future::BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        if let Err(error) = self.gate.admit() {
            return futures::future::ready(Err(error)).boxed();
        }
        let gate = Arc::clone(&self.gate);
        (&self.pool).prepare_with(sql, parameters).inspect_err(move |error| gate.observe(error)).boxed()
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> futures::future::BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'p: 'e,
    {
        (&self.pool).describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outages_close_the_gate_and_statement_errors_do_not() {
        // Port 1 on loopback: nothing listens, so the probe keeps failing and the gate stays closed.
        let connect = PgConnectOptions::new().host("127.0.0.1").port(1);
        let gate = HealthGate::new(connect);
        gate.observe(&sqlx::Error::RowNotFound);
        assert!(gate.admit().is_ok(), "a statement's own error says nothing about the database");
        gate.observe(&sqlx::Error::PoolTimedOut);
        let refused = gate.admit().expect_err("closed after an outage");
        assert!(is_unavailable(&refused) && is_known_down(&refused), "{refused:?}");
        // The gate's own refusals do not start another probe or keep it closed by themselves.
        gate.observe(&refused);
        assert!(gate.probing.load(Ordering::Acquire));
    }
}
