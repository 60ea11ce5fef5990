/*
 * governance.c - the governance_file loader (libyaml) and grant matching.
 * The schema is described in include/governance.h and doc/governance.md.
 *
 * The file is read whole (bounded), loaded with libyaml's document API and
 * walked with tables: a table of top-level sections, each with a parse
 * callback, and per-mapping key tables. A later stage adds a section by
 * adding a row to `sections` and a field to struct gov_policy.
 */
#include "governance.h"
#include "gov_parse.h"
#include "config.h"
#include "inspect.h"
#include "jwks.h"
#include "log.h"
#include "oidc.h"
#include "oidc_cache.h"
#include "record_events.h"
#include "rules.h"
#include "mask.h"
#include "mask_catalog.h"
#include "util.h"
#include "webhook.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define GOV_MAX_FILE    (4u * 1024 * 1024)
/* --- identity.providers -------------------------------------------------------------- */

#define PROV(p) ((struct gov_provider *)(p))

static bool k_prov_name(struct gparser *ps, yaml_node_t *v, void *o)
{
	if (!get_string(ps, v, "name", &PROV(o)->name))
		return false;
	if (strspn(PROV(o)->name,
	           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
	    strlen(PROV(o)->name))
		return fail(ps, v, "name may only use letters, digits, '_', '.' and '-'");
	return true;
}

static bool k_prov_issuer(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "issuer", &PROV(o)->issuer);
}

static bool k_prov_audience(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "audience", &PROV(o)->audience);
}

static bool k_prov_jwks_file(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_path(ps, v, "jwks_file", &PROV(o)->jwks_file);
}

static bool k_prov_jwks_uri(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "jwks_uri", &PROV(o)->jwks_uri);
}

static bool k_prov_discovery(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_bool(ps, v, "discovery", &PROV(o)->discovery);
}

/* Relative to the governance file's directory, like jwks_file. */
static bool k_prov_ca_file(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_path(ps, v, "ca_file", &PROV(o)->ca_file);
}

static bool k_prov_refresh(struct gparser *ps, yaml_node_t *v, void *o)
{
	if (!get_number(ps, v, "refresh_interval", 7 * 86400, true, &PROV(o)->refresh_interval))
		return false;
	return PROV(o)->refresh_interval >= 1 ? true
	                                      : fail(ps, v, "refresh_interval must be at least 1s");
}

static bool k_prov_grace(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_number(ps, v, "grace_period", 30 * 86400, true, &PROV(o)->grace_period);
}

static bool k_prov_kid_min(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_number(ps, v, "unknown_kid_refresh_min_interval", 86400, true,
	                  &PROV(o)->kid_refresh_min);
}

static bool k_prov_insecure(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_bool(ps, v, "allow_insecure_loopback_jwks",
	                &PROV(o)->allow_insecure_loopback_jwks);
}

static bool k_prov_algorithms(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_strlist l = {0};
	enum oidc_alg alg;
	bool ok = get_strlist(ps, v, "algorithms", &l);

	for (size_t i = 0; ok && i < l.n; i++) {
		if (!oidc_alg_parse(l.v[i], &alg))
			ok = fail(ps, v,
			          "algorithm \"%s\" is not allowed (RS256/384/512, PS256/384/512, "
			          "ES256/384/512)",
			          l.v[i]);
		else
			PROV(o)->algs |= 1u << alg;
	}
	strlist_free(&l);
	return ok;
}

static bool k_prov_clock_skew(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_number(ps, v, "clock_skew", 3600, true, &PROV(o)->clock_skew);
}

static bool k_prov_username_claim(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "username_claim", &PROV(o)->username_claim);
}

static bool k_prov_groups_claim(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "groups_claim", &PROV(o)->groups_claim);
}

static bool k_prov_max_token_size(struct gparser *ps, yaml_node_t *v, void *o)
{
	int64_t n;
	if (!get_number(ps, v, "max_token_size", GOV_LIMIT_MAX_TOKEN, false, &n))
		return false;
	if (n < 64)
		return fail(ps, v, "max_token_size must be at least 64");
	PROV(o)->max_token_size = (size_t)n;
	return true;
}

