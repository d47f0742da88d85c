//! Group commit: concurrent writes of one kind handed to one writer task, which commits whatever has queued up
//! in one transaction and answers each caller only after that commit.
//!
//! Why: an accepted send must be committed before its `202`, and with one transaction per send the database's
//! commit (SQLite's single writer lock and its busy-wait, PostgreSQL's WAL flush) set the pace, not the gateway.
//! With one writer, the sends that arrive while a batch commits form the next batch, so a commit is shared by
//! however many callers are waiting, and nothing waits for a batch to fill (a lone send is a batch of one).
//!
//! What callers keep: each gets the answer its own write would have had alone; nothing is answered before it is
//! committed; and a caller that has gone (its request timed out or was dropped) is left out of a batch that has not
//! committed yet, as a dropped transaction would have rolled it back. What a batch writes, and how it falls back
//! when one item fails, is the [`BatchWriter`]'s business.

use std::future::Future;
use std::sync::Mutex;

use gw_store::{StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

/// One write waiting for its batch: what to write and where its answer goes.
pub(crate) struct Pending<I, A> {
    pub(crate) item: I,
    answer: oneshot::Sender<StoreResult<A>>,
}

impl<I, A> Pending<I, A> {
    /// The caller stopped waiting (its request timed out or its connection closed): its write must not commit.
    pub(crate) fn abandoned(&self) -> bool {
        self.answer.is_closed()
    }

    pub(crate) fn answer(self, result: StoreResult<A>) {
        // A caller that has gone since is no error: the write's outcome is in the database.
        let _ = self.answer.send(result);
    }
}

/// Writes batches of one kind of item.
pub(crate) trait BatchWriter: Clone + Send + Sync + 'static {
    type Item: Send + 'static;
    type Answer: Send + 'static;
    /// Writes the batch and answers every item in it exactly once.
    fn write(&self, batch: Vec<Pending<Self::Item, Self::Answer>>) -> impl Future<Output = ()> + Send;
}

/// Where callers put their writes for the writer task.
type Queue<W> = mpsc::UnboundedSender<Pending<<W as BatchWriter>::Item, <W as BatchWriter>::Answer>>;

/// The queue in front of one writer task, started on first use (and again if it stopped: a runtime that ended, a
/// panic), on the runtime of the caller that found it missing.
pub(crate) struct GroupCommit<W: BatchWriter> {
    writer: W,
    max_batch: usize,
    queue: Mutex<Option<Queue<W>>>,
}

impl<W: BatchWriter> GroupCommit<W> {
    pub(crate) fn new(writer: W, max_batch: usize) -> Self {
        Self { writer, max_batch: max_batch.max(1), queue: Mutex::new(None) }
    }

    /// Hands `item` to the writer and waits until its batch committed (or failed).
    pub(crate) async fn submit(&self, item: W::Item) -> StoreResult<W::Answer> {
        let (answer, answered) = oneshot::channel();
        self.enqueue(Pending { item, answer });
        answered.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the store's writer task stopped".into())))
    }

    fn enqueue(&self, pending: Pending<W::Item, W::Answer>) {
        // The lock is held only to clone or replace the sender, never across an await.
        let mut queue = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pending = match queue.as_ref() {
            Some(sender) => match sender.send(pending) {
                Ok(()) => return,
                Err(mpsc::error::SendError(pending)) => pending,
            },
            None => pending,
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(self.writer.clone(), receiver, self.max_batch));
        // The receiver was just created and is alive: this send cannot fail.
        let _ = sender.send(pending);
        *queue = Some(sender);
    }
}

/// The writer task: takes whatever is queued (up to `max_batch`), writes it as one batch, repeats.
async fn run<W: BatchWriter>(
    writer: W,
    mut receiver: mpsc::UnboundedReceiver<Pending<W::Item, W::Answer>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        batch.retain(|pending| !pending.abandoned());
        if !batch.is_empty() {
            writer.write(std::mem::replace(&mut batch, Vec::with_capacity(max_batch))).await;
        }
    }
}

/// One error for each caller of a batch that failed as a whole (the database could not begin or commit it).
/// [`StoreError`] is not `Clone` (its sources are boxed errors), so the copies carry the source's message.
pub(crate) fn share(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(source) => StoreError::Unavailable(source.to_string().into()),
        StoreError::Backend(source) => StoreError::Backend(source.to_string().into()),
        other => StoreError::Backend(other.to_string().into()),
    }
}
