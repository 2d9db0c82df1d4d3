// Drive a MySQL endpoint (idgate's MySQL front end, or MariaDB itself) with
// MariaDB Connector/J (Debian libmariadb-java, 2.7) and server-side prepared
// statements.
//
// Usage (single-file source launch, no javac step):
//   java -cp /usr/share/java/mariadb-java-client.jar tests/drivers/MariadbCheck.java
//
// Settings from the environment, as for every check in tests/drivers/ (see
// mysql_check.py): HOST, PORT, USER, PASSWORD (the token), DATABASE, TABLE,
// AUTH (cleartext | native), CA_FILE, VERIFY_PREPARE=1; and JDBC_PROPERTIES,
// more connection properties as `key=value;key=value`.
//
// Runs a plain SELECT (Statement: COM_QUERY), a prepared statement with a
// parameter (useServerPrepStmts=true: COM_STMT_PREPARE / COM_STMT_EXECUTE),
// and two transactions (setAutoCommit(false), then commit or rollback).
// Prints the single line `ok mariadb-java-client` and exits 0; on failure
// prints the error to stderr and exits 1 (2 for a usage error).

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Properties;

public class MariadbCheck {
  static final class Mismatch extends Exception {
    Mismatch(String message) {
      super(message);
    }
  }

  record Row(int id, String name) {}

  static void expect(String what, Object got, Object want) throws Mismatch {
    if (!Objects.equals(got, want)) {
      throw new Mismatch(what + ": got " + got + ", want " + want);
    }
  }

  static String env(String name, String fallback) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      if (fallback == null) {
        throw new IllegalArgumentException(name + " is not set");
      }
      return fallback;
    }
    return value;
  }

  static Connection connect() throws SQLException {
    String host = env("HOST", "127.0.0.1");
    String port = env("PORT", "3306");
    String database = env("DATABASE", "idgate_test");
    String auth = env("AUTH", "cleartext");
    String caFile = System.getenv("CA_FILE");
    if (!auth.equals("cleartext") && !auth.equals("native")) {
      throw new IllegalArgumentException("AUTH must be cleartext or native, not " + auth);
    }
    Properties props = new Properties();
    props.setProperty("user", env("USER", null));
    props.setProperty("password", env("PASSWORD", null));
    props.setProperty("useServerPrepStmts", "true");
    props.setProperty("connectTimeout", "10000");
    if (caFile != null && !caFile.isEmpty()) {
      // TLS; the certificate must chain to CA_FILE and be for HOST.
      props.setProperty("useSsl", "true");
      props.setProperty("serverSslCert", caFile);
    } else {
      // Connector/J 2.7 answers a switch to mysql_clear_password only with
      // TLS, unless useSsl=false is said explicitly (the plaintext loopback
      // the gateway may allow).
      props.setProperty("useSsl", "false");
    }
    String extra = System.getenv("JDBC_PROPERTIES");
    if (extra != null && !extra.isEmpty()) {
      for (String pair : extra.split(";")) {
        String[] kv = pair.split("=", 2);
        if (kv.length != 2) {
          throw new IllegalArgumentException("JDBC_PROPERTIES: not key=value: " + pair);
        }
        props.setProperty(kv[0].trim(), kv[1].trim());
      }
    }
    String url = "jdbc:mariadb://" + host + ":" + port + "/" + database;
    return DriverManager.getConnection(url, props);
  }

  static long stmtPrepareCount(Connection conn) throws SQLException {
    try (Statement st = conn.createStatement();
        ResultSet rs = st.executeQuery("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'")) {
      rs.next();
      return rs.getLong(2);
    }
  }

  static void check(Connection conn, String table, boolean verifyPrepare)
      throws SQLException, Mismatch {
    List<Row> rows = new ArrayList<>();
    try (Statement st = conn.createStatement();
        ResultSet rs = st.executeQuery("SELECT id, name FROM " + table + " ORDER BY id")) {
      while (rs.next()) {
        rows.add(new Row(rs.getInt(1), rs.getString(2)));
      }
    }
    if (rows.isEmpty()) {
      throw new Mismatch(table + " has no rows: the test must insert some");
    }

    long before = verifyPrepare ? stmtPrepareCount(conn) : 0;
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT id, name FROM " + table + " WHERE id = ?")) {
      for (Row want : rows.subList(0, Math.min(2, rows.size()))) {
        ps.setInt(1, want.id());
        List<Row> got = new ArrayList<>();
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            got.add(new Row(rs.getInt(1), rs.getString(2)));
          }
        }
        expect("prepared by id " + want.id(), got, List.of(want));
      }
    }
    try (PreparedStatement ps =
        conn.prepareStatement(
            "SELECT id FROM " + table + " WHERE name = ? ORDER BY id LIMIT 1")) {
      ps.setString(1, rows.get(0).name());
      try (ResultSet rs = ps.executeQuery()) {
        expect("prepared by name", rs.next() ? rs.getInt(1) : null, rows.get(0).id());
      }
    }
    if (verifyPrepare) {
      long prepared = stmtPrepareCount(conn) - before;
      if (prepared < 2) {
        throw new Mismatch(
            "Com_stmt_prepare went up by " + prepared + ", want at least 2 (server-side prepare)");
      }
      System.err.println("mariadb-java-client: " + prepared + " statements prepared on the server");
    }

    for (String end : List.of("commit", "rollback")) {
      conn.setAutoCommit(false);
      try (Statement st = conn.createStatement();
          ResultSet rs = st.executeQuery("SELECT count(*) FROM " + table)) {
        rs.next();
        expect("count inside a transaction ended by " + end, rs.getInt(1), rows.size());
      }
      if (end.equals("commit")) {
        conn.commit();
      } else {
        conn.rollback();
      }
      conn.setAutoCommit(true);
    }
    try (Statement st = conn.createStatement();
        ResultSet rs = st.executeQuery("SELECT @@in_transaction")) {
      rs.next();
      expect("@@in_transaction after the transactions", rs.getInt(1), 0);
    }
  }

  public static void main(String[] args) {
    String table;
    boolean verifyPrepare;
    try {
      table = env("TABLE", "idgate_test.items");
      verifyPrepare = "1".equals(System.getenv("VERIFY_PREPARE"));
    } catch (IllegalArgumentException e) {
      System.err.println("mariadb-java-client: " + e.getMessage());
      System.exit(2);
      return;
    }
    try (Connection conn = connect()) {
      check(conn, table, verifyPrepare);
    } catch (IllegalArgumentException e) {
      System.err.println("mariadb-java-client: " + e.getMessage());
      System.exit(2);
    } catch (Exception e) {
      System.err.println("mariadb-java-client ERROR: " + e);
      System.exit(1);
    }
    System.out.println("ok mariadb-java-client");
  }
}
