// Prepared-statement workload for pgJDBC through the pooler (test_drivers.py).
//
// usage: java -cp postgresql.jar:DIR PreparedWorkload host port db user password clients iterations
//
// Each of `clients` threads opens its own connection with prepareThreshold=1, so every
// PreparedStatement becomes a named server-side statement ("S_1", "S_2", ...) on its
// first execution, and runs `iterations` rounds of:
//   SELECT ?::int + ?::int                                    (autocommit)
//   SELECT count(*) FROM pg_class WHERE oid < ?::int::oid     (autocommit)
//   SELECT ?::int * F  -- client C                            (autocommit; F = C + 2: a text
//                      of this client's own, so with a small max_prepared_statements the
//                      pooler must evict and re-prepare on every shared server)
//   BEGIN; the two statements again with other values; COMMIT (setAutoCommit(false))
// Every result is checked. Exit 0 and print
//   "jdbc ok clients=N iterations=M checks=K"
// only if all of them were right; otherwise print the failures and exit 1.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

public class PreparedWorkload {
    static final ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
    static final AtomicLong checks = new AtomicLong();

    static void check(int client, int iter, String what, long got, long want) {
        checks.incrementAndGet();
        if (got != want && failures.size() < 50) {
            failures.add("client " + client + " iter " + iter + ": " + what + " = " + got + ", want " + want);
        }
    }

    static long single(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            if (!rs.next()) throw new SQLException("no row");
            long v = rs.getLong(1);
            if (rs.next()) throw new SQLException("more than one row");
            return v;
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            System.err.println("usage: PreparedWorkload host port db user password clients iterations");
            System.exit(2);
        }
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2];
        final Properties props = new Properties();
        props.setProperty("user", args[3]);
        props.setProperty("password", args[4]);
        props.setProperty("prepareThreshold", "1");
        props.setProperty("preparedStatementCacheQueries", "256"); // the driver's default
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "40");
        props.setProperty("ApplicationName", "pgvigil-jdbc-workload");
        final int clients = Integer.parseInt(args[5]);
        final int iterations = Integer.parseInt(args[6]);

        // Expected answers of the pg_class query, read once through the pooler with plain
        // statements. Only initdb's objects have oids below 16384, so they cannot change.
        final long[] expected = new long[4];
        final int[] thresholds = {1000, 2000, 3000, 16384};
        try (Connection c = DriverManager.getConnection(url, props);
             java.sql.Statement st = c.createStatement()) {
            for (int i = 0; i < thresholds.length; i++) {
                try (ResultSet rs = st.executeQuery("SELECT count(*) FROM pg_class WHERE oid < " + thresholds[i] + "::int::oid")) {
                    rs.next();
                    expected[i] = rs.getLong(1);
                }
            }
        }

        Thread[] threads = new Thread[clients];
        for (int t = 0; t < clients; t++) {
            final int client = t;
            threads[t] = new Thread(() -> {
                try (Connection c = DriverManager.getConnection(url, props)) {
                    PreparedStatement add = c.prepareStatement("SELECT ?::int + ?::int");
                    PreparedStatement cnt = c.prepareStatement("SELECT count(*) FROM pg_class WHERE oid < ?::int::oid");
                    final int f = client + 2;
                    PreparedStatement mul = c.prepareStatement("SELECT ?::int * " + f + " -- client " + client);
                    for (int i = 0; i < iterations; i++) {
                        int a = client * 1000 + i, b = i * 7 + 3;
                        add.setInt(1, a);
                        add.setInt(2, b);
                        check(client, i, "add", single(add), (long) a + b);
                        int k = (client + i) % thresholds.length;
                        cnt.setInt(1, thresholds[k]);
                        check(client, i, "count(oid<" + thresholds[k] + ")", single(cnt), expected[k]);
                        mul.setInt(1, i);
                        check(client, i, "mul", single(mul), (long) i * f);

                        c.setAutoCommit(false);
                        add.setInt(1, -a);
                        add.setInt(2, 2 * b);
                        check(client, i, "tx add", single(add), (long) -a + 2 * b);
                        int k2 = (k + 1) % thresholds.length;
                        cnt.setInt(1, thresholds[k2]);
                        check(client, i, "tx count(oid<" + thresholds[k2] + ")", single(cnt), expected[k2]);
                        c.commit();
                        c.setAutoCommit(true);
                    }
                    add.close();
                    cnt.close();
                    mul.close();
                } catch (Throwable e) {
                    failures.add("client " + client + ": " + e);
                }
            });
            threads[t].start();
        }
        for (Thread th : threads) th.join();

        if (!failures.isEmpty()) {
            for (String f : failures) System.out.println("FAIL " + f);
            System.out.println("jdbc FAILED failures=" + failures.size() + " checks=" + checks.get());
            System.exit(1);
        }
        long want = 5L * clients * iterations;
        if (checks.get() != want) {
            System.out.println("jdbc FAILED checks=" + checks.get() + " want " + want);
            System.exit(1);
        }
        System.out.println("jdbc ok clients=" + clients + " iterations=" + iterations + " checks=" + checks.get());
    }
}
