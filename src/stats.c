/*
 * stats.c - stats_period snapshots, averages and the "stats:" log line.
 *
 * The counters themselves are bumped where things happen (see stats.h); this
 * file only turns them into the per-period figures SHOW STATS reports.
 */
#include "stats.h"
#include "log.h"

#include <inttypes.h>

#include <event2/event.h>

static struct event *stats_ev;
/* When the two snapshots in every pool (stats_older, stats_newer) were taken. */
static usec_t older_stamp, newer_stamp;

void stats_add(struct pv_stats *acc, const struct pv_stats *add)
{
	acc->xact_count += add->xact_count;
	acc->query_count += add->query_count;
	acc->server_assignment_count += add->server_assignment_count;
	acc->bytes_received += add->bytes_received;
	acc->bytes_sent += add->bytes_sent;
	acc->xact_time += add->xact_time;
	acc->query_time += add->query_time;
	acc->wait_time += add->wait_time;
	acc->client_parse_count += add->client_parse_count;
	acc->server_parse_count += add->server_parse_count;
	acc->bind_count += add->bind_count;
	acc->client_login_count += add->client_login_count;
}

/* Counter increase per second over dur microseconds. */
static uint64_t per_sec(uint64_t newer, uint64_t older, usec_t dur)
{
	if (newer <= older)
		return 0;
	/* long double: delta * 1e6 would overflow uint64 for byte counters of a long period. */
	return (uint64_t)((long double)(newer - older) * USEC_PER_SEC / (long double)dur);
}

static uint64_t per_item(uint64_t time_newer, uint64_t time_older, uint64_t items)
{
	if (items == 0 || time_newer <= time_older)
		return 0;
	return (time_newer - time_older) / items;
}

/*
 * Averages from two snapshots: rates for counts, bytes and wait time, and
 * microseconds per transaction / query for xact_time and query_time.
 */
static void calc_avgs(struct pv_stats *avg, const struct pv_stats *n, const struct pv_stats *o)
{
	usec_t dur = newer_stamp - older_stamp;

	*avg = (struct pv_stats){0};
	if (older_stamp == 0 || dur <= 0)
		return;
	avg->xact_count = per_sec(n->xact_count, o->xact_count, dur);
	avg->query_count = per_sec(n->query_count, o->query_count, dur);
	avg->server_assignment_count =
	    per_sec(n->server_assignment_count, o->server_assignment_count, dur);
	avg->bytes_received = per_sec(n->bytes_received, o->bytes_received, dur);
	avg->bytes_sent = per_sec(n->bytes_sent, o->bytes_sent, dur);
	avg->wait_time = per_sec(n->wait_time, o->wait_time, dur);
	avg->client_parse_count = per_sec(n->client_parse_count, o->client_parse_count, dur);
	avg->server_parse_count = per_sec(n->server_parse_count, o->server_parse_count, dur);
	avg->bind_count = per_sec(n->bind_count, o->bind_count, dur);
	avg->client_login_count = per_sec(n->client_login_count, o->client_login_count, dur);
	avg->xact_time = per_item(n->xact_time, o->xact_time, n->xact_count - o->xact_count);
	avg->query_time = per_item(n->query_time, o->query_time, n->query_count - o->query_count);
}

void stats_snapshot(const struct pv_pool *pool, struct pv_stats *totals, struct pv_stats *avgs)
{
	if (totals)
		*totals = pool->stats;
	if (avgs)
		calc_avgs(avgs, &pool->stats_newer, &pool->stats_older);
}

/* Sum totals and both snapshots over the pools of db (NULL = every pool). */
static void snapshot_many(const struct pv_database *db, struct pv_stats *totals,
                          struct pv_stats *avgs)
{
	struct pv_stats sum = {0}, newer = {0}, older = {0};
	struct list_head *it;

	list_for_each(it, &G.pools)
	{
		const struct pv_pool *pool = container_of(it, struct pv_pool, node);
		if (db && pool->db != db)
			continue;
		stats_add(&sum, &pool->stats);
		stats_add(&newer, &pool->stats_newer);
		stats_add(&older, &pool->stats_older);
	}
	if (totals)
		*totals = sum;
	if (avgs)
		calc_avgs(avgs, &newer, &older);
}

void stats_snapshot_db(const struct pv_database *db, struct pv_stats *totals, struct pv_stats *avgs)
{
	snapshot_many(db, totals, avgs);
}

void stats_snapshot_all(struct pv_stats *totals, struct pv_stats *avgs)
{
	snapshot_many(NULL, totals, avgs);
}

static void log_stats_line(void)
{
	struct pv_stats a;

	stats_snapshot_all(NULL, &a);
	log_info("stats: %" PRIu64 " xacts/s, %" PRIu64 " queries/s, %" PRIu64
	         " client parses/s, %" PRIu64 " server parses/s, %" PRIu64 " binds/s, %" PRIu64
	         " client logins/s, in %" PRIu64 " B/s, out %" PRIu64 " B/s, xact %" PRIu64
	         " us, query %" PRIu64 " us, wait %" PRIu64 " us",
	         a.xact_count, a.query_count, a.client_parse_count, a.server_parse_count,
	         a.bind_count, a.client_login_count, a.bytes_received, a.bytes_sent, a.xact_time,
	         a.query_time, a.wait_time);
}

static void take_snapshots(usec_t now)
{
	struct list_head *it;

	list_for_each(it, &G.pools)
	{
		struct pv_pool *pool = container_of(it, struct pv_pool, node);
		pool->stats_older = pool->stats_newer;
		pool->stats_newer = pool->stats;
	}
	older_stamp = newer_stamp;
	newer_stamp = now;
}

/*
 * A one-shot timer re-armed on every tick, so a stats_period changed by
 * RELOAD takes effect from the next period without any reload hook.
 */
static bool arm_timer(void)
{
	struct timeval tv = {G.cf->stats_period > 0 ? G.cf->stats_period : 1, 0};
	return event_add(stats_ev, &tv) == 0;
}

static void stats_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	take_snapshots(now_usec());
	if (G.cf->log_stats)
		log_stats_line();
	if (!arm_timer())
		log_error("stats: could not re-arm the stats_period timer");
}

bool stats_start(void)
{
	stats_ev = evtimer_new(G.base, stats_tick, NULL);
	if (!stats_ev) {
		log_error("stats: out of memory");
		return false;
	}
	/* Pools that exist now start from their current totals. */
	take_snapshots(now_usec());
	older_stamp = 0;
	return arm_timer();
}

void stats_stop(void)
{
	if (stats_ev) {
		event_free(stats_ev);
		stats_ev = NULL;
	}
}
