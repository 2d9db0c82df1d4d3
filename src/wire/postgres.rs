//! PostgreSQL wire protocol v3: bytes ⇄ messages, no I/O. Constants mirror
//! `src/include/libpq/pqcomm.h` and the "Message Formats" chapter of the
//! PostgreSQL documentation.

use bytes::{BufMut, BytesMut};

/// Protocol 3.0 (`PG_PROTOCOL(3, 0)`).
pub const PROTOCOL_V3: i32 = 196_608;
/// `NEGOTIATE_SSL_CODE` = PG_PROTOCOL(1234, 5679).
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// `NEGOTIATE_GSS_CODE` = PG_PROTOCOL(1234, 5680).
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// `CANCEL_REQUEST_CODE` = PG_PROTOCOL(1234, 5678).
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// The server refuses startup packets above `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Authentication request codes (`AUTH_REQ_*` in `protocol.h`).
pub mod auth {
    pub const OK: i32 = 0;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

/// idgate's own names on the wire (not PostgreSQL's): the contract between
/// the gateway and `idgate tunnel` for extending a live session.
pub mod idgate {
    /// Startup parameter: `on` asks the gateway for a refresh ticket.
    pub const REFRESH: &str = "idgate.refresh";
    /// ParameterStatus of the login greeting carrying the ticket,
    /// `SESSION_ID:SECRET`, to a client that asked for one.
    pub const SESSION: &str = "idgate.session";
    /// Startup parameter that makes a connection a refresh of the session
    /// its ticket names (the password is the newer token), not a login.
    pub const REFRESH_SESSION: &str = "idgate.refresh_session";
}

/// The tag of each message a client sends.
pub mod frontend {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const EXECUTE: u8 = b'E';
    pub const DESCRIBE: u8 = b'D';
    pub const SYNC: u8 = b'S';
    pub const CLOSE: u8 = b'C';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const TERMINATE: u8 = b'X';
    /// PasswordMessage, and the SASL responses that share its tag.
    pub const PASSWORD: u8 = b'p';
}

/// The tag of each message a server sends that the gateway reads.
pub mod backend {
    pub const AUTHENTICATION: u8 = b'R';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const CLOSE_COMPLETE: u8 = b'3';
}

/// A transaction status in ReadyForQuery.
pub mod status {
    pub const IDLE: u8 = b'I';
    pub const FAILED: u8 = b'E';
}

/// What a Close or Describe names: a prepared statement or a portal.
pub mod object {
    pub const STATEMENT: u8 = b'S';
    pub const PORTAL: u8 = b'P';
}

/// The one-byte answers to an SSLRequest or GSSENCRequest.
pub mod encryption {
    pub const YES: u8 = b'S';
    pub const NO: u8 = b'N';
}

/// Tag and length before every message body.
pub const HEADER_LEN: usize = 5;

/// The body of a whole message `frame` (as `frame_at` delimits it).
#[must_use]
pub fn body(frame: &[u8]) -> &[u8] {
    &frame[HEADER_LEN..]
}

/// SQLSTATE codes we send ourselves (`errcodes.txt`).
pub mod sqlstate {
    pub const UNABLE_TO_CONNECT: &str = "08001";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("startup packet length {0} is out of range")]
    StartupLength(usize),
    #[error("unsupported protocol version {0}.{1}")]
    Version(i32, i32),
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("message of {0} bytes exceeds the limit")]
    TooLong(usize),
}

/// The first message of a connection, which has no type byte.
#[derive(Debug, PartialEq, Eq)]
pub enum StartupMessage {
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, key: i32 },
    Startup { params: Vec<(String, String)> },
}

/// Total length of the startup packet at the head of `buf`, once its length
/// word is there.
pub fn startup_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be_i32(&buf[..4]) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(CodecError::StartupLength(len));
    }
    Ok(Some(len))
}

