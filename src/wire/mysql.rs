//! MySQL/MariaDB client/server protocol: bytes ⇄ packets, no I/O.
//! Constants mirror MySQL's `include/mysql_com.h` and MariaDB's
//! `include/mysql_com.h` (the `MARIADB_CLIENT_*` extended capabilities);
//! layouts follow the "Client/Server Protocol" chapters of both manuals.

use bytes::{BufMut, BytesMut};

/// A packet's payload is at most this long; a longer one is split, and a
/// payload of exactly this length is followed by another packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Bytes before the payload: 3 of length, 1 of sequence id.
pub const HEADER_LEN: usize = 4;
/// The scramble (nonce) length every auth plugin here uses.
pub const SCRAMBLE_LEN: usize = 20;
/// Collation id of utf8mb4_general_ci, the character set the gateway speaks.
pub const UTF8MB4: u8 = 45;

/// Capability flags (`CLIENT_*`).
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
}

/// Auth plugin names, and the bytes of caching_sha2_password's exchange.
pub mod plugin {
    pub const NATIVE_PASSWORD: &[u8] = b"mysql_native_password";
    pub const CACHING_SHA2_PASSWORD: &[u8] = b"caching_sha2_password";
    pub const CLEAR_PASSWORD: &[u8] = b"mysql_clear_password";
    /// MariaDB's `ed25519` plugin (client side `client_ed25519`).
    pub const ED25519: &[u8] = b"client_ed25519";

    /// caching_sha2_password's AuthMoreData after the scramble: the server
    /// had the password cached (fast auth) or wants the password itself.
    pub const FAST_AUTH_OK: u8 = 3;
    pub const FULL_AUTH: u8 = 4;
    /// The client's request for the server's RSA key (full auth, no TLS).
    pub const REQUEST_PUBLIC_KEY: u8 = 2;
}

/// Command bytes (`enum_server_command`).
pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// First payload bytes of the generic response packets.
pub mod header {
    pub const OK: u8 = 0x00;
    pub const AUTH_MORE_DATA: u8 = 0x01;
    /// A LOCAL INFILE request in a reply; in a text row, a NULL value.
    pub const LOCAL_INFILE: u8 = 0xfb;
    pub const NULL_VALUE: u8 = 0xfb;
    /// EOF, or an AuthSwitchRequest during login.
    pub const EOF: u8 = 0xfe;
    pub const ERR: u8 = 0xff;
}

/// Server error codes we send ourselves (`mysqld_error.h`).
pub mod errcode {
    pub const ER_CON_COUNT_ERROR: u16 = 1040;
    pub const ER_HANDSHAKE_ERROR: u16 = 1043;
    pub const ER_DBACCESS_DENIED_ERROR: u16 = 1044;
    pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
    pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
    pub const ER_BAD_DB_ERROR: u16 = 1049;
    pub const ER_SERVER_SHUTDOWN: u16 = 1053;
    pub const ER_NO_SUCH_THREAD: u16 = 1094;
    pub const ER_UNKNOWN_ERROR: u16 = 1105;
    pub const ER_TABLEACCESS_DENIED_ERROR: u16 = 1142;
    pub const ER_SPECIFIC_ACCESS_DENIED_ERROR: u16 = 1227;
    pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
    pub const ER_CONNECTION_KILLED: u16 = 1927;
    pub const ER_NET_PACKETS_OUT_OF_ORDER: u16 = 1156;
    pub const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("malformed {0} packet")]
    Malformed(&'static str),
    #[error("packet of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("unsupported protocol version {0}")]
    Version(u8),
}

impl CodecError {
    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::Malformed(_) => "malformed",
            CodecError::TooLong(_) => "too_long",
            CodecError::Version(_) => "version",
        }
    }
}

/// The packet at the start of `buf`, when whole: `(sequence id, payload
/// length)`; the packet takes `HEADER_LEN + length` bytes. A payload longer
/// than `max` is an error before it is buffered.
pub fn frame_at(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, CodecError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let (seq, len) = decode_header(head, max)?;
    Ok((buf.len() >= HEADER_LEN + len).then_some((seq, len)))
}

/// A packet header: `(sequence id, payload length)`, the length at most
/// `max`.
pub fn decode_header(head: &[u8; HEADER_LEN], max: usize) -> Result<(u8, usize), CodecError> {
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    if len > max {
        return Err(CodecError::TooLong(len));
    }
    Ok((head[3], len))
}