static const struct gov_key provider_keys[] = {
    {"name", k_prov_name},
    {"issuer", k_prov_issuer},
    {"audience", k_prov_audience},
    {"jwks_file", k_prov_jwks_file},
    {"jwks_uri", k_prov_jwks_uri},
    {"discovery", k_prov_discovery},
    {"ca_file", k_prov_ca_file},
    {"refresh_interval", k_prov_refresh},
    {"grace_period", k_prov_grace},
    {"unknown_kid_refresh_min_interval", k_prov_kid_min},
    {"allow_insecure_loopback_jwks", k_prov_insecure},
    {"algorithms", k_prov_algorithms},
    {"clock_skew", k_prov_clock_skew},
    {"username_claim", k_prov_username_claim},
    {"groups_claim", k_prov_groups_claim},
    {"max_token_size", k_prov_max_token_size},
};

/* Exactly one key source: a file (read now) or a remote set (fetched by the worker). */
static bool provider_keys_source(struct gparser *ps, yaml_node_t *n, struct gov_provider *p)
{
	char why[384];
	const char *bad;
	struct jwks_params jp;

	if (!!p->jwks_file + !!p->jwks_uri + p->discovery != 1)
		return fail(ps, n,
		            "provider \"%s\" needs exactly one of jwks_file, jwks_uri, "
		            "discovery: true",
		            p->name);
	if (p->jwks_file) {
		if (p->ca_file)
			return fail(ps, n, "provider \"%s\": ca_file needs jwks_uri or discovery",
			            p->name);
		p->keys = oidc_keyset_load_file(p->jwks_file, why, sizeof(why));
		return p->keys ? true : fail(ps, n, "provider \"%s\": %s", p->name, why);
	}
	/* For discovery the issuer is the URL we fetch from: the same rule applies. */
	bad = jwks_url_refused(p->jwks_uri ? p->jwks_uri : p->issuer,
	                       p->allow_insecure_loopback_jwks);
	if (bad)
		return fail(ps, n, "provider \"%s\": %s %s", p->name,
		            p->jwks_uri ? "jwks_uri" : "issuer (for discovery)", bad);
	/* Keys older than one refresh would expire between two good fetches. */
	if (p->grace_period < p->refresh_interval)
		return fail(ps, n,
		            "provider \"%s\": grace_period must be at least refresh_interval",
		            p->name);
	jp = (struct jwks_params){
	    .jwks_uri = p->jwks_uri,
	    .issuer = p->issuer,
	    .discovery = p->discovery,
	    .ca_file = p->ca_file,
	    .allow_insecure_loopback = p->allow_insecure_loopback_jwks,
	    .refresh_interval = p->refresh_interval,
	    .grace_period = p->grace_period,
	    .kid_refresh_min = p->kid_refresh_min,
	};
	p->jwks = jwks_source_get(&jp);
	return p->jwks ? true : fail(ps, n, "out of memory");
}

/* Required keys, defaults, and the key set (read now, never at login). */
static bool provider_finish(struct gparser *ps, yaml_node_t *n, struct gov_provider *p)
{
	if (!p->name)
		return fail(ps, n, "provider needs a name");
	if (!p->issuer)
		return fail(ps, n, "provider \"%s\" needs an issuer", p->name);
	if (!p->audience.n)
		return fail(ps, n, "provider \"%s\" needs an audience", p->name);
	if (!p->algs)
		return fail(ps, n,
		            "provider \"%s\" needs algorithms (the signing algorithms pinned)",
		            p->name);
	if (!set_default(ps, n, &p->username_claim, "sub") ||
	    !set_default(ps, n, &p->groups_claim, "groups"))
		return false;
	return provider_keys_source(ps, n, p);
}