/// Parse a whole startup packet (length word included).
pub fn parse_startup(packet: &[u8]) -> Result<StartupMessage, CodecError> {
    let code = be_i32(&packet[4..8]);
    let body = &packet[8..];
    match code {
        SSL_REQUEST_CODE => Ok(StartupMessage::SslRequest),
        GSSENC_REQUEST_CODE => Ok(StartupMessage::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            if body.len() != 8 {
                return Err(CodecError::Malformed("CancelRequest"));
            }
            Ok(StartupMessage::Cancel {
                pid: be_i32(&body[..4]),
                key: be_i32(&body[4..8]),
            })
        }
        PROTOCOL_V3 => {
            let mut params = Vec::new();
            let mut rest = body;
            loop {
                let (name, tail) = cstr(rest).ok_or(CodecError::Malformed("StartupMessage"))?;
                if name.is_empty() {
                    break;
                }
                let (value, tail) = cstr(tail).ok_or(CodecError::Malformed("StartupMessage"))?;
                params.push((name.to_owned(), value.to_owned()));
                rest = tail;
            }
            Ok(StartupMessage::Startup { params })
        }
        v => Err(CodecError::Version(v >> 16, v & 0xffff)),
    }
}

/// A complete regular message at the head of `buf`: its type byte and total
/// length (type byte and length word included). `max` bounds the length a
/// peer may announce.
pub fn frame_at(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, CodecError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = be_i32(&buf[1..5]);
    if len < 4 {
        return Err(CodecError::Malformed("message length"));
    }
    let total = len as usize + 1;
    if total > max {
        return Err(CodecError::TooLong(total));
    }
    Ok((buf.len() >= total).then_some((buf[0], total)))
}

/// The type byte and total length of the message starting at the head of
/// `buf`, once its 5-byte header is there (the body may not be).
pub fn frame_header(buf: &[u8]) -> Result<Option<(u8, usize)>, CodecError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = be_i32(&buf[1..5]);
    if len < 4 {
        return Err(CodecError::Malformed("message length"));
    }
    Ok(Some((buf[0], len as usize + 1)))
}

/// Walks a byte stream message by message across reads. Messages the
/// caller `holds` come out whole (the caller waits for the rest of one
/// before going on); all others stream out in whatever pieces the reads
/// give, so large DataRow/CopyData traffic is never buffered or copied.
#[derive(Debug, Default)]
pub struct Splitter {
    /// Bytes of a streaming message still to come.
    streaming: usize,
}

/// One piece of a read buffer, as byte ranges into it.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Part or all of a message that is not held: pass it on.
    Stream(std::ops::Range<usize>),
    /// A whole held message (type byte and length word included).
    Held {
        tag: u8,
        frame: std::ops::Range<usize>,
    },
}

impl Splitter {
    /// The next piece of `buf` from `pos`, or `None` when what is left is
    /// the incomplete start of a message (keep it and read more). `max_held`
    /// bounds the held messages a peer may announce.
    pub fn next(
        &mut self,
        buf: &[u8],
        pos: usize,
        holds: impl Fn(u8) -> bool,
        max_held: usize,
    ) -> Result<Option<Piece>, CodecError> {
        let rest = buf.len() - pos;
        if rest == 0 {
            return Ok(None);
        }
        if self.streaming > 0 {
            let n = self.streaming.min(rest);
            self.streaming -= n;
            return Ok(Some(Piece::Stream(pos..pos + n)));
        }
        let Some((tag, len)) = frame_header(&buf[pos..])? else {
            return Ok(None);
        };
        if !holds(tag) {
            let n = len.min(rest);
            self.streaming = len - n;
            return Ok(Some(Piece::Stream(pos..pos + n)));
        }
        if len > max_held {
            return Err(CodecError::TooLong(len));
        }
        if rest < len {
            return Ok(None);
        }
        Ok(Some(Piece::Held {
            tag,
            frame: pos..pos + len,
        }))
    }

    /// Whether part of a streamed message has gone out and the rest is
    /// still to come.
    pub fn mid_message(&self) -> bool {
        self.streaming > 0
    }

    /// Bytes still missing for the held message at `pos`, to reserve room.
    pub fn missing(buf: &[u8], pos: usize) -> usize {
        match frame_header(&buf[pos..]) {
            Ok(Some((_, len))) => len.saturating_sub(buf.len() - pos),
            _ => 5,
        }
    }
}

// ---- Backend messages we write (server → client) ----

fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

fn end(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn authentication(buf: &mut BytesMut, code: i32) {
    let at = begin(buf, b'R');
    buf.put_i32(code);
    end(buf, at);
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name);
    put_cstr(buf, value);
    end(buf, at);
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, key: i32) {
    let at = begin(buf, b'K');
    buf.put_i32(pid);
    buf.put_i32(key);
    end(buf, at);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let at = begin(buf, b'Z');
    buf.put_u8(status);
    end(buf, at);
}

