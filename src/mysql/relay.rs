//! The command loop after login. MySQL is one command, one reply: the
//! loop reads a whole command from the client, decides it (the commands
//! of SPEC §5 are checked, every other refused with an ERR), forwards it
//! and streams the reply back, following it packet by packet
//! (`response::Reply`) to know where it ends, how it ended, and when the
//! connection is at rest again.
//!
//! SQL is judged before a byte of it reaches the upstream: every
//! statement of a COM_QUERY (multi-statements one by one) and every
//! COM_STMT_PREPARE; an execution runs what its prepare was judged as.
//! `KILL` and `USE` are the gateway's to answer (`sql::mysql_intercepted`):
//! a connection id is the gateway's, and a database is a target.
//!
//! Hand-written on purpose: this is the hot path. Each direction reuses
//! one read buffer kept with the server connection, and a reply is
//! forwarded with one write per read, never copied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Frontend;
use super::codec::{self, CodecError, ErrPacket, com, errcode, header};
use super::pool::{Lease, ServerConn, Variant};
use super::response::{Ended, Progress, Reply};
use super::session::name_person;
use super::upstream::UpstreamError;
use crate::audit::AuditError;
use crate::core::judge::{Denial, Judge, Verdict, VerdictCache};
use crate::core::scope::Scope;
use crate::core::statement::{Completed, Judged, StatementAudit, StatementInfo};
use crate::policy::Action;
use crate::sessions::{EndReason, LiveSession};
use crate::sql::{self, Intercepted, Statement};
use crate::tls::Stream;