/// Appends `payload` as packets starting at sequence id `seq`, split at
/// `MAX_PAYLOAD` (with the empty closing packet a payload of a multiple of
/// it needs); returns the next sequence id.
pub fn write_packet(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    let mut chunks = payload.chunks(MAX_PAYLOAD);
    let mut last_len = usize::MAX;
    for chunk in chunks.by_ref() {
        put_header(out, chunk.len(), seq);
        out.put_slice(chunk);
        seq = seq.wrapping_add(1);
        last_len = chunk.len();
    }
    if last_len == MAX_PAYLOAD || payload.is_empty() {
        put_header(out, 0, seq);
        seq = seq.wrapping_add(1);
    }
    seq
}

fn put_header(out: &mut BytesMut, len: usize, seq: u8) {
    let len = u32::try_from(len).expect("chunk of at most MAX_PAYLOAD");
    out.put_slice(&len.to_le_bytes()[..3]);
    out.put_u8(seq);
}

/// Reads the protocol's basic types from a payload, failing as `what`.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn err(&self) -> CodecError {
        CodecError::Malformed(self.what)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(self.err());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string (the NUL consumed, not returned).
    pub fn cstr(&mut self) -> Result<&'a [u8], CodecError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.err())?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// A NUL-terminated string, or the rest when the NUL is missing (some
    /// clients end the last field of a packet without one).
    pub fn cstr_or_rest(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(end) => {
                let s = &self.buf[..end];
                self.buf = &self.buf[end + 1..];
                s
            }
            None => self.rest(),
        }
    }

    /// A length-encoded integer.
    pub fn lenenc(&mut self) -> Result<u64, CodecError> {
        match self.u8()? {
            n @ 0..=0xfa => Ok(u64::from(n)),
            0xfc => Ok(u64::from(self.u16()?)),
            0xfd => {
                let b = self.bytes(3)?;
                Ok(u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16)
            }
            0xfe => {
                let b = self.bytes(8)?;
                Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            _ => Err(self.err()),
        }
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = usize::try_from(self.lenenc()?).map_err(|_| self.err())?;
        self.bytes(n)
    }
}

pub fn put_lenenc(out: &mut BytesMut, n: u64) {
    match n {
        0..=0xfa => out.put_u8(n as u8),
        0xfb..=0xffff => {
            out.put_u8(0xfc);
            out.put_u16_le(n as u16);
        }
        0x1_0000..=0xff_ffff => {
            out.put_u8(0xfd);
            out.put_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.put_u8(0xfe);
            out.put_u64_le(n);
        }
    }
}

pub fn put_lenenc_bytes(out: &mut BytesMut, b: &[u8]) {
    put_lenenc(out, b.len() as u64);
    out.put_slice(b);
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// The server's first packet (Protocol::HandshakeV10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: Vec<u8>,
    pub connection_id: u32,
    /// The auth plugin's nonce (20 bytes for every plugin here).
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities, in the last four reserved bytes.
    pub mariadb_capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: Vec<u8>,
}

impl Handshake {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(10);
        put_cstr(out, &self.server_version);
        out.put_u32_le(self.connection_id);
        let (first, second) = self.scramble.split_at(self.scramble.len().min(8));
        out.put_slice(first);
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.charset);
        out.put_u16_le(self.status);
        out.put_u16_le((self.capabilities >> 16) as u16);
        out.put_u8(u8::try_from(self.scramble.len() + 1).unwrap_or(0));
        out.put_slice(&[0; 6]);
        out.put_u32_le(self.mariadb_capabilities);
        // Part 2 is NUL-terminated and at least 13 bytes with the NUL.
        put_cstr(out, second);
        for _ in second.len() + 1..13 {
            out.put_u8(0);
        }
        put_cstr(out, &self.auth_plugin);
    }

    pub fn decode(payload: &[u8]) -> Result<Handshake, CodecError> {
        let mut r = Reader::new(payload, "handshake");
        let version = r.u8()?;
        if version != 10 {
            return Err(CodecError::Version(version));
        }
        let server_version = r.cstr()?.to_vec();
        let connection_id = r.u32()?;
        let mut scramble = r.bytes(8)?.to_vec();
        r.u8()?;
        let low = r.u16()?;
        let charset = r.u8()?;
        let status = r.u16()?;
        let high = r.u16()?;
        let capabilities = u32::from(low) | u32::from(high) << 16;
        let data_len = usize::from(r.u8()?);
        r.bytes(6)?;
        let mariadb_capabilities = r.u32()?;
        if capabilities & caps::SECURE_CONNECTION != 0 {
            let len = data_len.saturating_sub(8).max(13);
            let part = r.bytes(len)?;
            // The last byte is the NUL that ends the scramble.
            let part = part.strip_suffix(&[0]).unwrap_or(part);
            scramble.extend_from_slice(part);
        }
        let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 {
            r.cstr_or_rest().to_vec()
        } else {
            Vec::new()
        };
        Ok(Handshake {
            server_version,
            connection_id,
            scramble,
            capabilities,
            mariadb_capabilities,
            charset,
            status,
            auth_plugin,
        })
    }
}