static bool parse_provider(struct gparser *ps, yaml_node_t *n, void *obj)
{
	struct gov_provider *p = obj;
	p->line = (int)n->start_mark.line + 1;
	p->clock_skew = GOV_DEFAULT_SKEW;
	p->max_token_size = GOV_DEFAULT_MAX_TOKEN;
	p->refresh_interval = JWKS_DEFAULT_REFRESH;
	p->grace_period = JWKS_DEFAULT_GRACE;
	p->kid_refresh_min = JWKS_DEFAULT_KID_MIN;
	if (!parse_mapping(ps, n, "a provider", provider_keys,
	                   sizeof(provider_keys) / sizeof(provider_keys[0]), p))
		return false;
	if (!provider_finish(ps, n, p))
		return false;
	for (struct gov_provider *q = ps->pol->providers; q < p; q++) {
		if (strcmp(q->name, p->name) == 0)
			return fail(ps, n, "provider name \"%s\" is used twice", p->name);
		if (strcmp(q->issuer, p->issuer) == 0)
			return fail(ps, n, "issuer \"%s\" is used by two providers", p->issuer);
	}
	return true;
}

/* --- identity.grants --------------------------------------------------------------- */

#define GRANT(p) ((struct gov_grant *)(p))

static bool k_when_groups(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "groups", &GRANT(o)->groups);
}

static bool k_when_subject(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "subject", &GRANT(o)->subject);
}

static bool k_when_provider(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "provider", &GRANT(o)->provider);
}

static const struct gov_key when_keys[] = {
    {"groups", k_when_groups},
    {"subject", k_when_subject},
    {"provider", k_when_provider},
};

static bool k_grant_when(struct gparser *ps, yaml_node_t *v, void *o)
{
	if (!parse_mapping(ps, v, "when", when_keys, sizeof(when_keys) / sizeof(when_keys[0]), o))
		return false;
	/* An empty condition would grant the role to every valid token: say so explicitly. */
	if (!GRANT(o)->groups.n && !GRANT(o)->subject && !GRANT(o)->provider)
		return fail(ps, v, "when needs at least one of groups, subject, provider");
	return true;
}

static bool k_grant_db_users(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "db_users", &GRANT(o)->db_users);
}

/* Replication copies whole databases: only a grant that says so allows it. */
static bool k_grant_replication(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_bool(ps, v, "replication", &GRANT(o)->replication);
}

static const struct gov_key grant_keys[] = {
    {"when", k_grant_when},
    {"db_users", k_grant_db_users},
    {"replication", k_grant_replication},
};

static bool parse_grant(struct gparser *ps, yaml_node_t *n, void *obj)
{
	struct gov_grant *g = obj;
	g->line = (int)n->start_mark.line + 1;
	if (!parse_mapping(ps, n, "a grant", grant_keys, sizeof(grant_keys) / sizeof(grant_keys[0]),
	                   g))
		return false;
	if (!g->groups.n && !g->subject && !g->provider)
		return fail(ps, n, "grant needs when");
	if (!g->db_users.n)
		return fail(ps, n, "grant needs db_users");
	return true;
}

/* --- identity ------------------------------------------------------------------------ */

static bool k_id_providers(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_policy *pol = o;
	return parse_sequence(ps, v, "providers", sizeof(struct gov_provider),
	                      (void **)&pol->providers, &pol->n_providers, parse_provider);
}

static bool k_id_grants(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_policy *pol = o;
	return parse_sequence(ps, v, "grants", sizeof(struct gov_grant), (void **)&pol->grants,
	                      &pol->n_grants, parse_grant);
}

static bool k_id_loopback(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_bool(ps, v, "allow_plaintext_loopback",
	                &((struct gov_policy *)o)->allow_plaintext_loopback);
}

static const struct gov_key identity_keys[] = {
    {"providers", k_id_providers},
    {"grants", k_id_grants},
    {"allow_plaintext_loopback", k_id_loopback},
};

static bool find_provider_name(const struct gov_policy *pol, const char *name)
{
	for (size_t i = 0; i < pol->n_providers; i++)
		if (strcmp(pol->providers[i].name, name) == 0)
			return true;
	return false;
}