/// Largest command the gateway holds to check (several packets, for a
/// statement over 16 MiB); beyond it the connection ends.
const MAX_COMMAND: usize = 64 * 1024 * 1024;
/// Beyond this many texts one `PREPARE` name may stand for, it stands
/// for something unknown.
const MAX_DEFINITIONS: usize = 8;
/// Room kept free in a read buffer before each read.
const READ_ROOM: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    #[error("client connection: {0}")]
    Client(std::io::Error),
    #[error("client protocol: {0}")]
    ClientProtocol(CodecError),
    #[error("upstream connection: {0}")]
    Upstream(std::io::Error),
    #[error("upstream closed the connection")]
    UpstreamClosed,
    #[error("upstream protocol: {0}")]
    UpstreamProtocol(CodecError),
    #[error("upstream: {0}")]
    Reset(#[from] UpstreamError),
    #[error("audit trail unavailable: {0}")]
    Audit(#[from] AuditError),
    #[error("ended: {0}")]
    Ended(&'static str),
}

/// Relay commands until the client quits or closes between commands
/// (`Ok`: the server connection is at rest and may be reset for someone
/// else), either side fails,
/// or `live` is ended (revoked, killed, expired, shutdown): then a running
/// statement is killed upstream, the server connection closed, and the
/// client told why.
pub(super) async fn run(
    fe: &Frontend,
    scope: &Scope,
    judge: Judge,
    client: &mut Stream,
    lease: &mut Lease,
    variant: &Arc<Variant>,
    live: &LiveSession,
) -> Result<(), RelayError> {
    let pool = fe
        .pools
        .get(
            scope.target.as_deref().unwrap_or_default(),
            scope.role.as_deref().unwrap_or_default(),
        )
        .expect("every role of every target has a pool");
    let conn = lease.conn();
    let mut relay = Relay {
        fe,
        upstream_id: conn.connection_id,
        variant,
        scope,
        judge,
        audit: StatementAudit::new(scope, live),
        live,
        database: pool.database().to_owned(),
        verdicts: VerdictCache::default(),
        key_scratch: String::new(),
        prepared: HashMap::new(),
        sql_prepared: HashMap::new(),
        done: Vec::new(),
        status: super::handshake::STATUS_AUTOCOMMIT,
    };
    relay.serve(client, conn).await
}

struct Relay<'a> {
    fe: &'a Frontend,
    /// The server's id of this session's connection, and what it was
    /// opened as: to kill what it runs from another connection.
    upstream_id: u32,
    variant: &'a Arc<Variant>,
    scope: &'a Scope,
    judge: Judge,
    audit: StatementAudit<'a>,
    live: &'a LiveSession,
    /// The upstream database: unqualified table names are in it.
    database: String,
    verdicts: VerdictCache,
    /// Where a verdict's cache key (`sql::classification_key`) is built,
    /// kept so that looking one up allocates nothing.
    key_scratch: String,
    /// Protocol-level prepared statements by the server's id.
    prepared: HashMap<u32, Arc<StatementInfo>>,
    /// `PREPARE name FROM '…'`: what each name may stand for.
    sql_prepared: HashMap<String, Vec<Statement>>,
    /// Completed statements awaiting audit (reused).
    done: Vec<Completed>,
    /// The server's status flags after its last reply (autocommit, in a
    /// transaction), for the OKs the gateway writes itself.
    status: u16,
}

/// A command read whole from the client: its packets are `cbuf[..end]`.
struct Held {
    end: usize,
    /// The payload, when it spans packets (rare: over 16 MiB).
    joined: Option<Vec<u8>>,
}

/// What the gateway does with one command.
enum Plan {
    /// Forward it as it came; audit its execution as `info`, if any.
    Forward(Option<Arc<StatementInfo>>),
    /// Forward it and learn the statement id its prepare gets.
    Prepare(Arc<StatementInfo>),
    /// Send this command instead of the client's.
    Replace(Vec<u8>),
    /// Answer it here.
    Answer(ErrPacket),
    AnswerOk,
    Quit,
}

impl Relay<'_> {
    async fn serve(
        &mut self,
        client: &mut Stream,
        conn: &mut ServerConn,
    ) -> Result<(), RelayError> {
        loop {
            let held = tokio::select! {
                biased;
                () = self.live.ended().cancelled() => {
                    self.tell_ended(client, 1).await;
                    return Err(RelayError::Ended("while idle"));
                }
                held = read_command(client, &mut conn.cbuf) => held,
            };
            let held = match held {
                Ok(Some(held)) => held,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if let RelayError::ClientProtocol(c) = &e {
                        let err = client_protocol_error(c);
                        send_packet(client, 1, &err).await;
                    }
                    return Err(e);
                }
            };
            self.live.count_bytes(true, held.end);
            let payload = match &held.joined {
                Some(p) => &p[..],
                None => &conn.cbuf[codec::HEADER_LEN..held.end],
            };
            let command = codec::Command::decode(payload).map_err(RelayError::ClientProtocol)?;
            let code = command.code;
            let plan = if code == com::RESET_CONNECTION {
                self.reset(conn).await?
            } else {
                self.plan(command).await?
            };
            match plan {
                Plan::Quit => {
                    conn.cbuf.advance(held.end);
                    return if conn.cbuf.is_empty() {
                        Ok(())
                    } else {
                        Err(RelayError::ClientProtocol(CodecError::Malformed(
                            "data after COM_QUIT",
                        )))
                    };
                }
                Plan::Answer(err) => {
                    conn.cbuf.advance(held.end);
                    send_packet(client, 1, &err).await;
                }
                Plan::AnswerOk => {
                    conn.cbuf.advance(held.end);
                    send_ok(client, 1, self.status).await?;
                }
                Plan::Replace(payload) => {
                    conn.cbuf.advance(held.end);
                    let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
                    codec::write_packet(&mut out, 0, &payload);
                    conn.tx
                        .write_all(&out)
                        .await
                        .map_err(RelayError::Upstream)?;
                    conn.tx.flush().await.map_err(RelayError::Upstream)?;
                    self.reply(client, conn, payload[0], None, false).await?;
                }
                Plan::Forward(info) => {
                    self.forward(conn, held.end).await?;
                    self.reply(client, conn, code, info, false).await?;
                }
                Plan::Prepare(info) => {
                    self.forward(conn, held.end).await?;
                    self.reply(client, conn, com::STMT_PREPARE, Some(info), true)
                        .await?;
                }
            }
            if !self.done.is_empty() {
                self.audit.completed(&mut self.done).await?;
            }
        }
    }

    /// Decide one command.
    async fn plan(&mut self, command: codec::Command<'_>) -> Result<Plan, RelayError> {
        let body = command.body;
        Ok(match command.code {
            com::QUIT => Plan::Quit,
            com::PING | com::STMT_RESET | com::STMT_SEND_LONG_DATA => Plan::Forward(None),
            com::STMT_CLOSE => {
                if let Ok(id) = command.statement_id()
                    && let Some(info) = self.prepared.remove(&id)
                {
                    StatementInfo::recycle(info);
                }
                Plan::Forward(None)
            }
            com::STMT_EXECUTE => {
                let info = command
                    .statement_id()
                    .ok()
                    .and_then(|id| self.prepared.get(&id).cloned());
                Plan::Forward(info)
            }
            com::QUERY => {
                let text = String::from_utf8_lossy(body);
                self.query(&text).await?
            }
            com::STMT_PREPARE => {
                let text = String::from_utf8_lossy(body);
                let verdict = self.check(&text);
                let info =
                    StatementInfo::shared(&text, Arc::clone(&verdict.judged), !verdict.allowed);
                if verdict.allowed {
                    Plan::Prepare(info)
                } else {
                    self.deny(&info, &verdict).await?
                }
            }
            com::INIT_DB => self.use_database(&String::from_utf8_lossy(body)),
            com::FIELD_LIST => {
                let table = body.split(|&b| b == 0).next().unwrap_or_default();
                let table = String::from_utf8_lossy(table);
                let mut stmt = Statement::new(Action::Read, "field_list");
                stmt.tables = vec![format!("{}.{table}", self.database)];
                stmt.schemas = vec![self.database.clone()];
                let verdict = self.judge.judge(&stmt);
                let info = StatementInfo::shared(
                    &format!("<COM_FIELD_LIST {table}>"),
                    Arc::clone(&verdict.judged),
                    !verdict.allowed,
                );
                if verdict.allowed {
                    StatementInfo::recycle(info);
                    Plan::Forward(None)
                } else {
                    self.deny(&info, &verdict).await?
                }
            }
            other => Plan::Answer(ErrPacket::new(
                errcode::ER_UNKNOWN_COM_ERROR,
                "08S01",
                format!("command 0x{other:02x} is not available through idgate"),
            )),
        })
    }

    /// COM_RESET_CONNECTION: the server forgets the session's state, and
    /// the gateway its prepared statements; the connection is set up and
    /// named for the person again.
    async fn reset(&mut self, conn: &mut ServerConn) -> Result<Plan, RelayError> {
        conn.reset().await?;
        let identity = &self.scope.identity.as_ref().expect("admitted").identity;
        name_person(conn, identity).await?;
        for (_, info) in self.prepared.drain() {
            StatementInfo::recycle(info);
        }
        self.sql_prepared.clear();
        self.status = super::handshake::STATUS_AUTOCOMMIT;
        Ok(Plan::AnswerOk)
    }

    /// A COM_QUERY: answered here (`KILL`, `USE`), refused, or passed.
    async fn query(&mut self, text: &str) -> Result<Plan, RelayError> {
        if let Some(intercepted) = sql::mysql_intercepted(text) {
            return Ok(match intercepted {
                Intercepted::Kill { query, id } => self.kill(text, query, id).await?,
                Intercepted::Use(db) => self.use_database(&db),
            });
        }
        let verdict = self.check(text);
        let info = StatementInfo::shared(text, Arc::clone(&verdict.judged), !verdict.allowed);
        if verdict.allowed {
            Ok(Plan::Forward(Some(info)))
        } else {
            self.deny(&info, &verdict).await
        }
    }

    /// Judge every statement of `text`, with the verdict cache: texts
    /// that differ only in numbers (`… WHERE id = 41231`) share a verdict,
    /// as on the PostgreSQL side.
    fn check(&mut self, text: &str) -> Verdict {
        let hour = self.judge.hour_of_week();
        // Only texts that change nothing the verdicts depend on are cached:
        // the generation never moves.
        let key = sql::classification_key(text, &mut self.key_scratch);
        let (hit, exact) = self.verdicts.get(key, text, (0, 0), hour);
        if let Some(v) = hit {
            return v.clone();
        }
        let key = key.to_owned();
        let mut classified = sql::classify_mysql(text, &self.database);
        let numbers_matter = classified.numbers_matter;
        if let Some(why) = writes_identity(text, &classified.statements) {
            let mut s = Statement::new(Action::Unknown, "identity");
            s.reason = Some(why.into());
            classified.statements = vec![s];
        }
        let cacheable = classified
            .statements
            .iter()
            .all(|s| s.prepare.is_none() && s.execute.is_none() && s.kind != "use");
        let statements = self.effective(classified.statements);
        let verdict = if statements.len() > 1 && statements.iter().any(|s| s.kind == "use") {
            self.judge.refusal(
                Statement::new(Action::Unknown, "use"),
                "USE must be sent on its own".into(),
            )
        } else {
            self.judge.judge_all(&statements)
        };
        if verdict.allowed {
            for s in &statements {
                if let Some((name, inner)) = &s.prepare {
                    let defs = self.sql_prepared.entry(name.clone()).or_default();
                    defs.push((**inner).clone());
                    if defs.len() > MAX_DEFINITIONS {
                        // Too many to judge at EXECUTE: it becomes unknown.
                        defs.clear();
                        let mut u = Statement::new(Action::Unknown, "execute");
                        u.reason = Some(format!("{name} may stand for too many statements"));
                        defs.push(u);
                    }
                }
            }
        }
        if cacheable {
            self.verdicts.insert(
                key,
                text,
                numbers_matter || exact,
                verdict.clone(),
                (0, 0),
                hour,
            );
        }
        verdict
    }

    /// What each statement really does: `PREPARE name FROM '…'` needs what
    /// its text needs; `EXECUTE name` is every statement the name may
    /// stand for, earlier in this text or before (unknown when none).
    fn effective(&self, statements: Vec<Statement>) -> Vec<Statement> {
        let mut here: HashMap<String, Statement> = HashMap::new();
        let mut out = Vec::with_capacity(statements.len());
        for s in statements {
            match (&s.prepare, &s.execute) {
                (Some((name, inner)), _) => {
                    here.insert(name.clone(), (**inner).clone());
                    out.push(s);
                }
                (None, Some(name)) => {
                    if let Some(def) = here.get(name) {
                        out.push(def.clone());
                    } else if let Some(defs) = self.sql_prepared.get(name) {
                        out.extend(defs.iter().cloned());
                    } else {
                        out.push(s);
                    }
                }
                (None, None) => out.push(s),
            }
        }
        out
    }

    /// Audit a denial and answer it with MySQL's own access errors.
    async fn deny(
        &mut self,
        info: &Arc<StatementInfo>,
        verdict: &Verdict,
    ) -> Result<Plan, RelayError> {
        self.audit.denied(info, &verdict.reason).await?;
        let code = match verdict.denial {
            Denial::Unsupported => errcode::ER_NOT_SUPPORTED_YET,
            Denial::Policy if verdict.judged.tables.is_empty() => {
                errcode::ER_SPECIFIC_ACCESS_DENIED_ERROR
            }
            Denial::Policy => errcode::ER_TABLEACCESS_DENIED_ERROR,
        };
        Ok(Plan::Answer(ErrPacket::new(
            code,
            "42000",
            verdict.reason.clone(),
        )))
    }

    /// `USE db` or COM_INIT_DB: a database is a target, so only the
    /// session's own (by target name or upstream database) is accepted.
    fn use_database(&self, db: &str) -> Plan {
        let target = self.scope.target.as_deref().unwrap_or_default();
        if db == target || db == self.database {
            let mut payload = Vec::with_capacity(self.database.len() + 1);
            payload.push(com::INIT_DB);
            payload.extend_from_slice(self.database.as_bytes());
            return Plan::Replace(payload);
        }
        Plan::Answer(ErrPacket::new(
            errcode::ER_DBACCESS_DENIED_ERROR,
            "42000",
            format!(
                "database \"{db}\" is not this session's: through idgate a database is a target; connect again with \"{db}\" as the database"
            ),
        ))
    }

    /// `KILL [QUERY] id`: only ever one of the person's own connections,
    /// named by the id the gateway gave it.
    async fn kill(&mut self, text: &str, query: bool, id: u64) -> Result<Plan, RelayError> {
        let identity = self.scope.identity.as_ref().expect("admitted");
        let victim = u32::try_from(id).ok().and_then(|id| {
            let conns = crate::lock(&self.fe.conns);
            conns
                .get(&id)
                .filter(|c| c.issuer == identity.issuer && c.subject == identity.sub)
                .and_then(|c| {
                    let pool = self.fe.pools.get(&c.target, &c.role)?;
                    Some((
                        Arc::clone(pool),
                        Arc::clone(&c.variant),
                        c.upstream_id,
                        Arc::clone(&c.session),
                    ))
                })
        });
        let Some((pool, variant, upstream_id, session)) = victim else {
            return Ok(Plan::Answer(ErrPacket::new(
                errcode::ER_NO_SUCH_THREAD,
                "HY000",
                format!("Unknown thread id: {id}"),
            )));
        };
        if query {
            super::kill_query(pool, variant, upstream_id).await;
        } else {
            session.end(EndReason::Killed);
        }
        let judged = Arc::new(Judged {
            kind: if query { "kill_query" } else { "kill" }.into(),
            ..Judged::default()
        });
        self.done.push(Completed {
            info: StatementInfo::shared(text, judged, false),
            duration: std::time::Duration::ZERO,
            rows: None,
            error: None,
        });
        Ok(Plan::AnswerOk)
    }

    /// Forward the held command's packets as they came.
    async fn forward(&mut self, conn: &mut ServerConn, end: usize) -> Result<(), RelayError> {
        conn.tx
            .write_all(&conn.cbuf[..end])
            .await
            .map_err(RelayError::Upstream)?;
        conn.tx.flush().await.map_err(RelayError::Upstream)?;
        conn.cbuf.advance(end);
        Ok(())
    }

    /// Stream the reply to `command` to the client, to its last packet.
    /// `info`: the statement it completes, audited with its outcome.
    /// `prepare`: remember the statement id the reply's OK carries.
    async fn reply(
        &mut self,
        client: &mut Stream,
        conn: &mut ServerConn,
        command: u8,
        info: Option<Arc<StatementInfo>>,
        prepare: bool,
    ) -> Result<(), RelayError> {
        let mut reply = Reply::to(command, conn.deprecate_eof());
        if reply.is_silent() {
            if let Some(info) = info {
                StatementInfo::recycle(info);
            }
            return Ok(());
        }
        let started = Instant::now();
        let ServerConn { rx, buf, .. } = conn;
        // Bytes of `buf` already walked; `last_seq` of the last packet.
        let mut scanned = 0;
        let mut last_seq = 0u8;
        // The next packet continues one of MAX_PAYLOAD bytes.
        let mut continued = false;
        let mut first = true;
        let mut done = false;
        loop {
            while !done {
                let Some((seq, len)) = codec::frame_at(&buf[scanned..], codec::MAX_PAYLOAD)
                    .map_err(RelayError::UpstreamProtocol)?
                else {
                    break;
                };
                let payload = &buf[scanned + codec::HEADER_LEN..scanned + codec::HEADER_LEN + len];
                if !continued {
                    if prepare && first && payload.first() == Some(&header::OK) {
                        let (id, _, _) = codec::decode_prepare_ok(payload)
                            .map_err(RelayError::UpstreamProtocol)?;
                        if let Some(info) = &info {
                            self.prepared.insert(id, Arc::clone(info));
                        }
                    }
                    first = false;
                    done = reply.feed(payload).map_err(RelayError::UpstreamProtocol)?
                        == Progress::Done;
                }
                continued = len == codec::MAX_PAYLOAD;
                done &= !continued;
                last_seq = seq;
                scanned += codec::HEADER_LEN + len;
            }
            if scanned > 0 {
                client
                    .write_all(&buf[..scanned])
                    .await
                    .map_err(RelayError::Client)?;
                self.live.count_bytes(false, scanned);
                buf.advance(scanned);
                scanned = 0;
            }
            if done {
                break;
            }
            if buf.capacity() - buf.len() < READ_ROOM {
                buf.reserve(READ_ROOM * 2);
            }
            let read = tokio::select! {
                biased;
                () = self.live.ended().cancelled() => {
                    client.flush().await.map_err(RelayError::Client)?;
                    self.cancel_running();
                    self.tell_ended(client, last_seq.wrapping_add(1)).await;
                    return Err(RelayError::Ended("during a statement"));
                }
                r = rx.read_buf(buf) => r.map_err(RelayError::Upstream)?,
            };
            if read == 0 {
                return Err(RelayError::UpstreamClosed);
            }
        }
        client.flush().await.map_err(RelayError::Client)?;
        if !buf.is_empty() {
            return Err(RelayError::UpstreamProtocol(CodecError::Malformed(
                "data after a reply",
            )));
        }
        // Prepare and field-list replies end without a status of their own.
        if let Some(Ended::Ok { status }) = reply.ended()
            && !prepare
            && command != com::FIELD_LIST
        {
            self.status = *status;
        }
        if let Some(info) = info {
            if prepare {
                StatementInfo::recycle(info);
            } else {
                let error = match reply.ended() {
                    Some(Ended::Err(e)) => Some(format!("{}: {}", e.code, e.message)),
                    _ => None,
                };
                self.done.push(Completed {
                    info,
                    duration: started.elapsed(),
                    rows: None,
                    error,
                });
            }
        }
        Ok(())
    }

    /// The session was ended while a statement ran: stop it upstream,
    /// without holding up the end.
    fn cancel_running(&self) {
        let (Some(target), Some(role)) = (&self.scope.target, &self.scope.role) else {
            return;
        };
        if let Some(pool) = self.fe.pools.get(target, role) {
            tokio::spawn(super::kill_query(
                Arc::clone(pool),
                Arc::clone(self.variant),
                self.upstream_id,
            ));
        }
    }

    /// The client hears why its session ended.
    async fn tell_ended(&self, client: &mut Stream, seq: u8) {
        let message = self
            .live
            .end_reason()
            .map_or_else(|| "the session ended".to_owned(), |r| r.message());
        let err = ErrPacket::new(errcode::ER_CONNECTION_KILLED, "70100", message);
        send_packet(client, seq, &err).await;
    }
}

