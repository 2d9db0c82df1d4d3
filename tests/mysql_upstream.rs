//! Logging in to the real MariaDB as a role's upstream user, with each auth
//! plugin the server offers here (fixtures from scripts/setup), and the
//! server's own refusal of a wrong password.

use std::time::Duration;

use bytes::BytesMut;
use idgate::config::{PoolConfig, Protocol, RoleConfig, TargetConfig, UpstreamTls};
use idgate::mysql::codec::{self, caps};
use idgate::mysql::upstream::{self, UpstreamError};
use idgate::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn mariadb_addr() -> String {
    std::env::var("IDGATE_TEST_MARIADB").unwrap_or_else(|_| "127.0.0.1:3306".into())
}

fn target() -> TargetConfig {
    TargetConfig {
        name: "shop".into(),
        protocol: Protocol::Postgres,
        upstream: mariadb_addr(),
        database: "idgate_test".into(),
        upstream_tls: UpstreamTls::Disable,
        upstream_ca_file: None,
        pool: PoolConfig::default(),
        roles: Vec::new(),
        environment: Vec::new(),
    }
}

fn role(user: &str, password: &str) -> RoleConfig {
    RoleConfig {
        name: "r".into(),
        user: user.into(),
        password: Some(Secret::new(password)),
    }
}

/// Logs in and asks the server who it thinks we are.
async fn current_user(user: &str, password: &str) -> Result<String, UpstreamError> {
    let attrs = [("idgate_identity", "ann@example.com")];
    let (target, role) = (target(), role(user, password));
    let login = upstream::connect(
        &target,
        None,
        &role,
        caps::MULTI_STATEMENTS | caps::MULTI_RESULTS,
        &attrs,
    );
    let mut up = tokio::time::timeout(Duration::from_secs(10), login)
        .await
        .expect("login answered")?;
    let mut out = BytesMut::new();
    codec::write_packet(&mut out, 0, b"\x03SELECT CURRENT_USER()");
    up.stream.write_all(&out).await.unwrap();
    // Column count, column definition, (EOF), row: the row is the first
    // packet whose payload starts with a length-encoded string of the name.
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    while packets.len() < 5 {
        while let Some((_, len)) = codec::frame_at(&buf, 1 << 20).unwrap() {
            let p = buf.split_to(codec::HEADER_LEN + len);
            packets.push(p[codec::HEADER_LEN..].to_vec());
        }
        if packets.len() >= 4 {
            break;
        }
        assert_ne!(up.stream.read_buf(&mut buf).await.unwrap(), 0, "closed");
    }
    assert_eq!(packets[0], [1], "one column");
    let row = packets
        .iter()
        .rev()
        .find(|p| !codec::is_eof(p))
        .expect("a row");
    let mut r = codec::Reader::new(row, "row");
    Ok(String::from_utf8(r.lenenc_bytes().unwrap().to_vec()).unwrap())
}

#[tokio::test]
async fn logs_in_with_mysql_native_password() {
    let user = current_user("idgate_native", "native-secret")
        .await
        .unwrap();
    assert_eq!(user, "idgate_native@%");
}

#[tokio::test]
async fn logs_in_with_mariadb_ed25519() {
    let user = current_user("idgate_ed", "ed-secret").await.unwrap();
    assert_eq!(user, "idgate_ed@%");
}

#[tokio::test]
async fn a_wrong_password_is_the_servers_refusal() {
    for user in ["idgate_native", "idgate_ed"] {
        match current_user(user, "wrong").await {
            Err(UpstreamError::Refused(e)) => assert_eq!(e.code, 1045, "{e:?}"),
            other => panic!("{user}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}