static bool parse_identity(struct gparser *ps, yaml_node_t *n)
{
	struct gov_policy *pol = ps->pol;
	if (!parse_mapping(ps, n, "identity", identity_keys,
	                   sizeof(identity_keys) / sizeof(identity_keys[0]), pol))
		return false;
	/* Grants may come before providers in the file: check references at the end. */
	for (size_t i = 0; i < pol->n_grants; i++) {
		const struct gov_grant *g = &pol->grants[i];
		if (g->provider && !find_provider_name(pol, g->provider)) {
			snprintf(ps->err, ps->errlen, "%s:%d: grant names unknown provider \"%s\"",
			         ps->origin, g->line, g->provider);
			return false;
		}
	}
	return true;
}

/* --- rules ------------------------------------------------------------------------- */

#define RULE(p) ((struct gov_rule *)(p))

static bool get_action(struct gparser *ps, yaml_node_t *n, const char *what,
                       enum gov_action *out, bool approve_ok)
{
	const char *s = scalar(n);
	if (s && strcmp(s, "allow") == 0)
		return *out = GOV_ALLOW, true;
	if (s && strcmp(s, "deny") == 0)
		return *out = GOV_DENY, true;
	if (approve_ok && s && strcmp(s, "approve") == 0)
		return *out = GOV_APPROVE, true;
	return fail(ps, n, "%s must be %s", what, approve_ok ? "allow, deny or approve"
	                                                      : "allow or deny");
}

static bool k_rw_statements(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_strlist l = {0};
	bool ok = get_strlist(ps, v, "statements", &l);

	for (size_t i = 0; ok && i < l.n; i++) {
		uint32_t bits = inspect_class_from_name(l.v[i]);
		if (!bits)
			ok = fail(ps, v, "unknown statement class \"%s\"", l.v[i]);
		RULE(o)->classes |= bits;
	}
	strlist_free(&l);
	return ok;
}

static bool k_rw_tables(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "tables", &RULE(o)->tables);
}

/* The classifier reports function names in lower case: so must the patterns be. */
static bool k_rw_functions(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_strlist *l = &RULE(o)->functions;
	if (!get_strlist(ps, v, "functions", l))
		return false;
	for (size_t i = 0; i < l->n; i++)
		for (char *c = l->v[i]; *c; c++)
			*c = (char)tolower((unsigned char)*c);
	return true;
}

static bool k_rw_without_where(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_bool(ps, v, "without_where", &RULE(o)->without_where);
}

static bool k_rw_databases(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "databases", &RULE(o)->databases);
}

static bool k_rw_db_users(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "db_users", &RULE(o)->db_users);
}

/* "subject" (as in grants) and "subjects" fill the same list; both at once is an error. */
static bool k_rw_subjects(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "subjects", &RULE(o)->subjects);
}

static bool k_rw_groups(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "groups", &RULE(o)->groups);
}

static bool k_rw_apps(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "application_names", &RULE(o)->app_names);
}

static const struct gov_key rule_when_keys[] = {
    {"statements", k_rw_statements},
    {"tables", k_rw_tables},
    {"functions", k_rw_functions},
    {"without_where", k_rw_without_where},
    {"databases", k_rw_databases},
    {"db_users", k_rw_db_users},
    {"subjects", k_rw_subjects},
    {"subject", k_rw_subjects},
    {"groups", k_rw_groups},
    {"application_names", k_rw_apps},
};

static bool k_rule_name(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "name", &RULE(o)->name);
}

/* An empty when matches every statement: allowed (a catch-all), like no when at all. */
static bool k_rule_when(struct gparser *ps, yaml_node_t *v, void *o)
{
	return parse_mapping(ps, v, "when", rule_when_keys,
	                     sizeof(rule_when_keys) / sizeof(rule_when_keys[0]), o);
}

static bool k_rule_action(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_action(ps, v, "action", &RULE(o)->action, true);
}

static bool k_rule_message(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "message", &RULE(o)->message);
}