/// The person's name on the upstream session (`@idgate_identity`) is the
/// gateway's: a text that mentions it may only read it.
fn writes_identity(text: &str, statements: &[Statement]) -> Option<&'static str> {
    const NAME: &[u8] = b"idgate_identity";
    let has = |needle: &[u8]| {
        text.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    let only_reads = statements.iter().all(|s| s.action == Action::Read);
    (has(NAME) && (!only_reads || has(b":=") || has(b"into")))
        .then_some("@idgate_identity names the person and only the gateway sets it")
}

/// Read until a whole command is in `buf` (its packets from offset 0, in
/// sequence from 0); `None` when the client closed between commands.
async fn read_command(client: &mut Stream, buf: &mut BytesMut) -> Result<Option<Held>, RelayError> {
    loop {
        if let Some(held) = held_command(buf).map_err(RelayError::ClientProtocol)? {
            return Ok(Some(held));
        }
        if buf.capacity() - buf.len() < READ_ROOM {
            buf.reserve(READ_ROOM);
        }
        if client.read_buf(buf).await.map_err(RelayError::Client)? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(RelayError::ClientProtocol(CodecError::Malformed(
                    "truncated command",
                )))
            };
        }
    }
}

/// The command at the start of `buf`, when whole.
fn held_command(buf: &[u8]) -> Result<Option<Held>, CodecError> {
    let mut at = 0;
    let mut expected = 0u8;
    let mut total = 0usize;
    loop {
        let Some((seq, len)) = codec::frame_at(&buf[at..], codec::MAX_PAYLOAD)? else {
            return Ok(None);
        };
        if seq != expected {
            return Err(CodecError::Malformed("packet out of order"));
        }
        total += len;
        if total > MAX_COMMAND {
            return Err(CodecError::TooLong(total));
        }
        at += codec::HEADER_LEN + len;
        if len < codec::MAX_PAYLOAD {
            break;
        }
        expected = expected.wrapping_add(1);
    }
    if at == codec::HEADER_LEN + total {
        return Ok(Some(Held {
            end: at,
            joined: None,
        }));
    }
    let mut joined = Vec::with_capacity(total);
    let mut p = 0;
    while p < at {
        let (_, len) = codec::frame_at(&buf[p..], codec::MAX_PAYLOAD)?.expect("walked above");
        joined.extend_from_slice(&buf[p + codec::HEADER_LEN..p + codec::HEADER_LEN + len]);
        p += codec::HEADER_LEN + len;
    }
    Ok(Some(Held {
        end: at,
        joined: Some(joined),
    }))
}

fn client_protocol_error(e: &CodecError) -> ErrPacket {
    match e {
        CodecError::TooLong(_) => ErrPacket::new(
            errcode::ER_NET_PACKET_TOO_LARGE,
            "08S01",
            "the command is larger than the gateway accepts (64 MiB)",
        ),
        _ => ErrPacket::new(
            errcode::ER_NET_PACKETS_OUT_OF_ORDER,
            "08S01",
            "malformed or out-of-order packet",
        ),
    }
}

/// Sends `err` as the packet of sequence `seq`, ignoring a client gone.
async fn send_packet(client: &mut Stream, seq: u8, err: &ErrPacket) {
    let mut payload = BytesMut::new();
    err.encode(&mut payload);
    let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
    codec::write_packet(&mut out, seq, &payload);
    let _ = client.write_all(&out).await;
    let _ = client.flush().await;
}

async fn send_ok(client: &mut Stream, seq: u8, status: u16) -> Result<(), RelayError> {
    let mut payload = BytesMut::with_capacity(11);
    codec::encode_ok(&mut payload, 0, status);
    let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
    codec::write_packet(&mut out, seq, &payload);
    client.write_all(&out).await.map_err(RelayError::Client)?;
    client.flush().await.map_err(RelayError::Client)
}
