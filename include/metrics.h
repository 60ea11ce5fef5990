/*
 * metrics.h - optional Prometheus endpoint (text format 0.0.4) served by
 * libevent's evhttp on the event loop. Off unless metrics_listen_addr is set.
 *
 * GET /metrics runs every registered producer in order. A producer writes
 * whole metric families: metrics_family() once, then all of that family's
 * samples (the text format requires a family's samples to be contiguous).
 * The built-in producers export the metric names of
 * prometheus-community/pgbouncer_exporter; governance stages can register
 * their own with metrics_register().
 */
#ifndef PV_METRICS_H
#define PV_METRICS_H

#include <stdbool.h>

struct metrics_out;

typedef void (*metrics_producer_fn)(struct metrics_out *out, void *arg);

/* Start the listener if metrics_listen_addr is set. False (logged) on error. */
bool metrics_start(void);
void metrics_stop(void);

/* Add a producer (run after the built-in ones, in registration order). */
bool metrics_register(const char *name, metrics_producer_fn fn, void *arg);

/* "# HELP name help" and "# TYPE name type"; type is "gauge", "counter" or "untyped". */
void metrics_family(struct metrics_out *out, const char *name, const char *type, const char *help);

/*
 * One sample: name{k1="v1",...} value. The variadic part is label name/value
 * string pairs ended by NULL; values are escaped (\\, \", \n).
 */
void metrics_sample(struct metrics_out *out, const char *name, double value, ...)
    __attribute__((sentinel));

/* Render every producer into a malloc'ed NUL-terminated string (tests, debugging). */
char *metrics_render(void);

#endif