/// An ErrorResponse ('E') or, with `notice`, a NoticeResponse ('N').
pub fn error_response(buf: &mut BytesMut, e: &ErrorFields<'_>) {
    let at = begin(buf, if e.notice { b'N' } else { b'E' });
    for (field, value) in [
        (b'S', Some(e.severity)),
        (b'V', Some(e.severity)),
        (b'C', Some(e.code)),
        (b'M', Some(e.message)),
        (b'D', e.detail),
        (b'H', e.hint),
    ] {
        if let Some(v) = value {
            buf.put_u8(field);
            put_cstr(buf, v);
        }
    }
    buf.put_u8(0);
    end(buf, at);
}

/// Fields of an error we raise ourselves.
pub struct ErrorFields<'a> {
    pub severity: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
    pub notice: bool,
}

impl<'a> ErrorFields<'a> {
    pub fn fatal(code: &'a str, message: &'a str) -> Self {
        Self {
            severity: "FATAL",
            code,
            message,
            detail: None,
            hint: None,
            notice: false,
        }
    }
}

// ---- Frontend messages we write (gateway → upstream) ----

pub fn ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_i32(SSL_REQUEST_CODE);
}

pub fn cancel_request(buf: &mut BytesMut, pid: i32, key: i32) {
    buf.put_i32(16);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_i32(key);
}

pub fn startup_message(buf: &mut BytesMut, params: &[(&str, &str)]) {
    let at = buf.len();
    buf.put_i32(0);
    buf.put_i32(PROTOCOL_V3);
    for (k, v) in params {
        put_cstr(buf, k);
        put_cstr(buf, v);
    }
    buf.put_u8(0);
    end(buf, at);
}

/// PasswordMessage ('p') carrying a NUL-terminated password or md5 digest.
pub fn password_message(buf: &mut BytesMut, password: &[u8]) {
    let at = begin(buf, b'p');
    buf.put_slice(password);
    buf.put_u8(0);
    end(buf, at);
}

pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, b'p');
    put_cstr(buf, mechanism);
    buf.put_i32(data.len() as i32);
    buf.put_slice(data);
    end(buf, at);
}

pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'p');
    buf.put_slice(data);
    end(buf, at);
}

/// Query ('Q').
pub fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    put_cstr(buf, sql);
    end(buf, at);
}

/// Execute ('E') of `portal`, all rows.
pub fn execute(buf: &mut BytesMut, portal: &str) {
    let at = begin(buf, b'E');
    put_cstr(buf, portal);
    buf.put_i32(0);
    end(buf, at);
}

/// Parse ('P') of statement `name` from `definition`: a Parse body's text
/// and parameter types, as the client sent them.
pub fn parse_message(buf: &mut BytesMut, name: &str, definition: &[u8]) {
    let at = begin(buf, b'P');
    put_cstr(buf, name);
    buf.put_slice(definition);
    end(buf, at);
}

/// Parse ('P') of the unnamed statement, parameter types left to the server.
pub fn parse_unnamed(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'P');
    put_cstr(buf, "");
    put_cstr(buf, sql);
    buf.put_i16(0);
    end(buf, at);
}

/// Bind ('B') of the unnamed statement to the unnamed portal, with text
/// parameters and text results.
pub fn bind_text(buf: &mut BytesMut, params: &[&str]) {
    let at = begin(buf, b'B');
    put_cstr(buf, "");
    put_cstr(buf, "");
    buf.put_i16(0);
    buf.put_i16(params.len() as i16);
    for p in params {
        buf.put_i32(p.len() as i32);
        buf.put_slice(p.as_bytes());
    }
    buf.put_i16(0);
    end(buf, at);
}

/// Close ('C') of statement (`S`) or portal (`P`) `name`.
pub fn close(buf: &mut BytesMut, kind: u8, name: &str) {
    let at = begin(buf, b'C');
    buf.put_u8(kind);
    put_cstr(buf, name);
    end(buf, at);
}

pub fn sync(buf: &mut BytesMut) {
    let at = begin(buf, b'S');
    end(buf, at);
}

pub fn terminate(buf: &mut BytesMut) {
    let at = begin(buf, b'X');
    end(buf, at);
}

// ---- Parsing message bodies ----

/// The password in a PasswordMessage body (NUL-terminated).
pub fn parse_password(body: &[u8]) -> Result<&[u8], CodecError> {
    match body.split_last() {
        Some((0, pw)) if !pw.contains(&0) => Ok(pw),
        _ => Err(CodecError::Malformed("PasswordMessage")),
    }
}

