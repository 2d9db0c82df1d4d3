use super::*;

fn startup_bytes(params: &[(&str, &str)]) -> BytesMut {
    let mut b = BytesMut::new();
    startup_message(&mut b, params);
    b
}

#[test]
fn startup_message_round_trips() {
    let b = startup_bytes(&[("user", "reader"), ("database", "orders")]);
    assert_eq!(startup_len(&b).unwrap(), Some(b.len()));
    let StartupMessage::Startup { params } = parse_startup(&b).unwrap() else {
        panic!("not a startup message");
    };
    assert_eq!(params[0], ("user".into(), "reader".into()));
    assert_eq!(params[1], ("database".into(), "orders".into()));
}

#[test]
fn ssl_and_cancel_requests_are_recognised() {
    let mut b = BytesMut::new();
    ssl_request(&mut b);
    assert_eq!(parse_startup(&b).unwrap(), StartupMessage::SslRequest);
    let mut b = BytesMut::new();
    cancel_request(&mut b, 7, -9);
    assert_eq!(
        parse_startup(&b).unwrap(),
        StartupMessage::Cancel { pid: 7, key: -9 }
    );
}

#[test]
fn oversized_or_tiny_startup_length_is_refused() {
    assert!(startup_len(&100_000i32.to_be_bytes()).is_err());
    assert!(startup_len(&4i32.to_be_bytes()).is_err());
}

#[test]
fn protocol_v2_is_refused() {
    let mut b = BytesMut::new();
    b.put_i32(8);
    b.put_i32(2 << 16);
    assert_eq!(parse_startup(&b), Err(CodecError::Version(2, 0)));
}

#[test]
fn frame_at_waits_for_the_whole_message_and_bounds_length() {
    let mut b = BytesMut::new();
    password_message(&mut b, b"tok");
    assert_eq!(frame_at(&b[..4], 100).unwrap(), None);
    assert_eq!(frame_at(&b[..b.len() - 1], 100).unwrap(), None);
    assert_eq!(frame_at(&b, 100).unwrap(), Some((b'p', b.len())));
    assert_eq!(frame_at(&b, 4), Err(CodecError::TooLong(b.len())));
    assert_eq!(parse_password(&b[5..]).unwrap(), b"tok");
}

/// Runs a splitter over `stream` cut at `split`, as a relay would: keeps
/// the unconsumed tail of each read. Returns (held messages, streamed bytes).
fn split_run(stream: &[u8], split: usize, holds: fn(u8) -> bool) -> (Vec<(u8, Vec<u8>)>, Vec<u8>) {
    let mut splitter = Splitter::default();
    let mut buf = Vec::new();
    let mut held = Vec::new();
    let mut streamed = Vec::new();
    for part in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(part);
        let mut pos = 0;
        while let Some(piece) = splitter.next(&buf, pos, holds, 1 << 20).unwrap() {
            match piece {
                Piece::Stream(r) => {
                    streamed.extend_from_slice(&buf[r.clone()]);
                    pos = r.end;
                }
                Piece::Held { tag, frame } => {
                    held.push((tag, buf[frame.start + 5..frame.end].to_vec()));
                    pos = frame.end;
                }
            }
        }
        buf.drain(..pos);
    }
    assert!(buf.is_empty(), "everything consumed");
    (held, streamed)
}

#[test]
fn splitter_holds_whole_messages_and_streams_the_rest_at_every_split() {
    let mut stream = BytesMut::new();
    query(&mut stream, "select 1");
    let at = begin(&mut stream, b'd');
    stream.put_slice(&[7u8; 100]);
    end(&mut stream, at);
    terminate(&mut stream);
    query(&mut stream, "select 2");
    for split in 0..=stream.len() {
        let (held, streamed) = split_run(&stream, split, |t| t != b'd');
        assert_eq!(
            held,
            vec![
                (b'Q', b"select 1\0".to_vec()),
                (b'X', Vec::new()),
                (b'Q', b"select 2\0".to_vec())
            ],
            "split at {split}"
        );
        assert_eq!(streamed.len(), 105, "split at {split}");
    }
}

#[test]
fn splitter_refuses_a_held_message_over_the_limit() {
    let mut stream = BytesMut::new();
    query(&mut stream, &"x".repeat(100));
    let mut s = Splitter::default();
    assert_eq!(
        s.next(&stream, 0, |_| true, 50),
        Err(CodecError::TooLong(stream.len()))
    );
}

#[test]
fn error_response_round_trips() {
    let mut b = BytesMut::new();
    error_response(
        &mut b,
        &ErrorFields {
            hint: Some("get a new one"),
            ..ErrorFields::fatal(sqlstate::INVALID_PASSWORD, "token expired 5 s ago")
        },
    );
    assert_eq!(b[0], b'E');
    let e = parse_error(&b[5..]);
    assert_eq!(e.code, "28P01");
    assert_eq!(e.severity, "FATAL");
    assert_eq!(e.message, "token expired 5 s ago");
}

#[test]
fn command_complete_rows_reads_the_last_number() {
    assert_eq!(command_complete_rows(b"INSERT 0 5\0"), Some(5));
    assert_eq!(command_complete_rows(b"SELECT 3\0"), Some(3));
    assert_eq!(command_complete_rows(b"CREATE TABLE\0"), None);
}

#[test]
fn extended_protocol_bodies_parse() {
    assert_eq!(
        parse_parse(b"s1\0select $1\0\0\0").unwrap(),
        ("s1", "select $1")
    );
    assert_eq!(parse_bind(b"\0s1\0\0\0").unwrap(), ("", "s1"));
    assert_eq!(parse_close(b"Ss1\0").unwrap(), (b'S', "s1"));
}