/// The client's answer to the handshake (Protocol::HandshakeResponse41),
/// or, when only its first 32 bytes came and `SSL` is set, an SSLRequest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<Vec<u8>>,
    /// Connection attributes (`CONNECT_ATTRS`), in order.
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The fixed part every HandshakeResponse41 and SSLRequest starts with.
pub const SSL_REQUEST_LEN: usize = 32;

impl HandshakeResponse {
    /// Whether `payload` is an SSLRequest: the fixed part alone, asking
    /// for TLS.
    pub fn is_ssl_request(payload: &[u8]) -> bool {
        payload.len() == SSL_REQUEST_LEN
            && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) & caps::SSL != 0
    }

    pub fn decode(payload: &[u8]) -> Result<HandshakeResponse, CodecError> {
        let mut r = Reader::new(payload, "handshake response");
        let capabilities = r.u32()?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(CodecError::Malformed("pre-4.1 handshake response"));
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        r.bytes(23)?;
        let user = r.cstr()?.to_vec();
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.bytes(n)?.to_vec()
        } else {
            r.cstr()?.to_vec()
        };
        let database = (capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty())
            .then(|| r.cstr_or_rest().to_vec());
        let auth_plugin = (capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty())
            .then(|| r.cstr_or_rest().to_vec());
        let mut attributes = Vec::new();
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let mut attrs = Reader::new(r.lenenc_bytes()?, "connection attributes");
            while !attrs.is_empty() {
                let key = attrs.lenenc_bytes()?.to_vec();
                let value = attrs.lenenc_bytes()?.to_vec();
                attributes.push((key, value));
            }
        }
        Ok(HandshakeResponse {
            capabilities,
            max_packet,
            charset,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
        })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.charset);
        out.put_slice(&[0; 23]);
        put_cstr(out, &self.user);
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(out, &self.auth_response);
        } else {
            out.put_u8(u8::try_from(self.auth_response.len()).unwrap_or(u8::MAX));
            out.put_slice(&self.auth_response[..self.auth_response.len().min(255)]);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            put_cstr(out, self.database.as_deref().unwrap_or_default());
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            put_cstr(out, self.auth_plugin.as_deref().unwrap_or_default());
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            let mut attrs = BytesMut::new();
            for (k, v) in &self.attributes {
                put_lenenc_bytes(&mut attrs, k);
                put_lenenc_bytes(&mut attrs, v);
            }
            put_lenenc_bytes(out, &attrs);
        }
    }

    /// The SSLRequest a client sends before its TLS handshake.
    pub fn encode_ssl_request(&self, out: &mut BytesMut) {
        out.put_u32_le(self.capabilities | caps::SSL);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.charset);
        out.put_slice(&[0; 23]);
    }
}

/// What the server may answer during login, after the client's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthReply<'a> {
    Ok,
    Err(ErrPacket),
    /// Switch to `plugin` with a fresh nonce.
    Switch {
        plugin: &'a [u8],
        data: &'a [u8],
    },
    /// Plugin-specific data (e.g. caching_sha2's fast-auth result).
    More(&'a [u8]),
}

