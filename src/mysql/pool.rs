//! The MySQL side of the upstream pools (`core::pool`): a connection is
//! opened identity-neutral as the role's user for a [`Variant`] (the
//! capabilities and character set its clients speak, and whether it is
//! read-only), set up (`SET SESSION TRANSACTION READ ONLY` when the
//! session may not write), and between people reset with
//! COM_RESET_CONNECTION and set up again.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::{self, caps, com};
use super::response::{Ended, Progress, Reply};
use super::upstream::{self, UpstreamError};
use crate::config::{RoleConfig, TargetConfig};
use crate::core::pool;
use crate::tls::{StreamRead, StreamWrite};

pub use crate::core::pool::PoolStats;

pub type Pool = pool::Pool<Connector>;
pub type Pools = pool::Pools<Connector>;
pub type Lease = pool::Lease<Connector>;
pub type PoolError = pool::PoolError<UpstreamError>;

/// The capabilities that change what travels on a connection: only
/// clients that agree on all of them can share one. (`IGNORE_SPACE` is
/// never passed on: it sets an sql_mode under which the server would read
/// names differently from the gateway.)
pub const PROTOCOL_CAPS: u32 = caps::FOUND_ROWS
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::DEPRECATE_EOF;

/// What a connection was opened with; only equal variants share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    pub read_only: bool,
    /// The client's capabilities within `PROTOCOL_CAPS`.
    pub capabilities: u32,
    /// The client's character set (collation id).
    pub charset: u8,
}

/// An open upstream connection, at rest after an OK.
pub struct ServerConn {
    pub rx: StreamRead,
    pub tx: StreamWrite,
    /// The server's id for this connection (what `KILL QUERY` names).
    pub connection_id: u32,
    /// Capabilities agreed with the server.
    pub capabilities: u32,
    /// Read buffers for upstream → client and client → upstream, kept
    /// with the connection so an idle client holds none.
    pub buf: BytesMut,
    pub cbuf: BytesMut,
    read_only: bool,
}

/// Opens the connections of one (target, role).
pub struct Connector {
    target: TargetConfig,
    role: RoleConfig,
    tls: Option<Arc<ClientConfig>>,
}

impl pool::Connector for Connector {
    type Conn = ServerConn;
    type Variant = Variant;
    type Error = UpstreamError;

    async fn open(&self, variant: &Variant) -> Result<ServerConn, UpstreamError> {
        let u = upstream::connect(
            &self.target,
            self.tls.as_ref(),
            &self.role,
            variant.capabilities,
            variant.charset,
            &[("program_name", "idgate")],
        )
        .await?;
        let (rx, tx) = crate::tls::split(u.stream);
        let mut conn = ServerConn {
            rx,
            tx,
            connection_id: u.connection_id,
            capabilities: u.capabilities,
            buf: BytesMut::with_capacity(4096),
            cbuf: BytesMut::with_capacity(4096),
            read_only: variant.read_only,
        };
        conn.check_sql_mode().await?;
        conn.set_up().await?;
        Ok(conn)
    }

    /// One non-blocking read, no round trip.
    fn is_alive(conn: &mut ServerConn) -> bool {
        let mut probe = [0u8; 1];
        let mut cx = Context::from_waker(Waker::noop());
        matches!(pin!(conn.rx.read(&mut probe)).poll(&mut cx), Poll::Pending)
    }
}

impl ServerConn {
    pub fn deprecate_eof(&self) -> bool {
        self.capabilities & caps::DEPRECATE_EOF != 0
    }

    /// Defence in depth for a session that may not write: even a
    /// statement the classifier misjudged cannot, and a reset comes back
    /// here.
    async fn set_up(&mut self) -> Result<(), UpstreamError> {
        if self.read_only {
            self.run("SET SESSION TRANSACTION READ ONLY").await?;
        }
        Ok(())
    }

    /// The gateway must read statements as the server will: refuse a
    /// server whose default sql_mode changes how SQL is read.
    async fn check_sql_mode(&mut self) -> Result<(), UpstreamError> {
        let modes = self.value("SELECT @@SESSION.sql_mode").await?;
        crate::sql::sql_mode_is_followable(modes.as_deref().unwrap_or_default())
            .map_err(UpstreamError::Unfollowable)
    }