static const struct gov_key rule_keys[] = {
    {"name", k_rule_name},
    {"when", k_rule_when},
    {"action", k_rule_action},
    {"message", k_rule_message},
};

static bool parse_rule(struct gparser *ps, yaml_node_t *n, void *obj)
{
	struct gov_rule *r = obj;
	r->line = (int)n->start_mark.line + 1;
	r->action = (enum gov_action)-1;
	if (!parse_mapping(ps, n, "a rule", rule_keys, sizeof(rule_keys) / sizeof(rule_keys[0]),
	                   r))
		return false;
	if (!r->name)
		return fail(ps, n, "rule needs a name");
	if ((int)r->action == -1)
		return fail(ps, n, "rule \"%s\" needs an action", r->name);
	for (struct gov_rule *q = ps->pol->rules; q < r; q++)
		if (strcmp(q->name, r->name) == 0)
			return fail(ps, n, "rule name \"%s\" is used twice", r->name);
	return true;
}

static bool parse_rules(struct gparser *ps, yaml_node_t *n)
{
	struct gov_policy *pol = ps->pol;
	pol->rules_enabled = true;
	return parse_sequence(ps, n, "rules", sizeof(struct gov_rule), (void **)&pol->rules,
	                      &pol->n_rules, parse_rule);
}

static bool parse_default(struct gparser *ps, yaml_node_t *n)
{
	ps->pol->rules_enabled = true;
	return get_action(ps, n, "default", &ps->pol->default_action, false);
}

static bool parse_unparsable(struct gparser *ps, yaml_node_t *n)
{
	ps->pol->rules_enabled = true;
	return get_action(ps, n, "unparsable", &ps->pol->unparsable, false);
}

/* --- approval ------------------------------------------------------------------------ */

#define APPROVAL_TIMEOUT_MAX (7 * 24 * 3600)

static bool k_ap_timeout(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_policy *pol = o;
	if (!get_number(ps, v, "approval timeout", APPROVAL_TIMEOUT_MAX, true,
	                &pol->approval_timeout))
		return false;
	return pol->approval_timeout > 0 ? true : fail(ps, v, "approval timeout must be positive");
}

/* Identities in these groups may log in to the admin console with a token and decide. */
static bool k_apr_groups(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_strlist(ps, v, "approvers groups", &((struct gov_policy *)o)->approver_groups);
}

static const struct gov_key approvers_keys[] = {{"groups", k_apr_groups}};

static bool k_ap_approvers(struct gparser *ps, yaml_node_t *v, void *o)
{
	return parse_mapping(ps, v, "approvers", approvers_keys,
	                     sizeof(approvers_keys) / sizeof(approvers_keys[0]), o);
}

#define HOOK(o) (&((struct gov_policy *)(o))->webhook)

static bool k_wh_url(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_string(ps, v, "webhook url", &HOOK(o)->url);
}

static bool k_wh_timeout(struct gparser *ps, yaml_node_t *v, void *o)
{
	if (!get_number(ps, v, "webhook timeout", WEBHOOK_MAX_TIMEOUT, true, &HOOK(o)->timeout))
		return false;
	return HOOK(o)->timeout > 0 ? true : fail(ps, v, "webhook timeout must be positive");
}

static bool k_wh_ca_file(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_path(ps, v, "webhook ca_file", &HOOK(o)->ca_file);
}

static bool k_wh_insecure(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_bool(ps, v, "allow_insecure_loopback", &HOOK(o)->allow_insecure_loopback);
}

#define WEBHOOK_SECRET_MAX 4096

