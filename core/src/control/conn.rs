//! One control connection: its non-blocking socket, its peer, its input ([`LineBuffer`]), its
//! output buffer, the request it waits on, and its deadlines. No policy: the loop
//! ([`super::serve`]) decides what to do with it.

use std::{
    io::{ErrorKind, Read, Write},
    time::Instant,
};

use mio::net::UnixStream;
use secrecy::zeroize::Zeroize;
use serde_json::Value;

use super::{CLIENT_DEADLINE, execute::Pending, lines::LineBuffer};

/// Output a connection may have waiting before the core stops reading its commands.
pub(super) const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// Who is at the other end (SO_PEERCRED, read once at accept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Peer {
    pub uid: u32,
    pub pid: i32,
}

/// What reading did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// Bytes were added to the input.
    Bytes,
    /// Nothing more to read for now.
    WouldBlock,
    /// The peer will send nothing more.
    Eof,
}

/// One connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub stream: UnixStream,
    pub peer: Peer,
    pub input: LineBuffer,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_sent: usize,
    /// The request whose answer the core is waiting for; no further line is read meanwhile.
    pub pending: Option<Pending>,
    /// The client owes a complete line by then (while nothing is pending or waiting in `out`).
    pub line_due: Instant,
    /// The client must have read more of its replies by then (while `out` holds some).
    pub write_due: Option<Instant>,
    /// The peer shut down its sending side.
    pub eof: bool,
    /// A refused peer: once `out` (the refusal) is written, shut down our side and drop what the
    /// peer sends until it hangs up or its deadline passes.
    pub close_after_flush: bool,
}

impl Conn {
    pub(super) fn new(stream: UnixStream, peer: Peer, now: Instant) -> Conn {
        Conn {
            stream,
            peer,
            input: LineBuffer::default(),
            out: Vec::new(),
            out_sent: 0,
            pending: None,
            line_due: now + CLIENT_DEADLINE,
            write_due: None,
            eof: false,
            close_after_flush: false,
        }
    }

    /// Queues a reply line; the client then has [`CLIENT_DEADLINE`] for its next line.
    pub(super) fn reply(&mut self, reply: &Value, now: Instant) {
        // Serializing into a Vec cannot fail for a Value.
        let _ = serde_json::to_writer(&mut self.out, reply);
        self.out.push(b'\n');
        self.line_due = now + CLIENT_DEADLINE;
    }

    /// Bytes queued and not yet written.
    pub(super) fn unsent(&self) -> usize {
        self.out.len() - self.out_sent
    }

    /// Writes what the socket takes. `Err` when the peer is gone.
    pub(super) fn flush(&mut self, now: Instant) -> std::io::Result<()> {
        let before = self.out_sent;
        while self.out_sent < self.out.len() {
            match self.stream.write(&self.out[self.out_sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.out_sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.out_sent == self.out.len() {
            self.out.clear();
            self.out_sent = 0;
            self.write_due = None;
        } else {
            if self.write_due.is_none() || self.out_sent != before {
                self.write_due = Some(now + CLIENT_DEADLINE);
            }
            if self.out_sent > self.out.len() / 2 {
                self.out.drain(..self.out_sent);
                self.out_sent = 0;
            }
        }
        Ok(())
    }

    /// Reads one chunk and drops it (zeroed): what a refused peer sends after its refusal.
    pub(super) fn discard_some(&mut self) -> std::io::Result<Received> {
        let mut chunk = [0u8; 4096];
        let result = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Ok(Received::Eof),
                Ok(_) => break Ok(Received::Bytes),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(Received::WouldBlock),
                Err(e) => break Err(e),
            }
        };
        chunk.zeroize();
        result
    }

    /// Reads one chunk into the input (the chunk's bytes are zeroed here).
    pub(super) fn read_some(&mut self) -> std::io::Result<Received> {
        let mut chunk = [0u8; 4096];
        let result = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Ok(Received::Eof),
                Ok(n) => {
                    self.input.push(&chunk[..n]);
                    break Ok(Received::Bytes);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(Received::WouldBlock),
                Err(e) => break Err(e),
            }
        };
        chunk.zeroize();
        result
    }
}
