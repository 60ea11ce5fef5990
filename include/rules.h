/*
 * rules.h - the governance rules (section `rules:` of the governance file):
 * deciding allow/deny for a classified statement, the per-client memory of
 * SQL PREPAREs (so EXECUTE is judged as what it runs), and the client_gate /
 * client_msg hooks that enforce a deny or hold for approval (approval.h).
 *
 * Owns: matching (first rule whose conditions all hold decides, else
 * `default`; text the parser rejects follows `unparsable`), hit counters,
 * the deny rewrite on the packet path, and the SHOW POLICY rows.
 * Classification itself is inspect.h; parsing the YAML is governance.c.
 */
#ifndef PV_RULES_H
#define PV_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "governance.h"

struct inspect_result;
struct pv_identity;
struct pv_socket;

/* Who runs the statement where: every field may be NULL (no identity: token-less login). */
struct rule_ctx {
	const char *database;
	const char *db_user;
	const char *application_name;
	const struct pv_identity *identity;
};

#define RULE_DEFAULT    (-1) /* no rule matched: the policy's default */
#define RULE_UNPARSABLE (-2) /* the parser rejected the text: `unparsable` */

struct rule_decision {
	enum gov_action action; /* GOV_APPROVE: the hook holds the statement */
	int rule;		/* index into pol->rules, or RULE_DEFAULT / RULE_UNPARSABLE */
	const char *name;	/* the rule's name, "default" or "unparsable" */
	const char *message;	/* may be NULL */
};

/*
 * Judge one classified text for ctx; counts the hit. NULL res (classifier out
 * of memory) is judged like unparsable text: fail closed.
 */
struct rule_decision rules_decide(const struct gov_policy *pol, const struct inspect_result *res,
                                  const struct rule_ctx *ctx);

/* Does pattern (rule syntax, see doc/governance.md) cover the name a statement used? */
bool rules_name_matches(const char *pattern, const char *name);

/*
 * Per-client map: SQL PREPARE name -> classification of the text that
 * defined it (kept referenced). Bounded; see rules.c.
 */
struct rules_client;
bool rules_client_remember(struct pv_socket *c, const char *name, struct inspect_result *res);
struct inspect_result *rules_client_lookup(const struct pv_socket *c, const char *name);
void rules_client_forget(struct pv_socket *c, const char *name); /* NULL name: all */
void rules_client_free(struct pv_socket *c);

/* Install or remove the client_msg hook for the running policy (gov_commit). */
void rules_install(const struct gov_policy *pol);

/* SHOW POLICY: calls row() once per rule, then for default and unparsable. */
void rules_show(const struct gov_policy *pol,
                void (*row)(void *arg, const char *rule, const char *action, uint64_t hits,
                            const char *message),
                void *arg);

const char *rules_action_name(enum gov_action a);

#endif
