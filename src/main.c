/*
 * main.c - command line, process set-up (user, daemon, pidfile), signals,
 * configuration (re)load and the event loop.
 */
#include "pv_build_config.h"
#include "admin.h"
#include "authfile.h"
#include "dns.h"
#include "governance.h"
#include "hba.h"
#include "janitor.h"
#include "jwks.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "record_events.h"
#include "pool.h"
#include "sbuf.h"
#include "stats.h"
#include "tls.h"
#include "varcache.h"
#include "webhook.h"

#include <ares.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/opensslv.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *pidfile_written;

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"pgvigil is a PostgreSQL connection pooler with governance for AI agents.\n\n"
		"Usage:\n  %s [OPTION]... CONFIG_FILE\n\n"
		"Options:\n"
		"  -d, --daemon         run in background (as a daemon)\n"
		"  -q, --quiet          run quietly\n"
		"  -v, --verbose        increase verbosity\n"
		"  -u, --user=USERNAME  assume identity of USERNAME\n"
		"  -V, --version        show version, then exit\n"
		"  -h, --help           show this help, then exit\n",
		prog);
}

static void print_version(void)
{
	printf("pgvigil %s\n", PACKAGE_VERSION);
	printf("libevent %s\n", event_get_version());
	printf("adns: c-ares %s\n", ares_version(NULL));
	printf("tls: %s\n", OPENSSL_VERSION_TEXT);
}

/* --- configuration ------------------------------------------------------------ */

static void apply_logging(bool quiet, bool daemon, int extra_verbose)
{
	log_setup(G.cf->logfile, G.cf->verbose + extra_verbose, !quiet && !daemon, G.cf->syslog,
		  G.cf->syslog_ident, G.cf->syslog_facility);
}

static bool load_auth_file(char *err, size_t errlen)
{
	struct authfile *af;
	if (!G.cf->auth_file) {
		authfile_free(G.auth);
		G.auth = NULL;
		return true;
	}
	if (G.auth && !authfile_changed(G.auth, G.cf->auth_file))
		return true;
	af = authfile_load(G.cf->auth_file, err, errlen);
	if (!af)
		return false;
	authfile_free(G.auth);
	G.auth = af;
	return true;
}

/* (Re)load governance_file for G.cf; a bad file keeps the running policy. */
static bool load_governance(char *err, size_t errlen)
{
	struct gov_policy *gov;
	if (!gov_prepare(G.cf, &gov, err, errlen))
		return false;
	gov_commit(gov);
	return true;
}

static int cli_verbose;
static bool cli_quiet, cli_daemon;

/* RELOAD/SIGHUP: a bad file keeps the running configuration whole. */
static bool reload_config(void)
{
	char err[512];
	struct pv_config *next = config_load(G.cf->conffile, err, sizeof(err));
	struct pv_config *old;
	struct gov_policy *gov;
	if (!next) {
		log_error("RELOAD failed: %s", err);
		return false;
	}
	config_keep_non_reloadable(next, G.cf);
	/* A bad governance_file fails RELOAD and keeps the running policy (checked first:
	 * hba_reload swaps at once, the policy is only swapped once everything passed). */
	if (!gov_prepare(next, &gov, err, sizeof(err))) {
		log_error("RELOAD failed: %s", err);
		config_free(next);
		return false;
	}
	/* A bad auth_hba_file / auth_ident_file fails RELOAD and keeps the running rules. */
	if (!hba_reload(next, err, sizeof(err))) {
		log_error("RELOAD failed: %s", err);
		gov_free(gov);
		config_free(next);
		return false;
	}
	gov_commit(gov);
	record_reload(); /* a changed recording: section restarts the recorder */
	old = G.cf;
	G.cf = next;
	/* While db->conf still points into the old config: close changed, kill removed. */
	admin_apply_reload();
	databases_sync_with_config();
	if (!load_auth_file(err, sizeof(err)))
		log_error("auth_file reload failed, keeping the old one: %s", err);
	tls_reload(); /* a failing TLS config keeps the running one ("TLS setup failed") */
	dns_set_ttls(G.dns, G.cf->dns_max_ttl, G.cf->dns_nxdomain_ttl);
	dns_set_zone_check_period(G.dns, G.cf->dns_zone_check_period);
	apply_logging(cli_quiet, cli_daemon, cli_verbose);
	config_free(old);
	log_info("configuration reloaded");
	return true;
}

