//! The writer thread: owns the read-write connection and runs, in channel order, the commands of
//! the one open write transaction, and between transactions the writes that stand alone
//! (chunked uploads). A `begin` or a standalone write that arrives while a transaction is open
//! waits until it ends, so they never mix with it.

use super::checkpointer::Checkpointer;
use super::{copy_err, db_err};
use crate::store::contract::{StoreError, StoreResult};
use rusqlite::Connection;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// The first failure of a transaction, shared by the writer thread (which sets it) and the
/// transaction's handle (which reports it to the next call without waiting for the thread).
#[derive(Clone, Default)]
pub(super) struct Latch(Arc<Mutex<Option<StoreError>>>);

impl Latch {
    pub(super) fn get(&self) -> Option<StoreError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(copy_err)
    }
    fn set(&self, e: StoreError) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    /// Runs `f` unless the transaction has failed; a failure of `f` is latched too.
    pub(super) fn guard<T>(&self, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        if let Some(e) = self.get() {
            return Err(e);
        }
        f().inspect_err(|e| self.set(copy_err(e)))
    }
}

/// A step of the open transaction, run on the writer thread with its connection and latch.
pub(super) type Step = Box<dyn FnOnce(&Connection, &Latch) + Send>;

pub(super) enum TxOp {
    Step(Step),
    Commit(oneshot::Sender<StoreResult<()>>),
    Rollback,
}

pub(super) enum Cmd {
    Begin(oneshot::Sender<StoreResult<(u64, Latch)>>),
    /// Runs outside any transaction (autocommit).
    Alone(Box<dyn FnOnce(&Connection) + Send>),
    Tx {
        id: u64,
        op: TxOp,
    },
    /// Stops the thread; the reply is sent once the connection is closed.
    Close(oneshot::Sender<()>),
}

struct Open {
    id: u64,
    latch: Latch,
}

pub(super) fn spawn(
    conn: Connection,
    path: &std::path::Path,
) -> StoreResult<(mpsc::Sender<Cmd>, std::thread::JoinHandle<()>)> {
    let checkpointer = Checkpointer::start(&conn, path)?;
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("jianka-sqlite-writer".into())
        .spawn(move || run(conn, checkpointer, rx))
        .map_err(|e| StoreError::WriterGone(format!("starting the writer thread: {e}")))?;
    Ok((tx, handle))
}

fn run(conn: Connection, mut checkpointer: Checkpointer, rx: mpsc::Receiver<Cmd>) {
    let mut open: Option<Open> = None;
    let mut waiting: VecDeque<Cmd> = VecDeque::new();
    let mut next_id = 0u64;
    let mut closed_by = None;
    loop {
        let cmd = match open.is_none().then(|| waiting.pop_front()).flatten() {
            Some(cmd) => cmd,
            None => match rx.recv() {
                Ok(cmd) => cmd,
                Err(_) => break, // every handle is gone
            },
        };
        match cmd {
            cmd @ (Cmd::Begin(_) | Cmd::Alone(_) | Cmd::Close(_)) if open.is_some() => waiting.push_back(cmd),
            Cmd::Begin(reply) => match conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {
                    next_id += 1;
                    let latch = Latch::default();
                    if reply.send(Ok((next_id, latch.clone()))).is_ok() {
                        open = Some(Open { id: next_id, latch });
                    } else {
                        // The caller stopped waiting: nobody could ever end this transaction.
                        rollback(&conn);
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(db_err(e)));
                }
            },
            Cmd::Alone(f) => {
                f(&conn);
                checkpointer.committed(&conn);
            }
            Cmd::Close(reply) => {
                closed_by = Some(reply);
                break;
            }
            Cmd::Tx { id, op } => match open.as_ref().filter(|o| o.id == id) {
                Some(o) => match op {
                    TxOp::Step(step) => step(&conn, &o.latch),
                    TxOp::Commit(reply) => {
                        let result = match o.latch.get() {
                            Some(e) => Err(e),
                            None => conn.execute_batch("COMMIT").map_err(db_err),
                        };
                        if result.is_err() {
                            rollback(&conn);
                        }
                        checkpointer.committed(&conn);
                        let _ = reply.send(result);
                        open = None;
                    }
                    TxOp::Rollback => {
                        rollback(&conn);
                        open = None;
                    }
                },
                // A step of a transaction already ended (it cannot happen through the handle,
                // which is consumed by commit and rolls back only when dropped): answer it.
                None => {
                    if let TxOp::Step(step) = op {
                        let ended = Latch::default();
                        ended.set(StoreError::Db("the write transaction has already ended".into()));
                        step(&conn, &ended);
                    }
                }
            },
        }
    }
    if open.is_some() {
        rollback(&conn);
    }
    // Whatever still waits gets a closed channel (its caller sees the writer gone).
    drop(waiting);
    checkpointer.stop();
    drop(conn);
    if let Some(reply) = closed_by {
        let _ = reply.send(());
    }
}

fn rollback(conn: &Connection) {
    if let Err(e) = conn.execute_batch("ROLLBACK") {
        // Only fails when no transaction is open (SQLite rolled it back itself).
        tracing::debug!(error = %e, "rollback");
    }
}

/// The channel to the writer thread.
#[derive(Clone)]
pub(super) struct Writer {
    cmds: mpsc::Sender<Cmd>,
}

pub(super) fn gone() -> StoreError {
    StoreError::WriterGone("the SQLite writer thread is not running (the store was closed)".into())
}

impl Writer {
    pub(super) fn new(cmds: mpsc::Sender<Cmd>) -> Writer {
        Writer { cmds }
    }

    pub(super) fn send(&self, cmd: Cmd) -> StoreResult<()> {
        self.cmds.send(cmd).map_err(|_| gone())
    }

    /// Runs `f` on the writer's connection outside any transaction and waits for it.
    pub(super) async fn alone<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Alone(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        })))?;
        answer.await.map_err(|_| gone())?
    }

    pub(super) async fn begin(&self) -> StoreResult<(u64, Latch)> {
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Begin(reply))?;
        answer.await.map_err(|_| gone())?
    }

    pub(super) async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Cmd::Close(reply)).is_ok() {
            let _ = answer.await;
        }
    }
}
