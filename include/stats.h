/*
 * stats.h - pool statistics: running totals and the per-stats_period averages
 * that SHOW STATS / SHOW STATS_AVERAGES / SHOW TOTALS, the "stats:" log line
 * and the Prometheus endpoint report.
 *
 * Counting (where it happens):
 *   query_count, xact_count   client.c, when a client message starts a request
 *                             (query_start == 0) / a transaction (xact_start == 0)
 *   query_time, xact_time     server.c, at each ReadyForQuery / at ReadyForQuery 'I'
 *   server_assignment_count,  pool.c, each time a client is linked to a server
 *   wait_time
 *   bytes_received/sent       sbuf.c, bytes read from clients / from servers
 *   client_login_count        client.c, each completed client login
 *   *_parse_count, bind_count stay 0 until prepared statement support lands
 *
 * Averages: every stats_period seconds each pool's totals are snapshotted; the
 * averages are computed from the last two snapshots. Counts and bytes are
 * per-second rates, xact_time and query_time are microseconds per transaction
 * / per query, wait_time is microseconds of waiting per second. All fields of
 * an averages struct are in those units.
 */
#ifndef PV_STATS_H
#define PV_STATS_H

#include <stdbool.h>

#include "pool.h"

/* Arm the stats_period timer on G.base (re-reads stats_period on every tick). */
bool stats_start(void);
void stats_stop(void);

/*
 * One pool: totals = counters since the pool was created, avgs = averages over
 * the last complete stats_period (all zero until one has passed). Either
 * output pointer may be NULL.
 */
void stats_snapshot(const struct pv_pool *pool, struct pv_stats *totals, struct pv_stats *avgs);

/*
 * Per database (SHOW STATS rows): sums every pool of db, then computes the
 * averages from the summed snapshots - averaging per-pool averages would weigh
 * the per-query times wrongly. Either output pointer may be NULL.
 */
void stats_snapshot_db(const struct pv_database *db, struct pv_stats *totals,
                       struct pv_stats *avgs);

/* Every pool, admin included (SHOW TOTALS, the log line). */
void stats_snapshot_all(struct pv_stats *totals, struct pv_stats *avgs);

/* acc += add, field by field. */
void stats_add(struct pv_stats *acc, const struct pv_stats *add);

#endif
