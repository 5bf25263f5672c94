//! A TCP socket whose writes wait until the HTTP/2 connection task has
//! finished its turn, so that everything the task wrote in one turn leaves
//! in one system call.
//!
//! `h2` writes a DATA frame of 256 bytes or more straight from the caller's
//! buffer, with a socket write of its own, instead of copying it after the
//! frames before it. W2's requests (1 KiB) therefore cost the load
//! generator one `writev` each, and on loopback that call also runs the
//! server's side of TCP and wakes it: about a third of the generator's
//! CPU per request. Here `h2`'s writes only append to an outbox, and
//! [`Outbox::drive`] sends them after each poll of the
//! connection, when the requests that the callers queued since the last
//! turn have all been framed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Above this many unsent bytes `h2`'s writes wait for the outbox to be
/// sent, so that a peer that stops reading cannot make it grow without
/// bound.
const OUTBOX_LIMIT: usize = 1 << 20;

/// The connection's socket as `h2` reads and writes it: reads go straight
/// to the socket, writes to the outbox.
pub struct CorkedSocket {
    reader: OwnedReadHalf,
    unsent: Arc<Mutex<Unsent>>,
}

/// The socket's sending half, with what `CorkedSocket` wrote and has not
/// sent yet.
pub struct Outbox {
    writer: OwnedWriteHalf,
    unsent: Arc<Mutex<Unsent>>,
}

#[derive(Default)]
struct Unsent {
    bytes: BytesMut,
    /// A write was refused because the outbox was full.
    writer_waits: bool,
}

impl CorkedSocket {
    /// Wraps a connected socket; its writes are sent by the returned
    /// [`Outbox`]'s [`Outbox::drive`].
    pub fn new(socket: TcpStream) -> (Self, Outbox) {
        let (reader, writer) = socket.into_split();
        let unsent = Arc::new(Mutex::new(Unsent::default()));
        (Self { reader, unsent: Arc::clone(&unsent) }, Outbox { writer, unsent })
    }
}

impl Outbox {
    /// Runs `connection` (the `h2` connection future over the corked
    /// socket), sending what it wrote after each time it is polled. The
    /// socket's sending side closes when this ends.
    pub async fn drive<E: std::fmt::Display>(
        mut self,
        mut connection: impl Future<Output = Result<(), E>> + Unpin,
    ) -> Result<(), String> {
        std::future::poll_fn(move |context| {
            loop {
                let state = Pin::new(&mut connection).poll(context);
                let mut unsent = lock(&self.unsent);
                let sent = send(Pin::new(&mut self.writer), &mut unsent.bytes, context);
                if let Poll::Ready(Err(error)) = sent {
                    return Poll::Ready(Err(format!("socket write: {error}")));
                }
                if state.is_pending() && sent.is_ready() && std::mem::take(&mut unsent.writer_waits) {
                    // The outbox has room again for what `h2` could not write.
                    continue;
                }
                return state.map_err(|error| error.to_string());
            }
        })
        .await
    }
}

/// Writes `bytes` until none are left or the socket is full; in the latter
/// case the task is woken when the socket can take more.
fn send(mut writer: Pin<&mut OwnedWriteHalf>, bytes: &mut BytesMut, context: &mut Context) -> Poll<io::Result<()>> {
    while !bytes.is_empty() {
        match ready!(writer.as_mut().poll_write(context, bytes))? {
            0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            written => bytes.advance(written),
        }
    }
    Poll::Ready(Ok(()))
}

fn lock(unsent: &Mutex<Unsent>) -> MutexGuard<'_, Unsent> {
    // The outbox holds plain bytes; a panic elsewhere leaves it usable.
    unsent.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AsyncRead for CorkedSocket {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context, buf: &mut ReadBuf) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(context, buf)
    }
}

impl AsyncWrite for CorkedSocket {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(context, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _context: &mut Context,
        slices: &[io::IoSlice],
    ) -> Poll<io::Result<usize>> {
        let mut unsent = lock(&self.unsent);
        if unsent.bytes.len() >= OUTBOX_LIMIT {
            // `Outbox::drive` polls the connection again once it has sent
            // the outbox, in the same task.
            unsent.writer_waits = true;
            return Poll::Pending;
        }
        let mut taken = 0;
        for slice in slices {
            unsent.bytes.extend_from_slice(slice);
            taken += slice.len();
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// The bytes leave when the connection's turn ends ([`Outbox::drive`]).
    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The sending side closes when [`Outbox::drive`] ends.
    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
