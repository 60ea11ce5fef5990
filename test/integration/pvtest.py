"""Helpers for the pgvigil integration tests.

Everything a test session needs lives in one temporary directory: a copy of
the pooler binary, a throwaway PostgreSQL 15 cluster, and one sub-directory
per pooler instance (ini, auth file, unix socket, log, sanitizer reports).

When the tests run as root, PostgreSQL and the pooler both refuse to start,
so they are run as the system user ``pgvigil-test`` (created if missing).

Environment:
  PGVIGIL_BIN        pooler binary to test (default: <repo>/build/pgvigil);
                     PgBouncer can be used as a stand-in.
  PGVIGIL_SANITIZED  1 = the binary is built with ASan/UBSan; fail a test if
                     the pooler reports anything.
  PG_BINDIR          PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
"""
import hashlib
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PG_BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
TEST_USER = "pgvigil-test"
SANITIZED = os.environ.get("PGVIGIL_SANITIZED") == "1"

# Roles of the test cluster and their passwords.
SUPERUSER = "pvsuper"
PASSWORDS = {
    "md5user": "md5-secret",      # stored as md5 in pg_authid, pg_hba md5
    "scramuser": "scram-secret",  # stored as SCRAM, pg_hba scram-sha-256
    "plainuser": "plain-secret",  # stored as SCRAM, pg_hba scram-sha-256
    "pwuser": "pw-secret",        # pg_hba "password": server asks cleartext
}
TESTDB = "testdb"


def pooler_bin():
    return os.path.abspath(os.environ.get("PGVIGIL_BIN", os.path.join(REPO, "build", "pgvigil")))


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value; raise after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def md5_secret(user, password):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


class RunAs:
    """Who runs postgres and the pooler: the current user, or pgvigil-test when root."""

    def __init__(self):
        self.root = os.geteuid() == 0
        if self.root:
            try:
                pw = pwd.getpwnam(TEST_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home",
                                "--shell", "/usr/sbin/nologin", TEST_USER],
                               check=True, timeout=30)
                pw = pwd.getpwnam(TEST_USER)
            self.uid, self.gid, self.name = pw.pw_uid, pw.pw_gid, pw.pw_name
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            self.name = pwd.getpwuid(self.uid).pw_name

    def popen_kwargs(self):
        if not self.root:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path):
        if self.root:
            os.chown(path, self.uid, self.gid)

    def mkdir(self, path, mode=0o755):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        self.chown(path)
        return path

    def write(self, path, text, mode=0o644):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        self.chown(path)
        return path

    def run(self, args, **kw):
        kw.setdefault("timeout", 60)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(args, **self.popen_kwargs(), **kw)


class Session:
    """Per-test-session temp dir and run-as user."""

    def __init__(self):
        self.runas = RunAs()
        self.dir = tempfile.mkdtemp(prefix="pgvigil-it-")
        os.chmod(self.dir, 0o755)
        self.runas.chown(self.dir)
        src = pooler_bin()
        if not os.path.exists(src):
            raise RuntimeError(f"pooler binary not found: {src} (set PGVIGIL_BIN)")
        bindir = self.runas.mkdir(os.path.join(self.dir, "bin"))
        self.bin = os.path.join(bindir, os.path.basename(src))
        shutil.copy2(src, self.bin)
        os.chmod(self.bin, 0o755)
        self.runas.chown(self.bin)
        self._counter = 0

    def new_dir(self, prefix):
        self._counter += 1
        return self.runas.mkdir(os.path.join(self.dir, f"{prefix}{self._counter}"))

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


