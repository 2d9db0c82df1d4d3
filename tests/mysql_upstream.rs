//! Logging in to the real MariaDB as a role's upstream user, with each auth
//! plugin the server offers here (fixtures from scripts/setup), and the
//! server's own refusal of a wrong password.

use std::time::Duration;

use bytes::BytesMut;
use idgate::config::{PoolConfig, Protocol, RoleConfig, TargetConfig, UpstreamTls};
use idgate::mysql::codec::{self, caps};
use idgate::mysql::response::{Ended, Progress, Reply};
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
        password: Some(Secret::new(password).into()),
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
        idgate::mysql::codec::UTF8MB4,
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

/// Reads packets of one reply to `payload` (a command) until `Reply` says
/// it is done; returns how it ended and the packets read.
async fn exchange(
    up: &mut upstream::Upstream,
    buf: &mut BytesMut,
    payload: &[u8],
    deprecate_eof: bool,
) -> (Option<Ended>, usize) {
    let mut out = BytesMut::new();
    codec::write_packet(&mut out, 0, payload);
    up.stream.write_all(&out).await.unwrap();
    let mut reply = Reply::to(payload[0], deprecate_eof);
    if reply.is_silent() {
        return (None, 0);
    }
    let mut packets = 0;
    loop {
        while let Some((_, len)) = codec::frame_at(buf, 1 << 24).unwrap() {
            let p = buf.split_to(codec::HEADER_LEN + len);
            packets += 1;
            if reply.feed(&p[codec::HEADER_LEN..]).unwrap() == Progress::Done {
                return (reply.ended().cloned(), packets);
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(5), up.stream.read_buf(buf))
            .await
            .expect("the reply went on: Reply missed its end")
            .unwrap();
        assert_ne!(read, 0, "closed");
    }
}

/// Every kind of reply the server gives ends exactly where `Reply` says:
/// after it, the next packet is the answer to the next command.
#[tokio::test]
async fn replies_end_where_the_reply_tracker_says() {
    for deprecate_eof in [false, true] {
        let wanted = caps::MULTI_STATEMENTS
            | caps::MULTI_RESULTS
            | caps::PS_MULTI_RESULTS
            | if deprecate_eof {
                caps::DEPRECATE_EOF
            } else {
                0
            };
        let (target, role) = (target(), role("idgate_native", "native-secret"));
        let mut up = upstream::connect(
            &target,
            None,
            &role,
            wanted,
            idgate::mysql::codec::UTF8MB4,
            &[],
        )
        .await
        .unwrap();
        let deprecate_eof = up.capabilities & caps::DEPRECATE_EOF != 0;
        let mut buf = BytesMut::new();
        let table = format!("reply_{}", std::process::id());
        let mut cmds: Vec<Vec<u8>> = vec![
            [
                b"\x03".as_slice(),
                format!("CREATE TEMPORARY TABLE {table} (id int, name text)").as_bytes(),
            ]
            .concat(),
            [
                b"\x03".as_slice(),
                format!("INSERT INTO {table} VALUES (1, 'a'), (2, NULL)").as_bytes(),
            ]
            .concat(),
            [
                b"\x03".as_slice(),
                format!("SELECT * FROM {table}; SELECT 1; DO 1; SELECT 'x', 'y'").as_bytes(),
            ]
            .concat(),
            b"\x03SELECT * FROM no_such_table".to_vec(),
            b"\x03SELECT 1; SELECT * FROM no_such_table; SELECT 2".to_vec(),
            [b"\x04".as_slice(), table.as_bytes(), b"\0"].concat(),
            b"\x09".to_vec(),
            b"\x16SELECT ? + 1, 'a'".to_vec(),
            b"\x16SELECT 1".to_vec(),
            b"\x16DO ?".to_vec(),
            b"\x16SELECT * FROM no_such_table".to_vec(),
            b"\x0e".to_vec(),
        ];
        for cmd in cmds.drain(..) {
            let (ended, packets) = exchange(&mut up, &mut buf, &cmd, deprecate_eof).await;
            assert!(
                ended.is_some() && packets > 0,
                "{:?}",
                String::from_utf8_lossy(&cmd)
            );
            // Nothing of that reply is left: a ping's OK comes next.
            let (ping, n) = exchange(&mut up, &mut buf, b"\x0e", deprecate_eof).await;
            assert!(
                matches!(ping, Some(Ended::Ok { .. })) && n == 1,
                "after {:?} (deprecate_eof {deprecate_eof}): {ping:?}",
                String::from_utf8_lossy(&cmd)
            );
        }
    }
}
