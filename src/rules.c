/*
 * rules.c - governance rules: matching a classified statement against the
 * ordered rules, remembering SQL PREPAREs per client, and enforcing a deny
 * on the packet path (the client_msg hook). See doc/governance.md and
 * doc/inspection.md.
 *
 * Deny never answers the client itself: it rewrites the denied Query or Parse
 * into a DO block that raises 42501 and sends that to the server, so
 * PostgreSQL fails the statement, the transaction and the rest of an
 * extended-protocol batch exactly as for any other error. pgvigil's view of
 * the server's transaction state therefore never differs from the server's.
 */
#include "rules.h"
#include "approval.h"
#include "client.h"
#include "hooks.h"
#include "inspect.h"
#include "log.h"
#include "mask.h"
#include "oidc.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "record_events.h"
#include "sbuf.h"
#include "server.h"
#include "varcache.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SQL PREPARE names remembered per client; the oldest goes first (see remember). */
#define RULES_MAX_PREPARED 1024
#define RULES_LOG_STMT	   200
#define DENY_TAG	   "$pgvigil$"
/* NOTICE of a held statement: like PostgreSQL's RAISE NOTICE (doc/inspection.md) */
#define APPROVAL_NOTICE_SQLSTATE "00000"

/* --- matching ------------------------------------------------------------------------ */

/* Copy the component of s ending at end (exclusive), after the previous '.', into buf. */
static bool component_before(const char *s, const char *end, char *buf, size_t len)
{
	const char *start = end;
	while (start > s && start[-1] != '.')
		start--;
	if ((size_t)(end - start) >= len)
		return false;
	memcpy(buf, start, (size_t)(end - start));
	buf[end - start] = '\0';
	return true;
}

/*
 * Patterns: "schema.table" or bare "table", '*' (fnmatch) in either part.
 * A bare pattern matches the table in any schema. An unqualified name in a
 * statement matches a qualified pattern naming one table ("public.t" covers
 * "t"): the search_path can point anywhere, so for a deny the conservative
 * reading wins. It does not match a schema-wide pattern ("audit.*"): that
 * would cover every unqualified table; deny SET search_path
 * (set_sensitive) to close that disguise.
 */
bool rules_name_matches(const char *pattern, const char *name)
{
	const char *pdot = strrchr(pattern, '.'), *ndot = strrchr(name, '.');
	const char *prel = pdot ? pdot + 1 : pattern, *nrel = ndot ? ndot + 1 : name;
	char ps[256], ns[256];

	if (fnmatch(prel, nrel, 0) != 0)
		return false;
	if (!pdot)
		return true;
	if (!ndot)
		return strpbrk(prel, "*?[") == NULL;
	if (!component_before(pattern, pdot, ps, sizeof(ps)) ||
	    !component_before(name, ndot, ns, sizeof(ns)))
		return false;
	return fnmatch(ps, ns, 0) == 0;
}

static bool any_name_matches(const struct gov_strlist *pats, char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		for (size_t j = 0; j < pats->n; j++)
			if (names[i] && rules_name_matches(pats->v[j], names[i]))
				return true;
	return false;
}