/* Admin SET changed a key in place: re-apply what is applied at load time. */
static void config_changed(void)
{
	char err[512];

	/* SET auth_type = hba: read the rules now; a bad file keeps the running ones. */
	if (!hba_reload(G.cf, err, sizeof(err)))
		log_error("auth_hba_file not reloaded: %s", err);
	/* SET governance_file / auth_type = oidc: the same for the policy. */
	if (!load_governance(err, sizeof(err)))
		log_error("governance_file not reloaded: %s", err);
	tls_reload();
	dns_set_ttls(G.dns, G.cf->dns_max_ttl, G.cf->dns_nxdomain_ttl);
	dns_set_zone_check_period(G.dns, G.cf->dns_zone_check_period);
	apply_logging(cli_quiet, cli_daemon, cli_verbose);
}

static const struct admin_ops main_admin_ops = {
	.reload = reload_config,
	.config_changed = config_changed,
};

/* --- signals ------------------------------------------------------------------- */

/* TERM / INT: graceful shutdown; a second one (or one during SUSPEND) exits at once. */
static void on_stop_signal(const char *name, enum shutdown_mode mode)
{
	if (G.shutdown_mode != SHUTDOWN_NONE || G.pause_mode == PAUSE_SUSPEND) {
		log_info("got %s while shutting down, fast exit", name);
		admin_start_shutdown(SHUTDOWN_IMMEDIATE);
		return;
	}
	if (mode == SHUTDOWN_WAIT_FOR_CLIENTS)
		log_info("got %s, shutting down, waiting for all clients to disconnect", name);
	else
		log_info("got %s, shutting down, waiting for all servers connections to be released",
			 name);
	admin_start_shutdown(mode);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGHUP:
		log_info("got SIGHUP, re-reading config");
		reload_config();
		break;
	case SIGTERM:
		on_stop_signal("SIGTERM", SHUTDOWN_WAIT_FOR_CLIENTS);
		break;
	case SIGINT:
		on_stop_signal("SIGINT", SHUTDOWN_WAIT_FOR_SERVERS);
		break;
	case SIGQUIT:
		log_info("got SIGQUIT, fast exit");
		admin_start_shutdown(SHUTDOWN_IMMEDIATE);
		break;
	case SIGUSR1:
		log_info("got SIGUSR1, pausing all activity");
		admin_pause_all();
		break;
	case SIGUSR2:
		if (G.shutdown_mode != SHUTDOWN_NONE) {
			log_info("got SIGUSR2 while shutting down, ignoring");
			break;
		}
		log_info("got SIGUSR2, continuing from pause");
		admin_resume_all();
		break;
	default:
		break;
	}
}

static bool setup_signals(void)
{
	static const int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2};
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct event *ev = evsignal_new(G.base, sigs[i], on_signal, NULL);
		if (!ev || event_add(ev, NULL) != 0)
			return false;
	}
	return true;
}

/* --- process ------------------------------------------------------------------- */

static void remove_pidfile(void)
{
	if (pidfile_written)
		unlink(pidfile_written);
}

/* A pidfile naming a live process means another pooler runs; a stale one is removed. */
static void check_pidfile(const char *path)
{
	FILE *f = fopen(path, "r");
	long pid = 0;
	if (!f)
		return;
	if (fscanf(f, "%ld", &pid) == 1 && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
		die("pidfile %s exists and process %ld is running", path, pid);
	fclose(f);
	log_info("removing stale pidfile %s", path);
	unlink(path);
}

static void write_pidfile(const char *path)
{
	char buf[32];
	int fd;

	check_pidfile(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		die("cannot write pidfile %s: %s", path, strerror(errno));
	snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, strlen(buf)) < 0)
		die("cannot write pidfile %s: %s", path, strerror(errno));
	close(fd);
	pidfile_written = path;
	atexit(remove_pidfile);
}