impl<'a> AuthReply<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<AuthReply<'a>, CodecError> {
        match payload.first() {
            Some(&header::OK) => Ok(AuthReply::Ok),
            Some(&header::ERR) => Ok(AuthReply::Err(ErrPacket::decode(payload)?)),
            Some(&header::EOF) => {
                let mut r = Reader::new(&payload[1..], "auth switch request");
                let plugin = r.cstr_or_rest();
                let data = r.rest();
                Ok(AuthReply::Switch {
                    plugin,
                    data: data.strip_suffix(&[0]).unwrap_or(data),
                })
            }
            Some(&header::AUTH_MORE_DATA) => Ok(AuthReply::More(&payload[1..])),
            _ => Err(CodecError::Malformed("auth reply")),
        }
    }
}

/// An AuthSwitchRequest payload: switch to `plugin`, nonce `data`.
pub fn encode_auth_switch(out: &mut BytesMut, plugin: &[u8], data: &[u8]) {
    out.put_u8(header::EOF);
    put_cstr(out, plugin);
    put_cstr(out, data);
}

/// An OK packet (`header::OK`), as the server sends after a login or a
/// statement.
pub fn encode_ok(out: &mut BytesMut, affected_rows: u64, status: u16) {
    out.put_u8(header::OK);
    put_lenenc(out, affected_rows);
    put_lenenc(out, 0);
    out.put_u16_le(status);
    out.put_u16_le(0);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sql_state: [u8; 5],
    pub message: String,
}

impl ErrPacket {
    pub fn new(code: u16, sql_state: &str, message: impl Into<String>) -> Self {
        let mut state = *b"HY000";
        if sql_state.len() == 5 {
            state.copy_from_slice(sql_state.as_bytes());
        }
        ErrPacket {
            code,
            sql_state: state,
            message: message.into(),
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(header::ERR);
        out.put_u16_le(self.code);
        out.put_u8(b'#');
        out.put_slice(&self.sql_state);
        out.put_slice(self.message.as_bytes());
    }

    /// An ERR payload; with or without the `#SQLSTATE` marker (servers
    /// omit it before the handshake is done).
    pub fn decode(payload: &[u8]) -> Result<ErrPacket, CodecError> {
        let mut r = Reader::new(payload, "ERR");
        if r.u8()? != header::ERR {
            return Err(CodecError::Malformed("ERR"));
        }
        let code = r.u16()?;
        let mut sql_state = *b"HY000";
        let rest = r.rest();
        let message = match rest.split_first() {
            Some((b'#', tail)) if tail.len() >= 5 => {
                sql_state.copy_from_slice(&tail[..5]);
                &tail[5..]
            }
            _ => rest,
        };
        Ok(ErrPacket {
            code,
            sql_state,
            message: String::from_utf8_lossy(message).into_owned(),
        })
    }
}

/// Whether `payload` is an EOF packet (not a row that starts with 0xfe,
/// which is at least 9 bytes long).
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&header::EOF) && payload.len() < 9
}

/// A client command: its byte and the body after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    pub code: u8,
    pub body: &'a [u8],
}

impl<'a> Command<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Command<'a>, CodecError> {
        let (&code, body) = payload
            .split_first()
            .ok_or(CodecError::Malformed("command"))?;
        Ok(Command { code, body })
    }

    /// The statement id of a COM_STMT_EXECUTE/CLOSE/RESET/SEND_LONG_DATA/
    /// FETCH, which all begin with it.
    pub fn statement_id(&self) -> Result<u32, CodecError> {
        Reader::new(self.body, "statement command").u32()
    }
}