static bool exact_in(const struct gov_strlist *l, const char *s)
{
	for (size_t i = 0; s && i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

static bool glob_in(const struct gov_strlist *l, const char *s)
{
	for (size_t i = 0; s && i < l->n; i++)
		if (fnmatch(l->v[i], s, 0) == 0)
			return true;
	return false;
}

/* Who: conditions on the session; a missing value (no identity...) never matches. */
static bool ctx_matches(const struct gov_rule *r, const struct rule_ctx *ctx)
{
	const struct pv_identity *id = ctx->identity;
	bool group_ok = r->groups.n == 0;

	if (r->databases.n && !exact_in(&r->databases, ctx->database))
		return false;
	if (r->db_users.n && !exact_in(&r->db_users, ctx->db_user))
		return false;
	if (r->app_names.n && !glob_in(&r->app_names, ctx->application_name))
		return false;
	if (r->subjects.n && !(id && glob_in(&r->subjects, id->subject)))
		return false;
	for (size_t i = 0; !group_ok && id && i < id->n_groups; i++)
		group_ok = exact_in(&r->groups, id->groups[i]);
	return group_ok;
}

/* What: conditions on the statement; each list is "any of". */
static bool stmt_matches(const struct gov_rule *r, const struct inspect_result *res)
{
	if (r->classes && !(r->classes & res->classes))
		return false;
	if (r->without_where && !res->without_where)
		return false;
	if (r->tables.n && !any_name_matches(&r->tables, res->tables, res->n_tables))
		return false;
	if (r->functions.n && !any_name_matches(&r->functions, res->functions, res->n_functions))
		return false;
	return true;
}

static struct rule_decision fixed(const struct gov_policy *pol, int which, bool count)
{
	bool unp = which == RULE_UNPARSABLE;
	if (count)
		pol->hits[pol->n_rules + (unp ? 1 : 0)]++;
	return (struct rule_decision){
	    .action = unp ? pol->unparsable : pol->default_action,
	    .rule = which,
	    .name = unp ? "unparsable" : "default",
	    .message = unp ? "the statement could not be parsed" : NULL,
	};
}

/* count false: a look ahead (the hold gate) that the real judgement will count. */
static struct rule_decision decide(const struct gov_policy *pol, const struct inspect_result *res,
                                   const struct rule_ctx *ctx, bool count)
{
	/* Text the parser rejects cannot be judged by its content: no rule applies. */
	if (!res || res->parse_error)
		return fixed(pol, RULE_UNPARSABLE, count);
	for (size_t i = 0; i < pol->n_rules; i++) {
		const struct gov_rule *r = &pol->rules[i];
		if (!stmt_matches(r, res) || !ctx_matches(r, ctx))
			continue;
		if (count)
			pol->hits[i]++;
		return (struct rule_decision){
		    .action = r->action, .rule = (int)i, .name = r->name, .message = r->message};
	}
	return fixed(pol, RULE_DEFAULT, count);
}

struct rule_decision rules_decide(const struct gov_policy *pol, const struct inspect_result *res,
                                  const struct rule_ctx *ctx)
{
	return decide(pol, res, ctx, true);
}

const char *rules_action_name(enum gov_action a)
{
	switch (a) {
	case GOV_ALLOW:
		return "allow";
	case GOV_DENY:
		return "deny";
	case GOV_APPROVE:
		return "approve";
	}
	return "?";
}

void rules_show(const struct gov_policy *pol,
                void (*row)(void *arg, const char *rule, const char *action, uint64_t hits,
                            const char *message),
                void *arg)
{
	if (!pol || !pol->rules_enabled)
		return;
	for (size_t i = 0; i < pol->n_rules; i++)
		row(arg, pol->rules[i].name, rules_action_name(pol->rules[i].action), pol->hits[i],
		    pol->rules[i].message);
	row(arg, "default", rules_action_name(pol->default_action), pol->hits[pol->n_rules], NULL);
	row(arg, "unparsable", rules_action_name(pol->unparsable), pol->hits[pol->n_rules + 1],
	    NULL);
}

/* --- per-client PREPARE memory --------------------------------------------------------- */

struct rules_prepared {
	char *name;
	struct inspect_result *res;
};

struct rules_client {
	struct rules_prepared *v;
	size_t n, cap;
};

/*
 * inspect.h has no retain call: the results are only touched on the event
 * loop thread, so taking a reference is the increment inspect_release undoes.
 */
static struct inspect_result *retain(struct inspect_result *r)
{
	r->refs++;
	return r;
}

static void entry_drop(struct rules_prepared *e)
{
	free(e->name);
	inspect_release(e->res);
}

static struct rules_prepared *find_entry(const struct rules_client *rc, const char *name)
{
	for (size_t i = 0; rc && i < rc->n; i++)
		if (strcmp(rc->v[i].name, name) == 0)
			return &rc->v[i];
	return NULL;
}

struct inspect_result *rules_client_lookup(const struct pv_socket *c, const char *name)
{
	struct rules_prepared *e = find_entry(c->rules_client, name);
	return e ? e->res : NULL;
}

static void remove_at(struct rules_client *rc, size_t i)
{
	entry_drop(&rc->v[i]);
	memmove(&rc->v[i], &rc->v[i + 1], (rc->n - i - 1) * sizeof(rc->v[0]));
	rc->n--;
}

void rules_client_forget(struct pv_socket *c, const char *name)
{
	struct rules_client *rc = c->rules_client;
	while (rc && rc->n) {
		struct rules_prepared *e = name ? find_entry(rc, name) : &rc->v[0];
		if (!e)
			return;
		remove_at(rc, (size_t)(e - rc->v));
	}
}

static bool grow(struct rules_client *rc)
{
	size_t cap = rc->cap ? rc->cap * 2 : 8;
	struct rules_prepared *v;
	if (rc->n < rc->cap)
		return true;
	v = realloc(rc->v, cap * sizeof(*v));
	if (!v)
		return false;
	rc->v = v;
	rc->cap = cap;
	return true;
}

/*
 * Bounded: past RULES_MAX_PREPARED the oldest entry is forgotten. That is
 * safe: an EXECUTE of a name pgvigil does not know is judged as unparsable.
 */
bool rules_client_remember(struct pv_socket *c, const char *name, struct inspect_result *res)
{
	struct rules_client *rc = c->rules_client;
	char *copy;

	if (!rc && !(rc = c->rules_client = calloc(1, sizeof(*rc))))
		return false;
	rules_client_forget(c, name);
	if (rc->n >= RULES_MAX_PREPARED)
		remove_at(rc, 0);
	if (!grow(rc) || !(copy = strdup(name)))
		return false;
	rc->v[rc->n++] = (struct rules_prepared){copy, retain(res)};
	return true;
}

void rules_client_free(struct pv_socket *c)
{
	struct rules_client *rc = c->rules_client;
	if (!rc)
		return;
	for (size_t i = 0; i < rc->n; i++)
		entry_drop(&rc->v[i]);
	free(rc->v);
	free(rc);
	c->rules_client = NULL;
}

/* --- the hook: judge Query and Parse, rewrite denials ------------------------------------ */

static void build_ctx(const struct pv_socket *c, struct rule_ctx *ctx)
{
	int app = varcache_index("application_name");
	const char *cur = app >= 0 ? varcache_get(&c->vars, app) : NULL;
	ctx->database = c->pool->db->name;
	ctx->db_user = c->pool->user->name;
	/* a SET application_name since login wins over the startup value */
	ctx->application_name = cur ? cur : c->app_name;
	ctx->identity = c->identity;
}

/*
 * EXECUTE runs what its PREPARE (or named Parse) defined on this client: judge
 * that too. A name pgvigil never saw defined is judged as unparsable text.
 */
static struct rule_decision judge(const struct gov_policy *pol, struct pv_socket *c,
                                  const struct inspect_result *res, const struct rule_ctx *ctx,
                                  bool count)
{
	struct rule_decision d = decide(pol, res, ctx, count);

	for (int i = 0; res && d.action == GOV_ALLOW && i < res->n_executed_names; i++) {
		const struct inspect_result *p = rules_client_lookup(c, res->executed_names[i]);
		d = decide(pol, p, ctx, count);
	}
	return d;
}

static void deny_text(const struct rule_decision *d, char *buf, size_t len)
{
	snprintf(buf, len, "denied by pgvigil rule \"%s\"%s%s", d->name, d->message ? ": " : "",
	         d->message ? d->message : "");
}

/*
 * text as an E'' literal: quote and backslash escaped, '$' as \x24 so the
 * DO body's dollar quote cannot end early, control and non-ASCII bytes as '?'
 * (the client_encoding is unknown here; a bad byte would change the error).
 */
static bool append_literal(struct pv_buf *out, const char *text)
{
	bool ok = buf_append(out, "E'", 2);
	for (const unsigned char *p = (const unsigned char *)text; ok && *p; p++) {
		if (*p == '\'' || *p == '\\')
			ok = buf_append(out, "\\", 1) && buf_append(out, p, 1);
		else if (*p == '$')
			ok = buf_append(out, "\\x24", 4);
		else if (*p < 0x20 || *p >= 0x7f)
			ok = buf_append(out, "?", 1);
		else
			ok = buf_append(out, p, 1);
	}
	return ok && buf_append(out, "'", 1);
}

/* sqlstate: five characters from this file, never client text. */
static bool append_do(struct pv_buf *out, const char *sqlstate, const char *text)
{
	static const char head[] = "DO " DENY_TAG " BEGIN RAISE EXCEPTION USING ERRCODE = '";
	static const char mid[] = "', MESSAGE = ";
	static const char tail[] = "; END " DENY_TAG;
	return buf_append(out, head, sizeof(head) - 1) && buf_append(out, sqlstate, 5) &&
	       buf_append(out, mid, sizeof(mid) - 1) && append_literal(out, text) &&
	       buf_append(out, tail, sizeof(tail) + 0); /* with the NUL: a protocol string */
}

static bool append_u16(struct pv_buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	return buf_append(b, x, 2);
}

static bool append_u32(struct pv_buf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	return buf_append(b, x, 4);
}

/* Start a message: type and a length placeholder, patched by finish_msg. */
static bool start_msg(struct pv_buf *b, char type)
{
	return buf_append(b, &type, 1) && append_u32(b, 0);
}

static void finish_msg(struct pv_buf *b)
{
	uint32_t n = (uint32_t)(b->len - 1);
	b->data[1] = (uint8_t)(n >> 24);
	b->data[2] = (uint8_t)(n >> 16);
	b->data[3] = (uint8_t)(n >> 8);
	b->data[4] = (uint8_t)n;
}

/*
 * Highest $n the text refers to. The DO that replaces a denied Parse must
 * take as many parameters as the original, or the client's Bind would fail
 * with a protocol error instead of reaching the 42501. A $n inside a string
 * literal can only make the count too high (then Bind reports a count error).
 */
static uint32_t max_param_ref(const char *sql, size_t len)
{
	uint32_t max = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		uint32_t v = 0;
		size_t j = i + 1;
		if (sql[i] != '$' || (i > 0 && (isalnum((unsigned char)sql[i - 1]) ||
		                                sql[i - 1] == '_' || sql[i - 1] == '$')))
			continue;
		while (j < len && isdigit((unsigned char)sql[j]) && v <= 65535)
			v = v * 10 + (uint32_t)(sql[j++] - '0');
		if (v > max && v <= 65535)
			max = v;
	}
	return max;
}

#define TEXTOID 25

/*
 * Parse name, DO, and the parameter types: the client's, with unspecified
 * ones (0) as text, since PostgreSQL refuses a parameter whose type it
 * cannot infer and the DO infers none.
 */
static bool build_parse(struct pv_buf *b, const char *name, const char *sql, size_t sqllen,
                        struct pkt_reader *types, const char *sqlstate, const char *text)
{
	uint16_t declared = read_u16(types);
	uint32_t n = max_param_ref(sql, sqllen);
	bool ok;

	if (declared > n)
		n = declared;
	ok = start_msg(b, 'P') && buf_append(b, name, strlen(name) + 1) &&
	     append_do(b, sqlstate, text) &&
	     append_u16(b, (uint16_t)n);
	for (uint32_t i = 0; ok && i < n; i++) {
		uint32_t oid = i < declared ? read_u32(types) : 0;
		ok = !types->bad && append_u32(b, oid ? oid : TEXTOID);
	}
	if (ok)
		finish_msg(b);
	return ok;
}

/*
 * Send the rewritten message through the same bookkeeping as a forwarded one
 * (ReadyForQuery accounting, prepared-statement tracking), then to the server.
 * With prepared-statement tracking a denied named Parse is registered with
 * the DO text, never with the original.
 */
static enum pkt_action send_rewritten(struct pv_socket *c, struct pv_buf *b)
{
	struct pv_socket *s = c->link;
	struct pkt np = {.type = b->data[0], .len = (uint32_t)b->len, .hdr = b->data,
	                 .avail = b->len};
	enum pkt_action a = PKT_FORWARD;

	server_note_client_msg(s, (char)np.type);
	if (s->ps_track)
		a = ps_client_msg(c, s, &np);
	if (a != PKT_FORWARD)
		return a;
	if (!sbuf_queue(s, b->data, b->len)) {
		client_fatal(c, "53200", "out of memory");
		return PKT_STOP;
	}
	return PKT_CONSUMED;
}

static void log_decision(struct pv_socket *c, const char *verb, const struct rule_decision *d,
                         const char *sql, size_t len)
{
	char stmt[RULES_LOG_STMT * 4 + 1], raw[RULES_LOG_STMT + 1];
	size_t n = len < RULES_LOG_STMT ? len : RULES_LOG_STMT;

	memcpy(raw, sql, n);
	raw[n] = '\0';
	oidc_log_escape(raw, stmt, sizeof(stmt));
	slog_info(c, "%s: rule=%s subject=%s statement=%s", verb, d->name,
	          c->identity ? c->identity->subject : "-", stmt);
}

struct stmt_msg {
	const char *name; /* Parse: statement name; Query: NULL */
	const char *sql;
	size_t len;
	struct pkt_reader rest; /* Parse: the parameter types */
};

/* The SQL text of a complete Query or Parse; false if malformed (the server judges that). */
static bool read_stmt(const struct pkt *p, struct stmt_msg *m)
{
	struct pkt_reader *r = &m->rest;
	reader_init_pkt(r, p);
	m->name = p->type == 'P' ? read_string(r) : NULL;
	m->sql = read_string(r);
	if (!m->sql || r->bad)
		return false;
	m->len = strlen(m->sql);
	return true;
}

/*
 * Answer the message with an ERROR raised by the server (see append_do), so
 * the server's transaction and extended-protocol state follow exactly what
 * the client is told.
 */
static enum pkt_action refuse(struct pv_socket *c, const struct pkt *p, struct stmt_msg *m,
                              const char *sqlstate, const char *text)
{
	struct pv_buf b = {0};
	bool ok;
	enum pkt_action a;

	if (p->type == 'Q')
		ok = start_msg(&b, 'Q') && append_do(&b, sqlstate, text) && (finish_msg(&b), true);
	else
		ok = build_parse(&b, m->name, m->sql, m->len, &m->rest, sqlstate, text);
	if (!ok) {
		buf_free(&b);
		client_fatal(c, "53200", "out of memory");
		return PKT_STOP;
	}
	/* the name now holds the DO: a stale entry must not speak for it */
	if (m->name && m->name[0])
		rules_client_forget(c, m->name);
	a = send_rewritten(c, &b);
	buf_free(&b);
	return a;
}

static enum pkt_action deny(struct pv_socket *c, const struct pkt *p, struct stmt_msg *m,
                            const struct rule_decision *d)
{
	char text[512];

	deny_text(d, text, sizeof(text));
	c->denials++;
	record_refused(c, p, d->name, d->message);
	return refuse(c, p, m, "42501", text);
}

/* PREPAREs (and named Parses) of an allowed text: EXECUTE of them is judged as this. */
static bool remember_all(struct pv_socket *c, const struct stmt_msg *m, struct inspect_result *res)
{
	if (m->name && m->name[0] && !rules_client_remember(c, m->name, res))
		return false;
	for (int i = 0; i < res->n_prepared_names; i++)
		if (!rules_client_remember(c, res->prepared_names[i], res))
			return false;
	return true;
}

static enum pkt_action allow(struct pv_socket *c, const struct stmt_msg *m,
                             struct inspect_result *res)
{
	if (res && !remember_all(c, m, res)) {
		client_fatal(c, "53200", "out of memory");
		return PKT_STOP;
	}
	return PKT_FORWARD;
}

/*
 * An allowed statement still must not leak masked values where the result
 * rewriter cannot see them (mask.h): such a statement is refused like a rule
 * denial.
 */
static enum pkt_action masked_or_allow(struct pv_socket *c, const struct pkt *p,
                                       struct stmt_msg *m, struct inspect_result *res)
{
	char text[256];
	struct pv_buf rewrite = {0}, b = {0};
	enum pkt_action a;

	if (!mask_statement_check(c, res, m->sql, p->type == 'Q' ? NULL : m->name, &rewrite, text,
	                          sizeof(text))) {
		if (rewrite.len == 0)
			return allow(c, m, res);
		/* the same statement with what masking needs in front (a COPY's probe) */
		if (!start_msg(&b, 'Q') || !buf_append(&b, rewrite.data, rewrite.len) ||
		    !buf_append(&b, "", 1)) {
			buf_free(&rewrite);
			buf_free(&b);
			client_fatal(c, "53200", "out of memory");
			return PKT_STOP;
		}
		finish_msg(&b);
		buf_free(&rewrite);
		a = send_rewritten(c, &b);
		buf_free(&b);
		return a;
	}
	buf_free(&rewrite);
	slog_info(c, "denied by masking: %s", text);
	c->denials++;
	return refuse(c, p, m, "42501", text);
}

/* What APPROVE ... FOR matches on; 0 (never matches) for text the parser rejected. */
static uint64_t fingerprint_of(const struct inspect_result *res)
{
	return res && !res->parse_error ? res->fingerprint : 0;
}

static bool preapproved(const struct pv_socket *c, const struct inspect_result *res)
{
	uint64_t fp = fingerprint_of(res);
	return fp != 0 && approval_preapproved(c, fp);
}

/*
 * Hold the message for a decision (approval.h): the client gets a NOTICE and
 * the message stays unprocessed in its input buffer (PKT_PAUSE) until
 * approval_decide() wakes the client and the message is dispatched again.
 */
static enum pkt_action hold(struct pv_socket *c, const struct gov_policy *pol,
                            const struct stmt_msg *m, const struct inspect_result *res,
                            const struct rule_decision *d)
{
	char text[256];
	struct pv_buf out = {0};
	struct approval *a = approval_hold(c, d->name, m->sql, m->len, fingerprint_of(res),
	                                   pol->approval_timeout);
	bool ok = a != NULL;

	if (ok) {
		snprintf(text, sizeof(text), "statement held for approval: id=%llu rule=\"%s\"",
		         (unsigned long long)a->id, d->name);
		ok = msg_notice(&out, APPROVAL_NOTICE_SQLSTATE, text) &&
		     sbuf_queue(c, out.data, out.len);
		buf_free(&out);
	}
	if (!ok) {
		client_fatal(c, "53200", "out of memory");
		return PKT_STOP;
	}
	return PKT_PAUSE;
}

/* The held message is back with its decision; it is always the one held (input was paused). */
static enum pkt_action apply_decision(struct pv_socket *c, const struct pkt *p, struct stmt_msg *m,
                                      struct inspect_result *res)
{
	const struct approval *ap = c->approval;
	char text[512];
	enum pkt_action a;

	switch (ap->state) {
	case APPROVAL_APPROVED:
		a = masked_or_allow(c, p, m, res);
		break;
	case APPROVAL_CANCELED:
		a = refuse(c, p, m, "57014", "canceling statement due to user request");
		break;
	case APPROVAL_TIMED_OUT:
		c->denials++;
		a = refuse(c, p, m, "42501", "approval timed out");
		break;
	default:
		snprintf(text, sizeof(text), "denied by approver%s%s", ap->reason ? ": " : "",
		         ap->reason ? ap->reason : "");
		c->denials++;
		a = refuse(c, p, m, "42501", text);
		break;
	}
	if (ap->state != APPROVAL_APPROVED) /* the decision event is recorded; this is its error */
		record_refused(c, p, NULL, NULL);
	approval_done(c);
	return a;
}

static enum pkt_action enforce(struct pv_socket *c, const struct gov_policy *pol,
                               const struct pkt *p, struct stmt_msg *m,
                               struct inspect_result *res, const struct rule_decision *d)
{
	if (d->action == GOV_APPROVE && preapproved(c, res)) {
		log_decision(c, "approved by APPROVE FOR", d, m->sql, m->len);
		return masked_or_allow(c, p, m, res);
	}
	if (d->action == GOV_APPROVE)
		return hold(c, pol, m, res, d);
	if (d->rule != RULE_DEFAULT || d->action != GOV_ALLOW)
		log_decision(c, d->action == GOV_ALLOW ? "allowed" : "denied", d, m->sql, m->len);
	if (d->action != GOV_ALLOW)
		return deny(c, p, m, d);
	return masked_or_allow(c, p, m, res);
}

/* Statements are judged when there are rules, and checked when there are masks. */
static bool hook_wanted(const struct gov_policy *pol)
{
	return pol && (pol->rules_enabled || pol->n_masks > 0);
}

/* derived: mask: a Bind carries its statement's derived positions to its portal (mask.h). */
static enum pkt_action note_bind(struct pv_socket *c, struct pkt *p)
{
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (mask_note_bind(c, p))
		return PKT_FORWARD;
	client_fatal(c, "53200", "out of memory");
	return PKT_STOP;
}

/* Runs with a server linked (client.c): judge, then forward, rewrite or hold. */
static enum pkt_action rules_client_msg(struct pv_socket *c, struct pkt *p)
{
	const struct gov_policy *pol = gov_active();
	struct stmt_msg m;
	struct inspect_result *res;
	struct rule_decision d;
	struct rule_ctx ctx;
	enum pkt_action a;

	if (p->type == 'B' && pol && pol->n_masks > 0 && pol->derived_mask)
		return note_bind(c, p);
	if ((p->type != 'Q' && p->type != 'P') || !hook_wanted(pol))
		return PKT_FORWARD;
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (!read_stmt(p, &m))
		return PKT_FORWARD;
	res = inspect_classify(m.sql, m.len);
	if (c->approval) {
		a = apply_decision(c, p, &m, res);
	} else {
		build_ctx(c, &ctx);
		d = judge(pol, c, res, &ctx, true);
		a = enforce(c, pol, p, &m, res, &d);
	}
	if (res)
		inspect_release(res);
	return a;
}

/*
 * Runs before a server is requested (client.c). A client without a server
 * whose statement needs approval is held here, so that it waits holding no
 * server connection. Everything else is left to rules_client_msg, which
 * counts the hit; a linked client (in a transaction, or session pooling)
 * keeps its server and is held there.
 */
static enum pkt_action rules_client_gate(struct pv_socket *c, struct pkt *p)
{
	const struct gov_policy *pol = gov_active();
	struct stmt_msg m;
	struct inspect_result *res;
	struct rule_decision d;
	struct rule_ctx ctx;
	enum pkt_action a = PKT_FORWARD;

	if ((p->type != 'Q' && p->type != 'P') || !hook_wanted(pol))
		return PKT_FORWARD;
	if (c->approval) /* woken while waiting (a server was released...): keep waiting */
		return c->approval->state == APPROVAL_PENDING ? PKT_PAUSE : PKT_FORWARD;
	if (c->link)
		return PKT_FORWARD;
	if (!pkt_complete(p))
		return PKT_NEED_FULL;
	if (!read_stmt(p, &m))
		return PKT_FORWARD;
	res = inspect_classify(m.sql, m.len);
	build_ctx(c, &ctx);
	d = judge(pol, c, res, &ctx, false);
	if (d.action == GOV_APPROVE && !preapproved(c, res)) {
		d = judge(pol, c, res, &ctx, true); /* held here: rules_client_msg will not count it */
		a = hold(c, pol, &m, res, &d);
	}
	if (res)
		inspect_release(res);
	return a;
}

/* The gate only exists to hold statements before a server is taken: without an
 * approve rule it would classify and judge every statement twice for nothing. */
static bool has_approve_rule(const struct gov_policy *pol)
{
	for (size_t i = 0; i < pol->n_rules; i++)
		if (pol->rules[i].action == GOV_APPROVE)
			return true;
	return false;
}

void rules_install(const struct gov_policy *pol)
{
	bool on = hook_wanted(pol);
	pv_hooks.client_msg = on ? rules_client_msg : NULL;
	pv_hooks.client_gate = on && has_approve_rule(pol) ? rules_client_gate : NULL;
}