class PgCluster:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 and a unix socket."""

    def __init__(self, sess):
        self.sess = sess
        self.runas = sess.runas
        self.base = self.runas.mkdir(os.path.join(sess.dir, "pg"))
        self.data = os.path.join(self.base, "data")
        self.unix_dir = self.runas.mkdir(os.path.join(self.base, "sock"))
        self.logfile = os.path.join(self.base, "postgres.log")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc = None

    def start(self):
        r = self.runas.run([os.path.join(PG_BINDIR, "initdb"), "-D", self.data, "-U", SUPERUSER,
                            "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                           cwd=self.base, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        hba = [
            "local all all trust",
            "host all md5user 127.0.0.1/32 md5",
            "host all scramuser 127.0.0.1/32 scram-sha-256",
            "host all pwuser 127.0.0.1/32 password",
            f"host all {SUPERUSER} 127.0.0.1/32 reject",
            "host all all 127.0.0.1/32 scram-sha-256",
        ]
        self.runas.write(os.path.join(self.data, "pg_hba.conf"), "\n".join(hba) + "\n", 0o600)
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(PG_BINDIR, "postgres"), "-D", self.data,
             "-c", f"port={self.port}", "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.unix_dir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=32MB",
             "-c", "logging_collector=off", "-c", "log_min_messages=warning"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.base, **self.runas.popen_kwargs())
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited:\n" + self.log_text())
            return os.path.exists(os.path.join(self.unix_dir, f".s.PGSQL.{self.port}")) and \
                port_accepts(self.host, self.port)
        wait_until(ready, 60, what="postgres to accept connections")
        wait_until(self._can_query, 30, interval=0.05, what="postgres to accept queries")
        self._setup()

    def _can_query(self):
        try:
            with self.connect() as c:
                c.execute("SELECT 1")
            return True
        except Exception:
            return False

    def connect(self, dbname="postgres", **kw):
        import psycopg
        return psycopg.connect(host=self.unix_dir, port=self.port, user=SUPERUSER,
                               dbname=dbname, autocommit=True, connect_timeout=10, **kw)

    def _setup(self):
        with self.connect() as c:
            c.execute("SET password_encryption = 'md5'")
            c.execute(f"CREATE ROLE md5user LOGIN PASSWORD '{PASSWORDS['md5user']}'")
            c.execute("SET password_encryption = 'scram-sha-256'")
            for role in ("scramuser", "plainuser", "pwuser"):
                c.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORDS[role]}'")
            c.execute(f"CREATE DATABASE {TESTDB}")
        with self.connect(TESTDB) as c:
            c.execute("GRANT ALL ON SCHEMA public TO PUBLIC")
            c.execute("CREATE TABLE copytest (id int PRIMARY KEY, name text, val numeric)")
            c.execute("GRANT ALL ON copytest TO PUBLIC")
            c.execute("INSERT INTO copytest SELECT g, 'row ' || g, g * 1.5 FROM generate_series(1, 1000) g")

    def scram_secret(self, role):
        with self.connect() as c:
            row = c.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()
        assert row and row[0].startswith("SCRAM-SHA-256$"), row
        return row[0]

    def db_line(self, dbname=TESTDB, **extra):
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={dbname}"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc:
            stop_process(self.proc, signal.SIGINT, timeout=30)


def auth_file_line(user, secret):
    q = lambda s: '"' + s.replace('"', '""') + '"'
    return f"{q(user)} {q(secret)}"


class Pooler:
    """One pooler process (pgvigil, or PgBouncer as stand-in)."""

    STOP_GRACE = 3.0

    def __init__(self, sess, pg, databases=None, userlist=None, users=None, **ini):
        self.sess = sess
        self.runas = sess.runas
        self.pg = pg
        self.dir = sess.new_dir("pooler")
        self.unix_dir = self.dir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.logfile = os.path.join(self.dir, "pooler.log")
        self.san_prefix = os.path.join(self.dir, "san")
        self.proc = None
        self.stopped_by_test = False
        self.killed = False
        if databases is None:
            databases = {TESTDB: pg.db_line()}
        if userlist is None:
            userlist = dict(PASSWORDS)
        self.databases = databases
        self.userlist = userlist
        settings = {
            "listen_addr": self.host,
            "listen_port": self.port,
            "unix_socket_dir": self.unix_dir,
            "auth_type": "md5",
            "auth_file": os.path.join(self.dir, "userlist.txt"),
            "pool_mode": "session",
            "server_login_retry": 1,
            "server_connect_timeout": 5,
            "log_stats": 0,
        }
        settings.update({k: v for k, v in ini.items()})
        self.settings = settings
        lines = ["[databases]"]
        lines += [f"{k} = {v}" for k, v in databases.items()]
        if users:
            lines.append("[users]")
            lines += [f"{k} = {v}" for k, v in users.items()]
        lines.append("[pgbouncer]")
        lines += [f"{k} = {v}" for k, v in settings.items() if v is not None]
        self.ini = os.path.join(self.dir, "pgbouncer.ini")
        self.runas.write(self.ini, "\n".join(lines) + "\n")
        self.runas.write(settings["auth_file"],
                         "".join(auth_file_line(u, s) + "\n" for u, s in userlist.items()), 0o600)

    # -- lifecycle -------------------------------------------------------
    def start(self, timeout=20):
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = f"detect_leaks=1:abort_on_error=0:log_path={self.san_prefix}.asan"
        env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={self.san_prefix}.ubsan"
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([self.sess.bin, self.ini], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir, env=env,
                                     **self.runas.popen_kwargs())
        log.close()

        def up():
            if self.proc.poll() is not None:
                self.stopped_by_test = True  # reported here, not again at teardown
                raise RuntimeError(f"pooler exited with {self.proc.returncode} during startup; log:\n"
                                   + self.log_text())
            return port_accepts(self.host, self.port)
        try:
            wait_until(up, timeout, what="pooler to listen")
        except TimeoutError:
            raise RuntimeError("pooler did not start listening; log:\n" + self.log_text())
        return self

    def stop(self):
        """SIGTERM; a second SIGTERM (immediate shutdown) if clients keep it alive; SIGKILL last."""
        self.stopped_by_test = True
        p = self.proc
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        for _ in range(2):
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout=self.STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        self.killed = True
        p.kill()
        return p.wait(timeout=10)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- inspection -------------------------------------------------------
    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def sanitizer_reports(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.startswith("san."):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text = f.read()
                if text.strip():
                    out.append(f"--- {name}\n{text}")
        for line in self.log_text().splitlines():
            if "AddressSanitizer" in line or "runtime error:" in line or "LeakSanitizer" in line:
                out.append(line)
        return out

    def check_health(self):
        """Called at teardown: the pooler must not have died or crashed."""
        problems = []
        was_running = self.alive()
        if self.proc is not None and not was_running and not self.stopped_by_test:
            problems.append(f"pooler exited unexpectedly with {self.proc.returncode}")
        rc = self.stop()
        if self.killed:
            problems.append("pooler did not exit on SIGTERM (twice); killed")
        elif rc is not None and rc < 0:
            problems.append(f"pooler died with signal {-rc}")
        if SANITIZED:
            problems += self.sanitizer_reports()
        return problems

    # -- connecting -------------------------------------------------------
    def dsn(self, user="md5user", db=TESTDB, password=None, **extra):
        if password is None:
            password = PASSWORDS.get(user)
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={db}", f"user={user}",
                 "connect_timeout=10"]
        if password is not None:
            parts.append(f"password={password}")
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def connect(self, user="md5user", db=TESTDB, password=None, autocommit=True, **kw):
        import psycopg
        return psycopg.connect(self.dsn(user, db, password), autocommit=autocommit, **kw)

    def raw(self, timeout=5.0):
        return RawConn(self.host, self.port, timeout)

    def assert_serves(self, user="md5user"):
        """A normal client can log in and run a query."""
        assert self.alive(), "pooler died; log:\n" + self.log_text()
        with self.connect(user) as c:
            assert c.execute("SELECT 41 + 1").fetchone()[0] == 42


# ---------------------------------------------------------------------------
# Minimal raw protocol-3 client for tests that need byte-level control.

PROTO_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def startup_packet(params, proto=PROTO_3):
    body = struct.pack("!I", proto)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(tag, body=b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def parse_error(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def parse_datarow(body):
    """Values of a DataRow body as text (None for NULL)."""
    (n,) = struct.unpack("!H", body[:2])
    pos, row = 2, []
    for _ in range(n):
        (ln,) = struct.unpack("!i", body[pos:pos + 4])
        pos += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(body[pos:pos + ln].decode())
            pos += ln
    return row


REPL_USER, REPL_PW = "repluser", "repl-secret"  # role made by the repl_cluster fixture


class ConnectionClosed(Exception):
    pass


class RawConn:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(f"closed with {len(self.buf)} bytes buffered")
            self.buf += chunk

    def recv_bytes(self, n):
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_msg(self):
        self._fill(5)
        tag = self.buf[:1]
        (ln,) = struct.unpack("!I", self.buf[1:5])
        self._fill(1 + ln)
        body = self.buf[5:1 + ln]
        self.buf = self.buf[1 + ln:]
        return tag, body

    def read_until_closed(self):
        """Read messages until EOF (or reset); returns the list of (tag, body)."""
        msgs = []
        try:
            while True:
                msgs.append(self.recv_msg())
        except (ConnectionClosed, ConnectionResetError):
            return msgs

    def expect_error_and_close(self):
        """Read to EOF; return the fields of the first ErrorResponse (or {} if none)."""
        msgs = self.read_until_closed()
        for tag, body in msgs:
            if tag == b"E":
                return parse_error(body)
        return {}

    def startup(self, params, proto=PROTO_3):
        self.send(startup_packet(params, proto))

    def login(self, user, db=TESTDB, password=None, params=None):
        """Log in (trust, cleartext or md5); returns dict of ParameterStatus values."""
        p = {"user": user, "database": db}
        p.update(params or {})
        self.startup(p)
        status = {}
        while True:
            tag, body = self.recv_msg()
            if tag == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code == 0:
                    continue
                if code == 3:
                    self.send(message(b"p", password.encode() + b"\0"))
                elif code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    self.send(message(b"p", b"md5" + outer.encode() + b"\0"))
                else:
                    raise AssertionError(f"unsupported auth request {code}")
            elif tag == b"S":
                k, v = body.split(b"\0")[:2]
                status[k.decode()] = v.decode()
            elif tag == b"E":
                raise AssertionError(parse_error(body))
            elif tag == b"Z":
                return status

    def query(self, sql):
        """Simple query; returns (rows, error_fields_or_None)."""
        self.send(message(b"Q", sql.encode() + b"\0"))
        rows, err = [], None
        while True:
            tag, body = self.recv_msg()
            if tag == b"D":
                rows.append(parse_datarow(body))
            elif tag == b"E":
                err = parse_error(body)
            elif tag == b"Z":
                return rows, err
