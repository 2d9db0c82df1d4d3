//! The PostgreSQL side of the upstream pools (`core::pool`): how a
//! connection is opened for a [`Variant`] (identity-neutral,
//! `application_name=idgate`, read-only by startup option when the
//! session may not write), what it carries while pooled (read buffers,
//! prepared statements, completed statements awaiting audit), and the
//! small synchronous exchanges the gateway itself runs on one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::cancel::CancelTarget;
use super::codec::{self, backend, status};
use super::upstream::{self, UpstreamError};
use crate::config::{RoleConfig, TargetConfig};
use crate::core::pool;
use crate::core::statement::Completed;
use crate::tls::{StreamRead, StreamWrite};

pub use crate::core::pool::PoolStats;

pub type Pool = pool::Pool<Connector>;
pub type Pools = pool::Pools<Connector>;
pub type Lease = pool::Lease<Connector>;
pub type PoolError = pool::PoolError<UpstreamError>;

/// What a connection was opened with; only equal variants share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    pub read_only: bool,
    /// Client startup parameters passed upstream, names lower-cased, sorted.
    pub params: Vec<(String, String)>,
}

/// An open upstream connection, positioned at ReadyForQuery(I).
pub struct ServerConn {
    pub rx: StreamRead,
    pub tx: StreamWrite,
    /// ParameterStatus values the server reported at login.
    pub parameters: Vec<(String, String)>,
    /// The search path a session starts with here, as the server said when
    /// asked at open (`None`: it would not say).
    pub start_search_path: Option<Vec<String>>,
    pub backend_key: Option<(i32, i32)>,
    /// Read buffers for upstream → client and client → upstream, kept
    /// with the connection so an idle client holds none.
    pub buf: BytesMut,
    pub cbuf: BytesMut,
    /// Named (and the unnamed) prepared statements that exist on this
    /// connection: name → Parse body after the name (text and types).
    pub prepared: HashMap<String, Arc<[u8]>>,
    /// Statements the reply being relayed completed, until audited: kept
    /// with the connection, like the buffers, so that its room is neither
    /// allocated per transaction nor held by an idle client.
    pub completed: Vec<Completed>,
}

/// Opens the connections of one (target, role).
pub struct Connector {
    target: TargetConfig,
    role: RoleConfig,
    tls: Option<Arc<ClientConfig>>,
    /// `host:port` shared by every cancel target of this pool.
    pub upstream: Arc<str>,
}

impl pool::Connector for Connector {
    type Conn = ServerConn;
    type Variant = Variant;
    type Error = UpstreamError;

    async fn open(&self, variant: &Variant) -> Result<ServerConn, UpstreamError> {
        let mut startup: Vec<(&str, &str)> = variant
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        startup.push(("application_name", "idgate"));
        if variant.read_only {
            // Defence in depth: even a statement the classifier misjudged
            // cannot write, and RESET/DISCARD ALL come back to this.
            startup.push(("options", "-c default_transaction_read_only=on"));
        }
        let u = upstream::connect(&self.target, self.tls.as_ref(), &self.role, &startup).await?;
        let (rx, tx) = crate::tls::split(u.stream);
        let mut conn = ServerConn {
            rx,
            tx,
            parameters: u.parameters,
            start_search_path: None,
            backend_key: u.backend_key,
            buf: BytesMut::new(),
            cbuf: BytesMut::new(),
            prepared: HashMap::new(),
            completed: Vec::new(),
        };
        // PostgreSQL before 18 does not report search_path: ask, so that
        // unqualified names resolve against what the server will use
        // (role and database defaults included), not an assumption.
        if let Ok(Ok(rows)) = query_rows(&mut conn, "SHOW search_path").await
            && let [row] = rows.as_slice()
            && let [Some(path)] = row.as_slice()
        {
            conn.start_search_path = Some(crate::sql::parse_identifier_list(path));
        }
        Ok(conn)
    }

    /// One non-blocking read, no round trip.
    fn is_alive(conn: &mut ServerConn) -> bool {
        let mut probe = [0u8; 1];
        let mut cx = Context::from_waker(Waker::noop());
        matches!(pin!(conn.rx.read(&mut probe)).poll(&mut cx), Poll::Pending)
    }
}

/// The pools of every PostgreSQL target's roles.
pub fn pools(targets: &[TargetConfig], tls: &HashMap<String, Option<Arc<ClientConfig>>>) -> Pools {
    let mut pools = Pools::default();
    for t in targets {
        let t_tls = tls.get(&t.name).cloned().flatten();
        for r in &t.roles {
            let connector = Connector {
                upstream: Arc::from(t.upstream.as_str()),
                target: t.clone(),
                role: r.clone(),
                tls: t_tls.clone(),
            };
            pools.insert(&t.name, &r.name, Pool::new(connector, t.pool.clone()));
        }
    }
    pools
}

impl Pool {
    /// Where a cancel of what `conn` runs must go; `None` for a server that
    /// sent no BackendKeyData.
    pub fn cancel_target(&self, conn: &ServerConn) -> Option<CancelTarget> {
        conn.backend_key.map(|(pid, key)| CancelTarget {
            upstream: Arc::clone(&self.connector().upstream),
            pid,
            key,
        })
    }

    pub fn mode(&self) -> crate::config::PoolMode {
        self.config().mode
    }

    pub fn target_name(&self) -> &str {
        &self.connector().target.name
    }

    /// The upstream user this pool logs in as.
    pub fn user(&self) -> &str {
        &self.connector().role.user
    }
}

/// Read from `r` until a ReadyForQuery, returning its status, or an error
/// message if the server reported one.
/// Run `sql` (one simple Query) on `conn` and collect its rows as text;
/// the server's error message if it failed. The connection is idle after.
pub async fn query_rows(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<Result<Vec<Vec<Option<String>>>, String>, std::io::Error> {
    let mut msg = BytesMut::with_capacity(sql.len() + 8);
    super::codec::query(&mut msg, sql);
    conn.tx.write_all(&msg).await?;
    conn.tx.flush().await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        while let Some((tag, len)) = super::codec::frame_at(&conn.buf, 64 * 1024 * 1024)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let frame = conn.buf.split_to(len);
            match tag {
                backend::DATA_ROW => rows.push(
                    super::codec::parse_data_row(codec::body(&frame))
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
                ),
                backend::ERROR_RESPONSE => {
                    error = Some(super::codec::parse_error(codec::body(&frame)).message);
                }
                backend::READY_FOR_QUERY => {
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    });
                }
                _ => {}
            }
        }
        if conn.buf.capacity() - conn.buf.len() < 4096 {
            conn.buf.reserve(64 * 1024);
        }
        if conn.rx.read_buf(&mut conn.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

pub async fn read_until_ready(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<Result<u8, String>, std::io::Error> {
    let mut error = None;
    loop {
        while let Some((tag, len)) = super::codec::frame_at(buf, 64 * 1024)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let frame = buf.split_to(len);
            match tag {
                backend::ERROR_RESPONSE => {
                    error = Some(super::codec::parse_error(codec::body(&frame)).message);
                }
                backend::READY_FOR_QUERY => {
                    let status = codec::body(&frame)
                        .first()
                        .copied()
                        .unwrap_or(status::FAILED);
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(status),
                    });
                }
                _ => {}
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        if r.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}
