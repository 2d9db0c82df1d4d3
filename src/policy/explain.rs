//! `idgate policy explain`: what the gateway would decide for one token,
//! target and role — the connect decision and, for some SQL, each
//! statement's classification and decision — with the policies behind them.
//!
//! Nothing here judges on its own: the token goes through the configured
//! `TokenValidator`, the role is chosen by `PolicyEngine::choose_role`,
//! statements are classified by `sql::classify_postgres` and every decision
//! is `PolicyEngine::authorize`, exactly as in a gateway session.

use std::fmt::Write as _;
use std::net::IpAddr;

use thiserror::Error;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::{AccessRequest, Action, Decision, PolicyEngine, RequestContext, RoleChoice};
use crate::config::{Config, TargetConfig};
use crate::identity::{Identity, TokenError, TokenValidator};
use crate::sql::{self, Statement};

/// What to explain, besides the token.
#[derive(Debug, Clone, Default)]
pub struct ExplainRequest {
    pub target: String,
    /// The role the client would send as `user`; `None` sends none.
    pub role: Option<String>,
    /// SQL whose statements are each classified and decided.
    pub sql: Option<String>,
    /// The decision time; `None` means now. Only policies see it: the
    /// token is validated at the real current time.
    pub at: Option<OffsetDateTime>,
    /// The client address policies see; `None` is `0.0.0.0`, which is in
    /// no range but `0.0.0.0/0`.
    pub client_ip: Option<IpAddr>,
}

/// Why nothing could be explained.
#[derive(Debug, Error)]
pub enum ExplainError {
    #[error("target \"{name}\" is not in the config")]
    UnknownTarget { name: String, known: Vec<String> },
    #[error("token rejected: {0}")]
    TokenRejected(#[from] TokenError),
}

impl ExplainError {
    /// One line telling the user what to do next.
    pub fn hint(&self, config_path: &str) -> String {
        match self {
            ExplainError::UnknownTarget { known, .. } => {
                format!("--target is one of: {}", known.join(", "))
            }
            ExplainError::TokenRejected(_) => format!(
                "`idgate token inspect --config {config_path}` shows every check; explain needs a token the gateway accepts"
            ),
        }
    }

    /// Process exit code: 2 for a wrong argument, 1 for a refused token.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExplainError::UnknownTarget { .. } => 2,
            ExplainError::TokenRejected(_) => 1,
        }
    }
}

/// One classified statement and its decision.
#[derive(Debug, Clone)]
pub struct StatementDecision {
    pub statement: Statement,
    pub decision: Decision,
}

/// Everything `policy explain` found, rendered by `render`.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub identity: Identity,
    pub target: TargetConfig,
    pub requested_role: Option<String>,
    pub role: RoleChoice,
    pub context: RequestContext,
    /// `None` when no role could be chosen.
    pub connect: Option<Decision>,
    /// Whether SQL was given, so a missing role can say it was not decided.
    pub sql_requested: bool,
    /// Empty without `--sql`, or when no role could be chosen.
    pub statements: Vec<StatementDecision>,
}

