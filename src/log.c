/*
 * log.c - PgBouncer-format log lines to stderr, a log file and syslog.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_verbose;

static FILE *log_file;
static bool log_to_stderr = true;
static bool log_syslog;

static const char *const level_names[] = {"FATAL", "ERROR", "WARNING", "LOG", "DEBUG", "NOISE"};
static const int level_prio[] = {LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_DEBUG};

static int facility_code(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} tab[] = {{"auth", LOG_AUTH},	   {"authpriv", LOG_AUTHPRIV}, {"daemon", LOG_DAEMON},
		   {"user", LOG_USER},	   {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
		   {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},     {"local4", LOG_LOCAL4},
		   {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},     {"local7", LOG_LOCAL7}};
	for (size_t i = 0; name && i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcasecmp(tab[i].name, name) == 0)
			return tab[i].code;
	return LOG_DAEMON;
}

void log_setup(const char *logfile, int verbose, bool to_stderr, bool use_syslog,
	       const char *syslog_ident, const char *syslog_facility)
{
	log_verbose = verbose;
	log_to_stderr = to_stderr;
	if (log_file) {
		fclose(log_file);
		log_file = NULL;
	}
	if (logfile && *logfile) {
		log_file = fopen(logfile, "a");
		if (log_file)
			setvbuf(log_file, NULL, _IOLBF, 0);
		else
			fprintf(stderr, "cannot open logfile %s: %s\n", logfile, strerror(errno));
	}
	if (log_syslog)
		closelog();
	log_syslog = use_syslog;
	if (use_syslog) {
		/* openlog keeps the pointer: the ident must outlive this call. */
		static char ident[64];
		snprintf(ident, sizeof(ident), "%s", syslog_ident ? syslog_ident : "pgvigil");
		openlog(ident, LOG_PID, facility_code(syslog_facility));
	}
}

void log_close(void)
{
	if (log_file)
		fclose(log_file);
	log_file = NULL;
	if (log_syslog)
		closelog();
	log_syslog = false;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char msg[4096];
	char stamp[64], tz[16];
	struct timeval tv;
	struct tm tm;
	int saved_errno = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	strftime(tz, sizeof(tz), "%Z", &tm);

	if (log_to_stderr)
		fprintf(stderr, "%s.%03d %s [%d] %s %s\n", stamp, (int)(tv.tv_usec / 1000), tz,
			(int)getpid(), level_names[level], msg);
	if (log_file)
		fprintf(log_file, "%s.%03d %s [%d] %s %s\n", stamp, (int)(tv.tv_usec / 1000), tz,
			(int)getpid(), level_names[level], msg);
	if (log_syslog)
		syslog(level_prio[level], "%s %s", level_names[level], msg);
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LG_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}