    /// The one value of a one-column, one-row query.
    async fn value(&mut self, sql: &str) -> Result<Option<String>, UpstreamError> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
        codec::write_packet(&mut out, 0, &payload);
        self.tx.write_all(&out).await?;
        self.tx.flush().await?;
        let mut reply = Reply::to(com::QUERY, self.deprecate_eof());
        // Column count, its definition, the EOF after it (without
        // DEPRECATE_EOF), then the row.
        let row_at = if self.deprecate_eof() { 2 } else { 3 };
        let mut value = None;
        let mut index = 0;
        loop {
            while let Some((_, len)) = codec::frame_at(&self.buf, codec::MAX_PAYLOAD)? {
                let packet = self.buf.split_to(codec::HEADER_LEN + len);
                let payload = &packet[codec::HEADER_LEN..];
                if index == row_at && payload.first() != Some(&codec::header::NULL_VALUE) {
                    let mut r = codec::Reader::new(payload, "row");
                    value = Some(String::from_utf8_lossy(r.lenenc_bytes()?).into_owned());
                }
                index += 1;
                if reply.feed(payload)? == Progress::Done {
                    return match reply.ended() {
                        Some(Ended::Err(e)) => Err(UpstreamError::Refused(e.clone())),
                        _ => Ok(value),
                    };
                }
            }
            if self.rx.read_buf(&mut self.buf).await? == 0 {
                return Err(UpstreamError::Protocol("connection closed".into()));
            }
        }
    }

    /// Forget the last person's session (variables, temporary tables,
    /// prepared statements, locks) and set up again: between people.
    pub async fn reset(&mut self) -> Result<(), UpstreamError> {
        self.command(&[com::RESET_CONNECTION]).await?;
        self.set_up().await
    }

    /// Run `sql` as one COM_QUERY and read its whole reply, which must be
    /// an OK or result sets (read and dropped).
    pub async fn run(&mut self, sql: &str) -> Result<(), UpstreamError> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        self.command(&payload).await
    }

    /// Send one command and read its reply to the end.
    async fn command(&mut self, payload: &[u8]) -> Result<(), UpstreamError> {
        let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
        codec::write_packet(&mut out, 0, payload);
        self.tx.write_all(&out).await?;
        self.tx.flush().await?;
        let mut reply = Reply::to(payload[0], self.deprecate_eof());
        loop {
            while let Some((_, len)) = codec::frame_at(&self.buf, codec::MAX_PAYLOAD)? {
                let packet = self.buf.split_to(codec::HEADER_LEN + len);
                if reply.feed(&packet[codec::HEADER_LEN..])? == Progress::Done {
                    return match reply.ended() {
                        Some(Ended::Err(e)) => Err(UpstreamError::Refused(e.clone())),
                        _ if !self.buf.is_empty() => {
                            Err(UpstreamError::Protocol("data after a reply".into()))
                        }
                        _ => Ok(()),
                    };
                }
            }
            if self.rx.read_buf(&mut self.buf).await? == 0 {
                return Err(UpstreamError::Protocol("connection closed".into()));
            }
        }
    }
}

/// The pools of every MySQL target's roles, with upstream TLS per target.
pub fn pools(targets: &[TargetConfig]) -> anyhow::Result<Pools> {
    let mut pools = Pools::default();
    for t in targets {
        let t_tls = crate::tls::upstream_config(t.upstream_tls, t.upstream_ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("target {}: {e}", t.name))?;
        for r in &t.roles {
            let connector = Connector {
                target: t.clone(),
                role: r.clone(),
                tls: t_tls.clone(),
            };
            pools.insert(&t.name, &r.name, Pool::new(connector, t.pool.clone()));
        }
    }
    Ok(pools)
}

impl Pool {
    /// The database the pool's connections use.
    pub fn database(&self) -> &str {
        &self.connector().target.database
    }
}