/// COM_STMT_PREPARE_OK: `(statement id, columns, params)`.
pub fn decode_prepare_ok(payload: &[u8]) -> Result<(u32, u16, u16), CodecError> {
    let mut r = Reader::new(payload, "COM_STMT_PREPARE_OK");
    if r.u8()? != header::OK {
        return Err(CodecError::Malformed("COM_STMT_PREPARE_OK"));
    }
    let id = r.u32()?;
    let columns = r.u16()?;
    let params = r.u16()?;
    Ok((id, columns, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(payload: &[u8]) -> (BytesMut, u8) {
        let mut out = BytesMut::new();
        let next = write_packet(&mut out, 3, payload);
        (out, next)
    }

    #[test]
    fn packets_are_framed_and_split_at_the_maximum() {
        let (out, next) = packets(b"\x03select 1");
        assert_eq!(&out[..4], &[9, 0, 0, 3]);
        assert_eq!(next, 4);
        assert_eq!(frame_at(&out, 1024).unwrap(), Some((3, 9)));
        assert_eq!(frame_at(&out[..8], 1024).unwrap(), None);
        assert_eq!(frame_at(&out, 8), Err(CodecError::TooLong(9)));

        let big = vec![7u8; MAX_PAYLOAD];
        let (out, next) = packets(&big);
        // One full packet and the empty one that ends it.
        assert_eq!(out.len(), MAX_PAYLOAD + 2 * HEADER_LEN);
        assert_eq!(next, 5);
        assert_eq!(&out[MAX_PAYLOAD + 4..], &[0, 0, 0, 4]);
    }

    #[test]
    fn lenenc_round_trips_at_every_width() {
        for n in [
            0,
            250,
            251,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = BytesMut::new();
            put_lenenc(&mut out, n);
            let mut r = Reader::new(&out, "test");
            assert_eq!(r.lenenc().unwrap(), n);
            assert!(r.is_empty());
        }
        assert!(Reader::new(&[0xfb], "test").lenenc().is_err());
        assert!(Reader::new(&[0xfc, 1], "test").lenenc().is_err());
    }

    #[test]
    fn handshake_round_trips() {
        let h = Handshake {
            server_version: b"8.0.36-idgate".to_vec(),
            connection_id: 42,
            scramble: (1..=20).collect(),
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::SSL
                | caps::CONNECT_ATTRS,
            mariadb_capabilities: 0,
            charset: 45,
            status: 2,
            auth_plugin: b"mysql_native_password".to_vec(),
        };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(Handshake::decode(&out).unwrap(), h);
        assert_eq!(
            Handshake::decode(&[9, 0]),
            Err(CodecError::Version(9)),
            "protocol 9 is refused"
        );
        assert!(Handshake::decode(&out[..20]).is_err());
    }

    #[test]
    fn handshake_response_round_trips_and_ssl_request_is_recognised() {
        let r = HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
                | caps::CONNECT_WITH_DB
                | caps::CONNECT_ATTRS,
            max_packet: 1 << 24,
            charset: 45,
            user: b"reader".to_vec(),
            auth_response: vec![0xaa; 300],
            database: Some(b"orders".to_vec()),
            auth_plugin: Some(b"mysql_clear_password".to_vec()),
            attributes: vec![(b"_client_name".to_vec(), b"libmariadb".to_vec())],
        };
        let mut out = BytesMut::new();
        r.encode(&mut out);
        assert_eq!(HandshakeResponse::decode(&out).unwrap(), r);
        assert!(!HandshakeResponse::is_ssl_request(&out));
        let mut ssl = BytesMut::new();
        r.encode_ssl_request(&mut ssl);
        assert!(HandshakeResponse::is_ssl_request(&ssl));
        // Truncated anywhere: an error, never a panic.
        for cut in 0..out.len() - 1 {
            let _ = HandshakeResponse::decode(&out[..cut]);
        }
        assert!(HandshakeResponse::decode(&out[..40]).is_err());
    }

    #[test]
    fn auth_replies_and_err_packets() {
        let mut out = BytesMut::new();
        encode_auth_switch(&mut out, b"mysql_clear_password", b"");
        assert_eq!(
            AuthReply::decode(&out).unwrap(),
            AuthReply::Switch {
                plugin: b"mysql_clear_password",
                data: b""
            }
        );
        let err = ErrPacket::new(1045, "28000", "Access denied");
        let mut out = BytesMut::new();
        err.encode(&mut out);
        assert_eq!(AuthReply::decode(&out).unwrap(), AuthReply::Err(err));
        // Before the handshake a server sends no SQLSTATE.
        let bare = ErrPacket::decode(b"\xff\x10\x04Too many connections").unwrap();
        assert_eq!(bare.code, 1040);
        assert_eq!(&bare.sql_state, b"HY000");
        assert_eq!(bare.message, "Too many connections");
        assert_eq!(
            AuthReply::decode(b"\x01\x03").unwrap(),
            AuthReply::More(b"\x03")
        );
        assert!(AuthReply::decode(b"\x05").is_err());
        assert!(is_eof(b"\xfe\x00\x00\x02\x00"));
        assert!(!is_eof(&[0xfe; 9]));
    }
}
