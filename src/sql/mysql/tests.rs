use super::*;

#[test]
fn a_server_sql_mode_is_followed_only_when_it_reads_sql_as_the_gateway_does() {
    assert!(sql_mode_is_followable("").is_ok());
    assert!(
        sql_mode_is_followable(
            "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
        )
        .is_ok()
    );
    for unsafe_mode in [
        "ANSI_QUOTES",
        "NO_BACKSLASH_ESCAPES",
        "ANSI",
        "ORACLE,STRICT_ALL_TABLES",
    ] {
        assert!(
            sql_mode_is_followable(unsafe_mode).is_err(),
            "{unsafe_mode}"
        );
    }
}

fn actions(sql: &str) -> Vec<(Action, String)> {
    classify_mysql(sql, "shop")
        .statements
        .into_iter()
        .map(|s| (s.action, s.kind))
        .collect()
}

fn action(sql: &str) -> Action {
    classify_mysql(sql, "shop")
        .statements
        .iter()
        .map(|s| s.action)
        .reduce(|a, b| if stronger(b, a) { b } else { a })
        .expect("a statement")
}

#[test]
fn the_function_list_is_sorted() {
    assert!(SAFE_FUNCTIONS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn reads_stay_reads() {
    for sql in [
        "SELECT * FROM orders WHERE id = 1",
        "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id",
        "SELECT count(*), max(total) FROM shop.orders GROUP BY status",
        "SELECT upper(name), date_format(now(), '%Y') FROM customers",
        "SELECT json_extract(doc, '$.a') FROM docs",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
        "SELECT id, row_number() OVER (ORDER BY id) FROM orders",
        "SHOW TABLES",
        "SHOW VARIABLES LIKE 'version'",
        "SHOW CREATE TABLE orders",
        "DESCRIBE orders",
        "EXPLAIN SELECT * FROM orders",
        "SELECT @@transaction_read_only",
        "SELECT 1 INTO @v",
        "SELECT SLEEP(1)",
        "DO 1",
        "SHOW FULL PROCESSLIST",
        "SHOW CREATE DATABASE shop",
        "SHOW TABLE STATUS FROM shop WHERE Name = 'orders'",
        "SHOW FUNCTION STATUS LIKE 'f%'",
        // With backslash escapes on (the only mode the gateway allows)
        // this is one string, for the server as for the gateway.
        "SELECT 'a\\'; DELETE FROM orders; -- '",
    ] {
        assert_eq!(action(sql), Action::Read, "{sql}");
    }
}

#[test]
fn tables_are_qualified_with_the_current_database() {
    let c = classify_mysql("SELECT * FROM orders JOIN other.t USING (id)", "shop");
    assert_eq!(c.statements[0].tables, ["other.t", "shop.orders"]);
    assert_eq!(c.statements[0].schemas, ["other", "shop"]);
}

#[test]
fn use_names_its_database_and_later_statements_are_read_in_it() {
    let c = classify_mysql("SELECT * FROM t; USE `other`; SELECT * FROM t", "shop");
    let found: Vec<_> = c
        .statements
        .iter()
        .map(|s| (s.kind.as_str(), s.schemas.clone(), s.tables.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("select", vec!["shop".to_owned()], vec!["shop.t".to_owned()]),
            ("use", vec!["other".to_owned()], vec![]),
            (
                "select",
                vec!["other".to_owned()],
                vec!["other.t".to_owned()]
            ),
        ]
    );
}

#[test]
fn read_only_tricks_are_not_reads() {
    for sql in [
        "INSERT INTO orders VALUES (1)",
        "UPDATE orders SET total = 0",
        "DELETE FROM orders",
        "REPLACE INTO orders VALUES (1)",
        "SET SESSION TRANSACTION READ WRITE",
        "SET TRANSACTION READ WRITE",
        "START TRANSACTION READ WRITE",
        "SET @@transaction_read_only = 0",
        "SET @@session.transaction_read_only = 0",
        "SET SESSION transaction_read_only = OFF",
        "SET GLOBAL read_only = 0",
        "SET @@global.max_connections = 1",
        "SET GLOBAL TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        "SET @@persist.time_zone = '+00:00'",
        "SET @@hot_cache.key_buffer_size = 1048576",
        "SET sql_mode = 'NO_BACKSLASH_ESCAPES'",
        "SET sql_mode = 'ANSI_QUOTES'",
        "SET sql_mode = 'STRICT_TRANS_TABLES,ANSI'",
        "SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')",
        "SET sql_mode = CONCAT(@@global.sql_mode, ',STRICT_TRANS_TABLES')",
        "SET sql_mode = DEFAULT",
        "SET sql_mode = 4",
        "SET sql_mode = (SELECT 'ANSI_QUOTES')",
        "SET sql_mode = REPLACE('ANSI_QUOTEZ', 'Z', 'S')",
        "SET GLOBAL sql_mode = ''",
        "SET NAMES gbk",
        "SET NAMES sjis",
        "SET character_set_client = big5",
        "SELECT * FROM orders INTO OUTFILE '/tmp/x'",
        "SELECT 'x' INTO DUMPFILE '/tmp/x'",
        "SELECT LOAD_FILE('/etc/passwd')",
        "LOAD DATA INFILE '/tmp/x' INTO TABLE orders",
        "LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE orders",
        "HANDLER orders OPEN",
        "CALL refund(1)",
        "DO GET_LOCK('a', 10)",
        "SELECT GET_LOCK('a', 10)",
        "SELECT RELEASE_ALL_LOCKS()",
        "SET GLOBAL general_log = 1",
        "PREPARE s FROM @q",
        "PREPARE s FROM 'DELETE FROM orders'",
        "EXECUTE s",
        "LOCK TABLES orders WRITE",
        "LOCK TABLES orders READ",
        "SELECT shop.my_func(1)",
        "SELECT my_func(1)",
        "SELECT NEXTVAL(seq)",
        "SELECT * FROM orders FOR UPDATE",
        "SELECT * FROM orders LOCK IN SHARE MODE",
        // Locks anywhere in the statement.
        "SELECT * FROM (SELECT * FROM orders FOR UPDATE) AS d",
        "SELECT * FROM orders WHERE id IN (SELECT id FROM orders FOR UPDATE)",
        "WITH x AS (SELECT * FROM orders FOR UPDATE) SELECT * FROM x",
        "SELECT EXISTS (SELECT * FROM orders FOR UPDATE)",
        // MySQL 8's CTE-wrapped writes, which sqlparser reads as queries.
        "WITH x AS (SELECT 1) DELETE FROM orders",
        "WITH x AS (SELECT 1) UPDATE orders SET total = 0",
        "WITH x AS (SELECT 1 AS id) INSERT INTO orders SELECT id FROM x",
        // sqlparser's own statement loop stops at END.
        "SELECT 1 END; DELETE FROM orders",
        "SELECT * FROM orders END; DELETE FROM orders",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE",
        "SHOW TABLE STATUS WHERE my_func(Name) = 1",
        "SELECT BENCHMARK(1000000000, md5('x'))",
        "SELECT 1 /*! ; DELETE FROM orders */",
        "SELECT 1 /*!50000 ; DELETE FROM orders */",
        "SELECT 1 /*M! ; DELETE FROM orders */",
        "SELECT 1 /*M!100500 ; DELETE FROM orders */",
        "SELECT 1 /*!50000 '*/ ; DELETE FROM orders; -- ' */",
        "SELECT 1--1; DELETE FROM orders",
        "SELECT 1 # x\n; DELETE FROM orders",
        // The server's `--` comment (any whitespace), not sqlparser's (a space).
        "SELECT 1 --\t'\n; DELETE FROM orders; -- '",
        "SET STATEMENT max_statement_time=1 FOR DELETE FROM orders",
        "GRANT ALL ON *.* TO x",
        "CREATE TABLE t (id int)",
        "DROP TABLE orders",
        "TRUNCATE orders",
        "KILL 5",
        "FLUSH PRIVILEGES",
        "INSTALL SONAME 'x'",
    ] {
        let a = action(sql);
        assert!(
            stronger(a, Action::Read),
            "{sql} was judged {a:?}: {:?}",
            actions(sql)
        );
    }
}

#[test]
fn harmless_session_changes_are_session() {
    for sql in [
        "SET @x = 1",
        "SET NAMES utf8mb4",
        "SET time_zone = '+00:00'",
        "SET SESSION sql_select_limit = 10",
        "SET @@session.group_concat_max_len = 10000",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'",
        "SET sql_mode = ''",
        "SET autocommit = 1, sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')",
        "SET @@SESSION.sql_mode = CONCAT(CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), ',NO_AUTO_VALUE_ON_ZERO'), @@SESSION.sql_auto_is_null = 0, @@SESSION.wait_timeout = 2147483",
        "USE shop",
    ] {
        assert!(
            matches!(action(sql), Action::Session | Action::Transaction),
            "{sql}: {:?}",
            actions(sql)
        );
    }
    assert_eq!(action("SET autocommit = 0"), Action::Transaction);
    assert_eq!(action("START TRANSACTION READ ONLY"), Action::Transaction);
    assert_eq!(
        action("START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */"),
        Action::Transaction
    );
}

#[test]
fn a_version_comment_is_judged_both_ways() {
    let c = classify_mysql("SELECT 1 /*!99999 , secret FROM keys */", "shop");
    assert_eq!(c.statements.len(), 2);
    assert!(c.statements.iter().any(|s| s.tables == ["shop.keys"]));
}