/* The HMAC key: read now (never at notification time); trailing newlines are not part of it. */
static bool k_wh_secret_file(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_webhook *w = HOOK(o);
	char *path = NULL;
	FILE *f;
	size_t len;

	if (!get_path(ps, v, "webhook secret_file", &path))
		return false;
	f = fopen(path, "rb");
	free(path);
	if (!f)
		return fail(ps, v, "webhook secret_file: %s", strerror(errno));
	w->secret = malloc(WEBHOOK_SECRET_MAX + 1);
	len = w->secret ? fread(w->secret, 1, WEBHOOK_SECRET_MAX + 1, f) : 0;
	if (!w->secret || ferror(f)) {
		fclose(f);
		return fail(ps, v, "webhook secret_file: %s", w->secret ? "read error" : "out of memory");
	}
	fclose(f);
	if (len > WEBHOOK_SECRET_MAX)
		return fail(ps, v, "webhook secret_file is larger than %d bytes", WEBHOOK_SECRET_MAX);
	while (len && (w->secret[len - 1] == '\n' || w->secret[len - 1] == '\r'))
		len--;
	w->secret_len = len;
	return len ? true : fail(ps, v, "webhook secret_file is empty");
}

static const struct gov_key webhook_keys[] = {
    {"url", k_wh_url},
    {"timeout", k_wh_timeout},
    {"ca_file", k_wh_ca_file},
    {"allow_insecure_loopback", k_wh_insecure},
    {"secret_file", k_wh_secret_file},
};

/* `webhook: URL` or a mapping; the URL is checked once the flags are known. */
static bool k_ap_webhook(struct gparser *ps, yaml_node_t *v, void *o)
{
	struct gov_webhook *w = HOOK(o);
	const char *bad;

	w->timeout = WEBHOOK_DEFAULT_TIMEOUT;
	if (v->type == YAML_SCALAR_NODE) {
		if (!k_wh_url(ps, v, o))
			return false;
	} else if (!parse_mapping(ps, v, "webhook", webhook_keys,
	                          sizeof(webhook_keys) / sizeof(webhook_keys[0]), o)) {
		return false;
	}
	if (!w->url)
		return fail(ps, v, "webhook needs a url");
	bad = webhook_url_refused(w->url, w->allow_insecure_loopback);
	return bad ? fail(ps, v, "webhook url %s", bad) : true;
}

static const struct gov_key approval_keys[] = {
    {"timeout", k_ap_timeout},
    {"approvers", k_ap_approvers},
    {"webhook", k_ap_webhook},
};

static bool parse_approval(struct gparser *ps, yaml_node_t *n)
{
	return parse_mapping(ps, n, "approval", approval_keys,
	                     sizeof(approval_keys) / sizeof(approval_keys[0]), ps->pol);
}

/* --- top level ------------------------------------------------------------------------ */

/* One row per top-level section; later stages (rules, masks, recording) add theirs. */
static const struct gov_section {
	const char *name;
	bool (*parse)(struct gparser *ps, yaml_node_t *n);
} sections[] = {
    {"identity", parse_identity},
    {"rules", parse_rules},
    {"default", parse_default},
    {"unparsable", parse_unparsable},
    {"approval", parse_approval},
    {"masks", mask_parse_masks}, /* mask_policy.c: masks, derived, predicates, mask_refresh */
    {"derived", mask_parse_derived},
    {"predicates", mask_parse_predicates},
    {"mask_refresh", mask_parse_refresh},
    {"recording", rec_parse_recording}, /* recorder_policy.c */
};

static bool parse_root(struct gparser *ps)
{
	yaml_node_t *root = yaml_document_get_root_node(&ps->doc);
	uint64_t seen = 0;
	const size_t nsec = sizeof(sections) / sizeof(sections[0]);

	if (!root)
		return true; /* empty file: an empty policy */
	if (root->type != YAML_MAPPING_NODE)
		return fail(ps, root, "the governance file must be a mapping of sections");
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node_at(ps, p->key);
		const char *name = scalar(k);
		size_t i;
		for (i = 0; name && i < nsec && strcmp(sections[i].name, name) != 0; i++)
			;
		if (!name || i == nsec)
			return fail(ps, k, "unknown section \"%s\"", name ? name : "?");
		if (seen & (1ull << i))
			return fail(ps, k, "section \"%s\" appears twice", name);
		seen |= 1ull << i;
		if (!sections[i].parse(ps, node_at(ps, p->value)))
			return false;
	}
	return true;
}