impl Explanation {
    /// True when the connect and every statement are allowed: what
    /// `policy explain` exits 0 for.
    pub fn allowed(&self) -> bool {
        self.connect.as_ref().is_some_and(|d| d.allowed)
            && self.statements.iter().all(|s| s.decision.allowed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let id = &self.identity;
        let _ = writeln!(
            out,
            "token:    accepted as {} (identity {}, groups [{}])",
            id.principal_id(),
            id.identity,
            id.groups.join(", ")
        );
        let _ = writeln!(
            out,
            "target:   {} (environment [{}])",
            self.target.name,
            self.target.environment.join(", ")
        );
        let _ = writeln!(out, "role:     {}", self.role_line());
        let now = self.context.decision_time();
        let _ = writeln!(
            out,
            "time:     {} (hour_utc {}, weekday_utc {} = {}){}",
            rfc3339(now),
            now.hour(),
            now.weekday().number_days_from_monday(),
            now.weekday(),
            if self.context.now.is_some() {
                ""
            } else {
                "; set --at to decide for another time"
            }
        );
        let addr = self.context.client_address;
        let _ = writeln!(
            out,
            "client:   {addr}{}",
            if addr.is_unspecified() {
                " (unspecified; set --client-ip to test address rules)"
            } else {
                ""
            }
        );
        out.push('\n');

        match &self.connect {
            Some(d) => {
                let _ = writeln!(out, "connect   {}", verdict(d));
            }
            None => {
                let _ = writeln!(out, "connect   DENY   {}", self.no_role_reason());
            }
        }
        if self.connect.is_none() && self.sql_requested {
            out.push_str("statements were not decided: there is no role to decide them for\n");
        }
        for (n, s) in self.statements.iter().enumerate() {
            let st = &s.statement;
            let _ = writeln!(
                out,
                "\nstatement {}  {}  action {}",
                n + 1,
                st.kind,
                st.action
            );
            let _ = writeln!(out, "  tables   [{}]", st.tables.join(", "));
            let _ = writeln!(out, "  schemas  [{}]", st.schemas.join(", "));
            if let Some(reason) = &st.reason {
                let _ = writeln!(out, "  why      {reason}");
            }
            let _ = writeln!(out, "  {}", verdict(&s.decision));
        }
        let _ = writeln!(
            out,
            "\nresult: {}",
            if self.allowed() { "ALLOWED" } else { "DENIED" }
        );
        out
    }

    fn role_line(&self) -> String {
        let target = &self.target.name;
        match (&self.role, &self.requested_role) {
            (RoleChoice::Requested(r), _) => format!("{r} (as requested)"),
            (RoleChoice::OnlyPermitted(r), None) => {
                format!("{r} (none given; the only role of {target} you may connect as)")
            }
            (RoleChoice::OnlyPermitted(r), Some(asked)) => format!(
                "{r} (\"{asked}\" is not a role of {target}; the gateway uses the only role you may connect as)"
            ),
            (RoleChoice::NonePermitted, _) => "none".to_string(),
            (RoleChoice::Ambiguous(roles), _) => {
                format!("none chosen: pass --role, one of {}", roles.join(", "))
            }
        }
    }

    fn no_role_reason(&self) -> String {
        let target = &self.target.name;
        let asked = match &self.requested_role {
            Some(r) => format!("\"{r}\" is not a role of {target}, and "),
            None => String::new(),
        };
        match &self.role {
            RoleChoice::Ambiguous(roles) => format!(
                "{asked}you may connect as several roles ({}); the gateway refuses to guess",
                roles.join(", ")
            ),
            _ => format!("{asked}no policy permits you any role of {target}"),
        }
    }
}

fn verdict(d: &Decision) -> String {
    format!(
        "{}  {}",
        if d.allowed { "ALLOW" } else { "DENY " },
        d.reason
    )
}

/// Validates the token with the configured issuers, then explains.
pub async fn explain(
    config: &Config,
    engine: &PolicyEngine,
    token: &str,
    request: &ExplainRequest,
) -> Result<Explanation, ExplainError> {
    let target = config
        .targets
        .iter()
        .find(|t| t.name == request.target)
        .ok_or_else(|| ExplainError::UnknownTarget {
            name: request.target.clone(),
            known: config.targets.iter().map(|t| t.name.clone()).collect(),
        })?;
    let validator = TokenValidator::new(config.issuers.clone());
    let identity = validator.validate(token).await?;
    Ok(explain_for(engine, identity, target, request))
}

/// The decisions for an already validated identity.
pub fn explain_for(
    engine: &PolicyEngine,
    identity: Identity,
    target: &TargetConfig,
    request: &ExplainRequest,
) -> Explanation {
    let mut context = RequestContext {
        environment: target.environment.clone(),
        // Fixed once, so every decision of one explanation sees one time.
        now: Some(request.at.unwrap_or_else(OffsetDateTime::now_utc)),
        ..RequestContext::default()
    };
    if let Some(ip) = request.client_ip {
        context.client_address = ip;
    }
    let roles: Vec<&str> = target.roles.iter().map(|r| r.name.as_str()).collect();
    let requested = request.role.as_deref().unwrap_or("");
    let role = engine.choose_role(&identity, &target.name, &roles, requested, &context);

    let mut connect = None;
    let mut statements = Vec::new();
    if let Some(role_name) = role.role() {
        connect = Some(engine.authorize(&AccessRequest {
            identity: &identity,
            target: &target.name,
            role: role_name,
            action: Action::Connect,
            context: context.clone(),
        }));
        if let Some(text) = &request.sql {
            // Offline: the path a session starts with by default, no user
            // code in the target's catalogue.
            let user = target
                .roles
                .iter()
                .find(|r| r.name == role_name)
                .map_or("", |r| r.user.as_str());
            let catalogue = sql::Catalogue::empty();
            let offline = sql::Context {
                search_paths: &[sql::default_search_path()],
                user,
                catalogue: &catalogue,
            };
            for statement in sql::classify_postgres(text, &offline).statements {
                let decision = engine.authorize(&AccessRequest {
                    identity: &identity,
                    target: &target.name,
                    role: role_name,
                    action: statement.action,
                    context: RequestContext {
                        statement_kind: Some(statement.kind.clone()),
                        tables: statement.tables.clone(),
                        schemas: statement.schemas.clone(),
                        ..context.clone()
                    },
                });
                statements.push(StatementDecision {
                    statement,
                    decision,
                });
            }
        }
    }
    Explanation {
        identity,
        target: target.clone(),
        requested_role: request.role.clone(),
        role,
        context,
        connect,
        sql_requested: request.sql.is_some(),
        statements,
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an RFC 3339 date-time, `2025-01-06T10:00:00Z` or with an offset
/// (`2025-01-06T11:00:00+01:00`) and optional fractional seconds. The
/// `time` crate's parser sits behind a feature idgate does not build.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    let bad = |why: &str| {
        format!("`{s}` is not an RFC 3339 time ({why}); write e.g. 2025-01-06T10:00:00Z")
    };
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return Err(bad("too short"));
    }
    let digits = |from: usize, to: usize| -> Result<u32, String> {
        let part = &s[from..to];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad("number out of range"))
        } else {
            Err(bad("expected digits"))
        }
    };
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let year = i32::try_from(digits(0, 4)?).map_err(|_| bad("year"))?;
    let month = u8::try_from(digits(5, 7)?)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| bad("month"))?;
    let day = u8::try_from(digits(8, 10)?).map_err(|_| bad("day"))?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| bad("no such date"))?;

    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 || len > 9 {
            return Err(bad("fraction of a second takes 1 to 9 digits"));
        }
        nanos =
            frac[..len].parse::<u32>().map_err(|_| bad("fraction"))? * 10u32.pow(9 - len as u32);
        rest = &frac[len..];
    }
    let hms = |from, to| digits(from, to).and_then(|v| u8::try_from(v).map_err(|_| bad("time")));
    let time = Time::from_hms_nano(hms(11, 13)?, hms(14, 16)?, hms(17, 19)?, nanos)
        .map_err(|_| bad("no such time of day"))?;

    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => UtcOffset::UTC,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            let h = i8::try_from((h1 - b'0') * 10 + (h2 - b'0')).map_err(|_| bad("offset"))?;
            let m = i8::try_from((m1 - b'0') * 10 + (m2 - b'0')).map_err(|_| bad("offset"))?;
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            let (h, m) = if *sign == b'-' { (-h, -m) } else { (h, m) };
            UtcOffset::from_hms(h, m, 0).map_err(|_| bad("offset out of range"))?
        }
        _ => return Err(bad("expected Z or an offset like +01:00 at the end")),
    };
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn rfc3339_with_z_offset_and_fraction() {
        assert_eq!(
            parse_rfc3339("2025-01-06T10:00:00Z"),
            Ok(datetime!(2025-01-06 10:00 UTC))
        );
        assert_eq!(
            parse_rfc3339("2025-01-06t11:30:00.25+01:30"),
            Ok(datetime!(2025-01-06 11:30:00.25 +01:30))
        );
        assert_eq!(
            parse_rfc3339("2025-01-05T22:00:00-05:00").map(|t| t.to_offset(UtcOffset::UTC)),
            Ok(datetime!(2025-01-06 03:00 UTC))
        );
    }

    #[test]
    fn rfc3339_rejects_what_it_is_not() {
        for s in [
            "2025-01-06",
            "2025-01-06T10:00:00",
            "2025-02-30T10:00:00Z",
            "2025-01-06T24:00:00Z",
            "2025-01-06T10:00:00+1:00",
            "2025-01-06T10:00:00.Z",
            "2025-01-06T10:00:00Z trailing",
            "+025-01-06T10:00:00Z",
            "2025-01-06T10:00:00+25:00",
        ] {
            let err = parse_rfc3339(s).expect_err(s);
            assert!(err.contains("RFC 3339"), "{err}");
        }
    }
}
