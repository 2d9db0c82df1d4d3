//! Planning the bytes that go out for one read: ranges of the read buffer
//! passed as they are, with stand-ins spliced in. The relay's zero-copy
//! core, shared by both directions.

use std::ops::Range;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::READ_BUFFER;
use crate::postgres::codec::{CodecError, Piece, Splitter};

/// What goes out for one read: ranges of the read buffer, with stand-ins
/// spliced in where a message was replaced. Adjacent ranges coalesce, so an
/// untouched read is one write.
#[derive(Default)]
pub(super) struct Outgoing {
    segments: Vec<Segment>,
    stand_ins: BytesMut,
}

enum Segment {
    Read(Range<usize>),
    StandIn(Range<usize>),
}

impl Outgoing {
    /// Plan what goes out for the read in `buf`: streamed pieces pass,
    /// each whole held message goes to `on_held`, which may replace it
    /// (or add before it) and returns whether to pass it as is. Returns how
    /// much of `buf` was consumed (the rest is an incomplete held message).
    pub(super) fn plan(
        &mut self,
        splitter: &mut Splitter,
        buf: &[u8],
        holds: fn(u8) -> bool,
        max_held: usize,
        mut on_held: impl FnMut(&mut Outgoing, u8, &[u8]) -> Result<bool, CodecError>,
    ) -> Result<usize, CodecError> {
        self.segments.clear();
        self.stand_ins.clear();
        let mut pos = 0;
        while let Some(piece) = splitter.next(buf, pos, holds, max_held)? {
            match piece {
                Piece::Stream(r) => {
                    pos = r.end;
                    self.pass(r);
                }
                Piece::Held { tag, frame } => {
                    pos = frame.end;
                    if on_held(self, tag, &buf[frame.clone()])? {
                        self.pass(frame);
                    }
                }
            }
        }
        Ok(pos)
    }

    fn pass(&mut self, range: Range<usize>) {
        if let Some(Segment::Read(last)) = self.segments.last_mut()
            && last.end == range.start
        {
            last.end = range.end;
            return;
        }
        self.segments.push(Segment::Read(range));
    }

    /// Append a message written by `write` into `stand_ins`.
    pub(super) fn replace(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let start = self.stand_ins.len();
        write(&mut self.stand_ins);
        self.segments
            .push(Segment::StandIn(start..self.stand_ins.len()));
    }

    pub(super) async fn send(
        &self,
        buf: &[u8],
        tx: &mut (impl AsyncWrite + Unpin),
    ) -> std::io::Result<()> {
        if self.segments.is_empty() {
            return Ok(());
        }
        for segment in &self.segments {
            let bytes = match segment {
                Segment::Read(r) => &buf[r.clone()],
                Segment::StandIn(r) => &self.stand_ins[r.clone()],
            };
            tx.write_all(bytes).await?;
        }
        // TLS streams may hold written bytes until flushed.
        tx.flush().await
    }
}

/// Keep the unconsumed tail of `buf` (an incomplete held message) and make
/// sure there is room to read the rest of it.
pub(super) fn keep_tail(buf: &mut BytesMut, pos: usize) {
    if pos == buf.len() {
        buf.clear();
    } else {
        buf.advance(pos);
        buf.reserve(Splitter::missing(buf, 0));
    }
    if buf.capacity() - buf.len() < READ_BUFFER / 4 {
        buf.reserve(READ_BUFFER);
    }
}