static bool load_document(struct gparser *ps, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	bool ok;

	if (!yaml_parser_initialize(&parser)) {
		snprintf(ps->err, ps->errlen, "%s: out of memory", ps->origin);
		return false;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	ok = yaml_parser_load(&parser, &ps->doc);
	if (!ok) {
		snprintf(ps->err, ps->errlen, "%s:%zu: %s%s%s", ps->origin,
		         parser.problem_mark.line + 1,
		         parser.problem ? parser.problem : "YAML error", parser.context ? " " : "",
		         parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return false;
	}
	/* A second document would be silently ignored: refuse it. */
	if (yaml_document_get_root_node(&ps->doc)) {
		if (!yaml_parser_load(&parser, &extra)) {
			ok = false;
			snprintf(ps->err, ps->errlen, "%s:%zu: %s", ps->origin,
			         parser.problem_mark.line + 1,
			         parser.problem ? parser.problem : "YAML error");
		} else {
			if (yaml_document_get_root_node(&extra)) {
				ok = false;
				snprintf(ps->err, ps->errlen,
				         "%s:%zu: only one YAML document is allowed", ps->origin,
				         extra.start_mark.line + 1);
			}
			yaml_document_delete(&extra);
		}
		if (!ok)
			yaml_document_delete(&ps->doc);
	}
	yaml_parser_delete(&parser);
	return ok;
}

struct gov_policy *gov_parse_buffer(const char *text, size_t len, const char *origin,
                                    const char *base_dir, char *err, size_t errlen)
{
	struct gparser ps = {.origin = origin, .base_dir = base_dir, .err = err, .errlen = errlen};
	bool ok;

	ps.pol = calloc(1, sizeof(*ps.pol));
	if (!ps.pol || !(ps.pol->path = strdup(origin))) {
		free(ps.pol);
		snprintf(err, errlen, "%s: out of memory", origin);
		return NULL;
	}
	if (!load_document(&ps, text, len)) {
		gov_free(ps.pol);
		return NULL;
	}
	ps.pol->default_action = GOV_ALLOW;
	ps.pol->unparsable = GOV_DENY;
	ps.pol->approval_timeout = GOV_DEFAULT_APPROVAL_TIMEOUT;
	ps.pol->mask_refresh = MASK_DEFAULT_REFRESH;
	ok = parse_root(&ps);
	yaml_document_delete(&ps.doc);
	/* rules, then default, then unparsable (SHOW POLICY) */
	if (ok && !(ps.pol->hits = calloc(ps.pol->n_rules + 2, sizeof(uint64_t)))) {
		snprintf(err, errlen, "%s: out of memory", origin);
		ok = false;
	}
	if (!ok) {
		gov_free(ps.pol);
		return NULL;
	}
	return ps.pol;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(GOV_MAX_FILE + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	n = fread(buf, 1, GOV_MAX_FILE + 1, f);
	if (ferror(f) || n > GOV_MAX_FILE) {
		snprintf(err, errlen, "%s: %s", path, ferror(f) ? "read error" : "file too large");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

struct gov_policy *gov_load(const char *path, char *err, size_t errlen)
{
	struct gov_policy *pol;
	size_t len;
	char *text = read_file(path, &len, err, errlen);
	char *dir;
	const char *slash = strrchr(path, '/');

	if (!text)
		return NULL;
	dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	if (!dir) {
		free(text);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	pol = gov_parse_buffer(text, len, path, dir[0] ? dir : "/", err, errlen);
	free(dir);
	free(text);
	return pol;
}

static void provider_free(struct gov_provider *p)
{
	free(p->name);
	free(p->issuer);
	strlist_free(&p->audience);
	free(p->jwks_file);
	free(p->jwks_uri);
	free(p->username_claim);
	free(p->groups_claim);
	free(p->ca_file);
	oidc_keyset_free(p->keys);
	jwks_source_put(p->jwks);
}

static void grant_free(struct gov_grant *g)
{
	strlist_free(&g->groups);
	free(g->subject);
	free(g->provider);
	strlist_free(&g->db_users);
}

static void rule_free(struct gov_rule *r)
{
	free(r->name);
	free(r->message);
	strlist_free(&r->tables);
	strlist_free(&r->functions);
	strlist_free(&r->databases);
	strlist_free(&r->db_users);
	strlist_free(&r->subjects);
	strlist_free(&r->groups);
	strlist_free(&r->app_names);
}

void gov_free(struct gov_policy *pol)
{
	if (!pol)
		return;
	for (size_t i = 0; i < pol->n_rules; i++)
		rule_free(&pol->rules[i]);
	free(pol->rules);
	free(pol->hits);
	for (size_t i = 0; i < pol->n_providers; i++)
		provider_free(&pol->providers[i]);
	free(pol->providers);
	for (size_t i = 0; i < pol->n_grants; i++)
		grant_free(&pol->grants[i]);
	free(pol->grants);
	mask_policy_free(pol);
	rec_policy_free(pol->recording);
	strlist_free(&pol->approver_groups);
	free(pol->webhook.url);
	free(pol->webhook.ca_file);
	if (pol->webhook.secret)
		explicit_bzero(pol->webhook.secret, pol->webhook.secret_len);
	free(pol->webhook.secret);
	free(pol->path);
	free(pol);
}

/* --- the running policy ------------------------------------------------------------------ */

static struct gov_policy *running;

bool gov_prepare(const struct pv_config *cf, struct gov_policy **out, char *err, size_t errlen)
{
	struct gov_policy *pol = NULL;

	*out = NULL;
	if (cf->governance_file && cf->governance_file[0]) {
		pol = gov_load(cf->governance_file, err, errlen);
		if (!pol)
			return false;
	}
	if (cf->auth_type == AUTH_OIDC && (!pol || !pol->n_providers)) {
		snprintf(
		    err, errlen,
		    "auth_type = oidc needs governance_file with at least one identity provider");
		gov_free(pol);
		return false;
	}
	*out = pol;
	return true;
}

void gov_commit(struct gov_policy *pol)
{
	/* Logins validate synchronously and copy what they keep: the old one can go now. */
	gov_free(running);
	running = pol;
	/* Statement inspection costs nothing unless the policy has rules. */
	rules_install(pol);
	mask_install(pol);
	/* Issuer, audience, claim mapping or providers may differ: no token verified under the old one counts. */
	oidc_cache_flush();
	/* Resolved columns point at the old policy's mask rules: resolve again. */
	mask_catalog_policy_changed();
}

const struct gov_policy *gov_active(void)
{
	return running;
}

const struct gov_provider *gov_find_provider_by_issuer(const struct gov_policy *pol,
                                                       const char *issuer)
{
	for (size_t i = 0; pol && i < pol->n_providers; i++)
		if (strcmp(pol->providers[i].issuer, issuer) == 0)
			return &pol->providers[i];
	return NULL;
}

static bool grant_matches(const struct gov_grant *g, const struct pv_identity *id)
{
	bool group_ok = g->groups.n == 0;

	if (g->provider && strcmp(g->provider, id->provider) != 0)
		return false;
	if (g->subject && fnmatch(g->subject, id->subject, 0) != 0)
		return false;
	for (size_t i = 0; !group_ok && i < id->n_groups; i++)
		group_ok = strlist_has(&g->groups, id->groups[i]);
	return group_ok;
}

bool gov_grant_allows(const struct gov_policy *pol, const struct pv_identity *id,
                      const char *db_user, bool replication)
{
	for (size_t i = 0; pol && id && i < pol->n_grants; i++) {
		const struct gov_grant *g = &pol->grants[i];
		if (replication && !g->replication)
			continue;
		if (strlist_has(&g->db_users, db_user) && grant_matches(g, id))
			return true;
	}
	return false;
}

bool gov_is_approver(const struct gov_policy *pol, const struct pv_identity *id)
{
	for (size_t i = 0; pol && id && i < id->n_groups; i++)
		if (strlist_has(&pol->approver_groups, id->groups[i]))
			return true;
	return false;
}
