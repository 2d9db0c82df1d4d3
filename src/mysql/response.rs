//! Where a server's reply to one command ends, packet by packet, with no
//! I/O: the relay needs it to know when a connection is idle (pooling,
//! statement audit, the moment a session may end), as PostgreSQL's relay
//! uses ReadyForQuery. Result sets in text and binary form, several per
//! reply (`MORE_RESULTS_EXISTS`), with or without EOF packets
//! (`DEPRECATE_EOF`); prepare replies; field lists.

use super::codec::{CodecError, ErrPacket, Reader, com, header};

/// Server status flags (`SERVER_STATUS_*`, `SERVER_MORE_RESULTS_EXISTS`).
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server's status flags after it.
    Ok {
        status: u16,
    },
    Err(ErrPacket),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More packets belong to this reply.
    More,
    /// This packet was the reply's last.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing comes back (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT).
    Silent,
    /// One OK or ERR.
    OkOrErr,
    /// OK, ERR, or a result set's column count.
    ResultStart,
    Columns {
        left: u64,
    },
    /// The EOF after column definitions (without DEPRECATE_EOF).
    ColumnsEof,
    Rows,
    /// COM_STMT_PREPARE: its OK, then parameter and column definitions.
    PrepareStart,
    Definitions {
        params: u64,
        columns: u64,
    },
    DefinitionsEof {
        columns: u64,
    },
    /// COM_FIELD_LIST: column definitions until EOF.
    FieldList,
    /// COM_STATISTICS: one string.
    Statistics,
    Finished,
}

/// One command's reply being read.
#[derive(Debug, Clone)]
pub struct Reply {
    state: State,
    deprecate_eof: bool,
    ended: Option<Ended>,
}

impl Reply {
    /// The reply to `command`; `deprecate_eof` when the connection agreed
    /// on `CLIENT_DEPRECATE_EOF`.
    pub fn to(command: u8, deprecate_eof: bool) -> Reply {
        let state = match command {
            com::QUERY | com::STMT_EXECUTE | com::STMT_FETCH => State::ResultStart,
            com::STMT_PREPARE => State::PrepareStart,
            com::FIELD_LIST => State::FieldList,
            com::STATISTICS => State::Statistics,
            com::STMT_CLOSE | com::STMT_SEND_LONG_DATA | com::QUIT => State::Silent,
            _ => State::OkOrErr,
        };
        Reply {
            state,
            deprecate_eof,
            ended: None,
        }
    }

    /// Whether the command gets no reply at all.
    pub fn is_silent(&self) -> bool {
        self.state == State::Silent
    }

    /// How the reply ended, once it has.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    /// Takes the next packet's payload.
    pub fn feed(&mut self, p: &[u8]) -> Result<Progress, CodecError> {
        let first = *p.first().ok_or(CodecError::Malformed("reply"))?;
        // 0xff starts no row, column or parameter definition: always ERR.
        if first == header::ERR && !matches!(self.state, State::Silent | State::Finished) {
            self.ended = Some(Ended::Err(ErrPacket::decode(p)?));
            self.state = State::Finished;
            return Ok(Progress::Done);
        }
        self.state = match self.state {
            State::Silent | State::Finished => return Err(CodecError::Malformed("unasked reply")),
            State::OkOrErr => return self.finish(ok_status(p)?),
            State::Statistics => return self.finish(0),
            State::ResultStart => {
                if first == header::OK {
                    return self.end_result(ok_status(p)?);
                }
                if first == header::LOCAL_INFILE {
                    // The gateway never offers LOCAL_FILES.
                    return Err(CodecError::Malformed("LOCAL INFILE request"));
                }
                let columns = Reader::new(p, "column count").lenenc()?;
                if columns == 0 {
                    return Err(CodecError::Malformed("column count"));
                }
                State::Columns { left: columns }
            }
            State::Columns { left } => match left - 1 {
                0 if self.deprecate_eof => State::Rows,
                0 => State::ColumnsEof,
                left => State::Columns { left },
            },
            State::ColumnsEof => {
                eof_status(p)?;
                State::Rows
            }
            State::Rows => {
                if let Some(status) = self.row_terminator(p)? {
                    return self.end_result(status);
                }
                State::Rows
            }
            State::PrepareStart => {
                let mut r = Reader::new(p, "COM_STMT_PREPARE_OK");
                r.u8()?;
                r.u32()?;
                let columns = u64::from(r.u16()?);
                let params = u64::from(r.u16()?);
                self.after_definitions(params, columns)?
            }
            State::Definitions { params, columns } => {
                if params > 0 {
                    match params - 1 {
                        0 if self.deprecate_eof => self.after_definitions(0, columns)?,
                        0 => State::DefinitionsEof { columns },
                        params => State::Definitions { params, columns },
                    }
                } else {
                    match columns - 1 {
                        0 if self.deprecate_eof => return self.finish(0),
                        0 => State::DefinitionsEof { columns: 0 },
                        columns => State::Definitions { params: 0, columns },
                    }
                }
            }
            State::DefinitionsEof { columns } => {
                eof_status(p)?;
                if columns == 0 {
                    return self.finish(0);
                }
                State::Definitions { params: 0, columns }
            }
            State::FieldList => {
                if first == header::EOF && p.len() < 9 {
                    return self.finish(0);
                }
                State::FieldList
            }
        };
        Ok(if self.state == State::Finished {
            Progress::Done
        } else {
            Progress::More
        })
    }

    /// The state after a prepare's OK or its parameter definitions.
    fn after_definitions(&mut self, params: u64, columns: u64) -> Result<State, CodecError> {
        Ok(match (params, columns) {
            (0, 0) => {
                self.ended = Some(Ended::Ok { status: 0 });
                State::Finished
            }
            (params, columns) => State::Definitions { params, columns },
        })
    }

