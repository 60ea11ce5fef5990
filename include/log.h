/*
 * log.h - logging in PgBouncer's line format:
 *   "YYYY-MM-DD HH:MM:SS.mmm TZ [pid] LEVEL message"
 * to stderr (unless quiet/daemon), to `logfile`, and to syslog when enabled.
 * Socket-scoped lines ("C-0x...: db/user@addr:port msg") are built by the
 * caller (see pool.h: slog_*) and passed in here as plain text.
 */
#ifndef PV_LOG_H
#define PV_LOG_H

#include <stdbool.h>
#include <stdarg.h>

enum log_level {
	LG_FATAL,
	LG_ERROR,
	LG_WARNING,
	LG_LOG,
	LG_DEBUG, /* verbose >= 1 */
	LG_NOISE, /* verbose >= 2 */
};

/* (Re)configure outputs. logfile may be NULL or "". Reopens the file. */
void log_setup(const char *logfile, int verbose, bool to_stderr, bool use_syslog,
	       const char *syslog_ident, const char *syslog_facility);
void log_close(void);

/* Current verbosity, so callers can skip formatting debug lines. */
extern int log_verbose;

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_fatal(...) log_msg(LG_FATAL, __VA_ARGS__)
#define log_error(...) log_msg(LG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LG_LOG, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_verbose >= 1)                                                              \
			log_msg(LG_DEBUG, __VA_ARGS__);                                            \
	} while (0)
#define log_noise(...)                                                                             \
	do {                                                                                       \
		if (log_verbose >= 2)                                                              \
			log_msg(LG_NOISE, __VA_ARGS__);                                            \
	} while (0)

/* Log at FATAL and exit(1). */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
