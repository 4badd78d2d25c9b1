//! A connection's input: bytes in, newline-terminated lines out, in one buffer that is zeroed after
//! each line is handled (and when dropped), so credentials do not stay in memory after their line.
//! A line longer than [`MAX_LINE`] is one [`Line::TooLong`]; the rest of it, through its newline, is
//! discarded as it arrives, never read as a command.

use qilin_market::control::MAX_LINE;
use secrecy::zeroize::Zeroize;

/// What the buffer holds next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line<'a> {
    /// A complete line, without its newline.
    Command(&'a str),
    /// A line longer than [`MAX_LINE`] (reported once; the rest of it is discarded).
    TooLong,
    /// A line that is not UTF-8.
    NotUtf8,
}

impl Line<'_> {
    /// The reply's error text for a line that is not a command.
    pub(super) fn error(&self) -> Option<String> {
        match self {
            Line::Command(_) => None,
            Line::TooLong => Some(format!("a command line is longer than {MAX_LINE} bytes; the whole line is ignored")),
            Line::NotUtf8 => Some("a command line is not UTF-8".to_owned()),
        }
    }
}

/// The input buffer of one connection.
#[derive(Debug, Default)]
pub(super) struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` that belong to the line handed out last.
    handed_out: usize,
    /// Inside an over-long line already reported: drop bytes through the next newline.
    discarding: bool,
}

impl LineBuffer {
    /// Appends bytes read from the socket (the caller zeroes its copy).
    pub(super) fn push(&mut self, mut bytes: &[u8]) {
        if self.discarding {
            match bytes.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    self.discarding = false;
                    bytes = &bytes[end + 1..];
                }
                None => return,
            }
        }
        if self.buf.len() + bytes.len() > self.buf.capacity() {
            // Grow by hand so the old allocation is zeroed, not just freed.
            let mut bigger = Vec::with_capacity((self.buf.len() + bytes.len()).next_power_of_two().max(256));
            bigger.extend_from_slice(&self.buf);
            self.buf.zeroize();
            self.buf = bigger;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next line, if a complete one (or an over-long one) is buffered. Call [`LineBuffer::wipe`]
    /// once it is handled.
    pub(super) fn next_line(&mut self) -> Option<Line<'_>> {
        debug_assert_eq!(self.handed_out, 0, "the previous line was not wiped");
        if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            self.handed_out = end + 1;
            if end > MAX_LINE {
                return Some(Line::TooLong);
            }
            return Some(std::str::from_utf8(&self.buf[..end]).map_or(Line::NotUtf8, Line::Command));
        }
        if self.buf.len() > MAX_LINE {
            self.handed_out = self.buf.len();
            self.discarding = true;
            return Some(Line::TooLong);
        }
        None
    }

    /// Zeroes and forgets the line handed out last.
    pub(super) fn wipe(&mut self) {
        let n = self.handed_out.min(self.buf.len());
        self.buf[..n].zeroize();
        self.buf.drain(..n);
        // `drain` moved the rest forward; zero the bytes it left behind past the new end.
        for byte in self.buf.spare_capacity_mut() {
            byte.write(0);
        }
        self.handed_out = 0;
    }

    /// Whether part of a line is buffered (bytes without their newline yet).
    pub(super) fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.discarding
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(buffer: &mut LineBuffer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = buffer.next_line() {
            out.push(match line {
                Line::Command(text) => text.to_owned(),
                other => format!("<{other:?}>"),
            });
            buffer.wipe();
        }
        out
    }

    #[test]
    fn lines_split_across_pushes_and_several_in_one() {
        let mut b = LineBuffer::default();
        b.push(b"sta");
        assert_eq!(lines(&mut b), Vec::<String>::new());
        assert!(b.has_partial());
        b.push(b"tus\nshutdown\nsub");
        assert_eq!(lines(&mut b), ["status", "shutdown"]);
        b.push(b"scribe rb2605\n\xff\n");
        assert_eq!(lines(&mut b), ["subscribe rb2605", "<NotUtf8>"]);
        assert!(!b.has_partial());
    }

    #[test]
    fn an_over_long_line_is_one_error_and_its_tail_is_dropped() {
        let pad = vec![b'x'; MAX_LINE + 1];
        for chunk in [1, 7, 4096, MAX_LINE + 100] {
            let mut b = LineBuffer::default();
            let mut all = pad.clone();
            all.extend_from_slice(b" shutdown\nstatus\n");
            let mut got = Vec::new();
            for piece in all.chunks(chunk) {
                b.push(piece);
                got.extend(lines(&mut b));
            }
            assert_eq!(got, ["<TooLong>", "status"], "chunks of {chunk}");
        }
        // Exactly MAX_LINE bytes is a line.
        let mut b = LineBuffer::default();
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        b.push(&exact);
        assert_eq!(lines(&mut b).len(), 1);
    }

    #[test]
    fn a_handled_line_is_gone_and_the_rest_is_kept() {
        let mut b = LineBuffer::default();
        b.push(b"credentials {\"password\":\"hunter2\"}\nstat");
        assert!(matches!(b.next_line(), Some(Line::Command(l)) if l.starts_with("credentials")));
        b.wipe();
        assert_eq!(b.buf, b"stat");
    }
}