    /// A row or the packet that ends the rows: EOF (< 9 bytes), or with
    /// DEPRECATE_EOF an OK with the EOF header (a row starting 0xfe is at
    /// least 16 MiB).
    fn row_terminator(&self, p: &[u8]) -> Result<Option<u16>, CodecError> {
        if p[0] != header::EOF {
            return Ok(None);
        }
        if self.deprecate_eof && p.len() < 0xff_ffff {
            return ok_status(p).map(Some);
        }
        if !self.deprecate_eof && p.len() < 9 {
            return eof_status(p).map(Some);
        }
        Ok(None)
    }

    fn end_result(&mut self, status: u16) -> Result<Progress, CodecError> {
        if status & status::MORE_RESULTS_EXISTS != 0 {
            self.state = State::ResultStart;
            return Ok(Progress::More);
        }
        self.finish(status)
    }

    fn finish(&mut self, status: u16) -> Result<Progress, CodecError> {
        if self.ended.is_none() {
            self.ended = Some(Ended::Ok { status });
        }
        self.state = State::Finished;
        Ok(Progress::Done)
    }

    /// Whether the last packet fed ended the reply.
    pub fn is_done(&self) -> bool {
        self.state == State::Finished
    }
}

/// The status flags of an OK packet (header 0x00 or 0xfe).
fn ok_status(p: &[u8]) -> Result<u16, CodecError> {
    let mut r = Reader::new(p, "OK");
    r.u8()?;
    r.lenenc()?;
    r.lenenc()?;
    r.u16()
}

/// The status flags of an EOF packet.
fn eof_status(p: &[u8]) -> Result<u16, CodecError> {
    if p.first() != Some(&header::EOF) || p.len() >= 9 {
        return Err(CodecError::Malformed("EOF"));
    }
    let mut r = Reader::new(p, "EOF");
    r.u8()?;
    r.u16()?;
    r.u16()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];
    const OK_MORE: &[u8] = &[0, 1, 0, 0x0a, 0, 0, 0];
    const EOF: &[u8] = &[0xfe, 0, 0, 2, 0];
    const OK_EOF: &[u8] = &[0xfe, 0, 0, 0x03, 0, 0, 0];

    fn run(command: u8, deprecate_eof: bool, packets: &[&[u8]]) -> (Vec<Progress>, Reply) {
        let mut reply = Reply::to(command, deprecate_eof);
        let progress = packets.iter().map(|p| reply.feed(p).unwrap()).collect();
        (progress, reply)
    }

    fn ends_at_last(progress: &[Progress]) {
        let (last, rest) = progress.split_last().unwrap();
        assert_eq!(*last, Progress::Done);
        assert!(rest.iter().all(|p| *p == Progress::More), "{progress:?}");
    }

    #[test]
    fn a_result_set_with_and_without_eof_packets() {
        let (p, r) = run(
            com::QUERY,
            false,
            &[&[1], b"coldef", EOF, b"\x01a", b"\x01b", EOF],
        );
        ends_at_last(&p);
        assert_eq!(r.ended(), Some(&Ended::Ok { status: 2 }));
        let (p, r) = run(com::QUERY, true, &[&[1], b"coldef", b"\x01a", OK_EOF]);
        ends_at_last(&p);
        assert_eq!(r.ended(), Some(&Ended::Ok { status: 3 }));
    }

    #[test]
    fn several_results_in_one_reply() {
        let more_eof: &[u8] = &[0xfe, 0, 0, 0x0a, 0];
        let (p, _) = run(
            com::QUERY,
            false,
            &[OK_MORE, &[1], b"coldef", EOF, b"\x01a", more_eof, OK],
        );
        ends_at_last(&p);
    }

    #[test]
    fn an_error_ends_the_reply_even_midway() {
        let err = b"\xff\x15\x04#HY000boom";
        let (p, r) = run(com::QUERY, false, &[&[1], b"coldef", EOF, b"\x01a", err]);
        ends_at_last(&p);
        assert!(matches!(r.ended(), Some(Ended::Err(e)) if e.code == 1045));
        let (p, _) = run(com::PING, false, &[err]);
        ends_at_last(&p);
    }

    #[test]
    fn prepare_replies_with_parameters_and_columns() {
        let prep = |cols: u8, params: u8| vec![0, 1, 0, 0, 0, cols, 0, params, 0, 0, 0, 0];
        let (p, _) = run(
            com::STMT_PREPARE,
            false,
            &[&prep(1, 2), b"p1", b"p2", EOF, b"c1", EOF],
        );
        ends_at_last(&p);
        let (p, _) = run(com::STMT_PREPARE, true, &[&prep(1, 2), b"p1", b"p2", b"c1"]);
        ends_at_last(&p);
        let (p, _) = run(com::STMT_PREPARE, true, &[&prep(0, 0)]);
        ends_at_last(&p);
        let (p, _) = run(com::STMT_PREPARE, false, &[&prep(2, 0), b"c1", b"c2", EOF]);
        ends_at_last(&p);
    }

    #[test]
    fn silent_commands_and_unasked_packets() {
        assert!(Reply::to(com::STMT_CLOSE, true).is_silent());
        let mut r = Reply::to(com::PING, true);
        r.feed(OK).unwrap();
        assert!(r.feed(OK).is_err());
        let mut r = Reply::to(com::QUERY, true);
        assert!(
            r.feed(&[0xfb, b'f']).is_err(),
            "LOCAL INFILE is never offered"
        );
    }
}