/// Query ('Q') body → SQL text.
pub fn parse_query(body: &[u8]) -> Result<&str, CodecError> {
    cstr(body)
        .map(|(s, _)| s)
        .ok_or(CodecError::Malformed("Query"))
}

/// Parse ('P') body → (statement name, SQL text).
pub fn parse_parse(body: &[u8]) -> Result<(&str, &str), CodecError> {
    let (name, rest) = cstr(body).ok_or(CodecError::Malformed("Parse"))?;
    let (sql, _) = cstr(rest).ok_or(CodecError::Malformed("Parse"))?;
    Ok((name, sql))
}

/// The parameter type OIDs a Parse ('P') body declares (0: unspecified).
pub fn parse_parameter_types(body: &[u8]) -> Result<impl Iterator<Item = u32> + '_, CodecError> {
    let malformed = CodecError::Malformed("Parse");
    let (_, rest) = cstr(body).ok_or(malformed.clone())?;
    let (_, rest) = cstr(rest).ok_or(malformed.clone())?;
    let count = rest
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(malformed.clone())?;
    let oids = rest.get(2..2 + 4 * count).ok_or(malformed)?;
    Ok(oids
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
}

/// ParameterStatus ('S') body → (name, value).
pub fn parse_parameter_status(body: &[u8]) -> Result<(&str, &str), CodecError> {
    let (name, rest) = cstr(body).ok_or(CodecError::Malformed("ParameterStatus"))?;
    let (value, _) = cstr(rest).ok_or(CodecError::Malformed("ParameterStatus"))?;
    Ok((name, value))
}

/// DataRow ('D') body → each column's text (`None` for NULL).
pub fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, CodecError> {
    let malformed = || CodecError::Malformed("DataRow");
    let count = body
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(malformed)?;
    let mut rest = &body[2..];
    let mut columns = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = rest.get(..4).map(be_i32).ok_or_else(malformed)?;
        rest = &rest[4..];
        if len < 0 {
            columns.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| malformed())?;
        let value = rest.get(..len).ok_or_else(malformed)?;
        columns.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = &rest[len..];
    }
    Ok(columns)
}

/// Bind ('B') body → (portal, statement name).
pub fn parse_bind(body: &[u8]) -> Result<(&str, &str), CodecError> {
    let (portal, rest) = cstr(body).ok_or(CodecError::Malformed("Bind"))?;
    let (stmt, _) = cstr(rest).ok_or(CodecError::Malformed("Bind"))?;
    Ok((portal, stmt))
}

/// Execute ('E') or Close/Describe body's name field.
pub fn parse_name(body: &[u8]) -> Result<&str, CodecError> {
    cstr(body)
        .map(|(s, _)| s)
        .ok_or(CodecError::Malformed("Execute"))
}

/// Close ('C' from the client) body → (kind `S`/`P`, name).
pub fn parse_close(body: &[u8]) -> Result<(u8, &str), CodecError> {
    let (&kind, rest) = body.split_first().ok_or(CodecError::Malformed("Close"))?;
    Ok((kind, parse_name(rest)?))
}

/// Rows affected or returned, from a CommandComplete tag such as
/// `INSERT 0 5`, `SELECT 3`, `COPY 1000`.
pub fn command_complete_rows(body: &[u8]) -> Option<u64> {
    let (tag, _) = cstr(body)?;
    tag.rsplit(' ').next()?.parse().ok()
}

/// The fields of an ErrorResponse or NoticeResponse body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorNotice {
    pub severity: String,
    pub code: String,
    pub message: String,
}

pub fn parse_error(body: &[u8]) -> ErrorNotice {
    let mut out = ErrorNotice::default();
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some((value, tail)) = cstr(tail) else {
            break;
        };
        match field {
            b'V' => value.clone_into(&mut out.severity),
            b'S' if out.severity.is_empty() => value.clone_into(&mut out.severity),
            b'C' => value.clone_into(&mut out.code),
            b'M' => value.clone_into(&mut out.message),
            _ => {}
        }
        rest = tail;
    }
    out
}

pub fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A NUL-terminated UTF-8 string at the head of `b`, and what follows it.
pub fn cstr(b: &[u8]) -> Option<(&str, &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    let s = std::str::from_utf8(&b[..nul]).ok()?;
    Some((s, &b[nul + 1..]))
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

#[cfg(test)]
mod tests;