static void change_user(const char *name)
{
	struct passwd *pw = getpwnam(name);
	if (!pw)
		die("could not find user '%s' to switch to", name);
	if (setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		die("could not switch to user '%s': %s", name, strerror(errno));
}

static void daemonize(void)
{
	pid_t pid = fork();
	int fd;
	if (pid < 0)
		die("fork failed: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		die("fork failed: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

static bool any_client_left(void)
{
	struct list_head *it;
	if (!list_empty(&G.login_clients))
		return true;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (!list_empty(&p->active_clients) || !list_empty(&p->waiting_clients))
			return true;
	}
	return false;
}

static bool any_server_left(void)
{
	struct list_head *it;
	list_for_each(it, &G.pools)
	{
		struct pv_pool *p = container_of(it, struct pv_pool, node);
		if (pool_server_count(p) > 0)
			return true;
	}
	return false;
}

/*
 * WAIT_FOR_CLIENTS ends when no client (admin ones included, as in PgBouncer)
 * is connected; WAIT_FOR_SERVERS when the pause closed every server.
 */
static bool shutdown_complete(void)
{
	switch (G.shutdown_mode) {
	case SHUTDOWN_NONE:
		return false;
	case SHUTDOWN_IMMEDIATE:
		return true;
	case SHUTDOWN_WAIT_FOR_CLIENTS:
		if (any_client_left())
			return false;
		log_info("client connections dropped, exiting");
		return true;
	case SHUTDOWN_WAIT_FOR_SERVERS:
	default:
		if (any_server_left())
			return false;
		log_info("server connections dropped, exiting");
		return true;
	}
}

static void run_loop(void)
{
	bool more = false;
	while (!shutdown_complete()) {
		event_base_loop(G.base, more ? EVLOOP_NONBLOCK : EVLOOP_ONCE);
		/* Before the deferred run: completing a PAUSE/SUSPEND wakes the admin client. */
		admin_per_loop();
		more = sbuf_run_deferred();
		socket_free_justfree();
	}
}

static void init_globals(void)
{
	list_init(&G.databases);
	list_init(&G.users);
	list_init(&G.pools);
	list_init(&G.login_clients);
	list_init(&G.justfree);
	if (!random_bytes(G.mock_nonce, sizeof(G.mock_nonce)))
		die("cannot get random bytes");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"daemon", no_argument, NULL, 'd'},  {"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'}, {"user", required_argument, NULL, 'u'},
		{"version", no_argument, NULL, 'V'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *run_as = NULL;
	char err[512];
	int c;

	while ((c = getopt_long(argc, argv, "dqvu:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'V':
			print_version();
			return 0;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		case 'd':
			cli_daemon = true;
			break;
		case 'q':
			cli_quiet = true;
			break;
		case 'v':
			cli_verbose++;
			break;
		case 'u':
			run_as = optarg;
			break;
		default:
			usage(stderr, argv[0]);
			return 1;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr, argv[0]);
		return 1;
	}
	if (run_as && getuid() == 0)
		change_user(run_as);
	if (getuid() == 0 || geteuid() == 0)
		die("pgvigil should not run as root");

	init_globals();
	G.cf = config_load(argv[optind], err, sizeof(err));
	if (!G.cf)
		die("cannot load config file: %s", err);
	if (run_as == NULL && G.cf->user && getuid() == 0)
		change_user(G.cf->user);
	if (cli_daemon && !G.cf->pidfile[0])
		die("per-process pidfile is required to run as daemon");
	apply_logging(cli_quiet, cli_daemon, cli_verbose);
	varcache_setup(G.cf->track_extra_parameters);
	if (!load_auth_file(err, sizeof(err)))
		die("cannot load auth_file: %s", err);
	if (!hba_reload(G.cf, err, sizeof(err)))
		die("cannot load auth_hba_file: %s", err);
	if (!load_governance(err, sizeof(err)))
		die("cannot load governance_file: %s", err);
	if (!tls_setup(err, sizeof(err)))
		die("TLS setup failed: %s", err);

	/* Before forking, so that "already running" reaches the terminal and the exit code. */
	if (G.cf->pidfile[0])
		check_pidfile(G.cf->pidfile);
	if (cli_daemon)
		daemonize();
	G.base = event_base_new();
	if (!G.base)
		die("event_base_new failed");
	G.dns = dns_create(G.base, G.cf->resolv_conf, err, sizeof(err));
	if (!G.dns)
		die("dns setup failed: %s", err);
	dns_set_ttls(G.dns, G.cf->dns_max_ttl, G.cf->dns_nxdomain_ttl);
	dns_set_zone_check_period(G.dns, G.cf->dns_zone_check_period);
	admin_set_ops(&main_admin_ops);
	if (!setup_signals() || !janitor_start())
		die("event setup failed");
	/* After daemonize (threads do not survive fork); waits for the first JWKS fetches. */
	if (!jwks_start(G.base))
		die("cannot start the JWKS fetcher");
	if (!stats_start())
		die("stats timer setup failed");
	/* After daemonize (a thread); before listening, so no session goes unrecorded. */
	if (!record_start(err, sizeof(err)))
		die("cannot start the recorder: %s", err);
	if (!listeners_open(err, sizeof(err)))
		die("%s", err);
	if (!metrics_start())
		die("cannot start the metrics listener");
	if (G.cf->pidfile[0])
		write_pidfile(G.cf->pidfile);
	log_info("process up: pgvigil %s, libevent %s (%s), adns: c-ares %s, tls: %s",
		 PACKAGE_VERSION, event_get_version(), event_base_get_method(G.base),
		 ares_version(NULL), OPENSSL_VERSION_TEXT);
	run_loop();
	listeners_close_all();
	tls_cleanup();
	metrics_stop();
	stats_stop();
	janitor_stop();
	record_stop(); /* writes everything queued */
	webhook_stop(); /* before jwks_stop(): both hold libcurl */
	jwks_stop();
	log_info("shutting down");
	return 0;
}
