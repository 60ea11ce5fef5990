/*
 * governance.h - the governance policy (ini key governance_file): a YAML
 * file loaded with libyaml into an immutable struct gov_policy.
 *
 * The file is a mapping of top-level sections. Each section has a parse
 * callback in a table in governance.c; later stages (inspection, masking,
 * recording) add their sections there. Today:
 *
 *   identity:
 *     providers:                 # OIDC token issuers (see doc/oidc.md)
 *       - name: corp             # unique, [A-Za-z0-9_.-]
 *         issuer: https://login.example.com/
 *         audience: [pgvigil]    # the token's aud must contain one of these
 *         jwks_file: keys.json   # relative to this file's directory; or
 *         jwks_uri: https://...  # fetched by the worker (jwks.h); or
 *         discovery: true        # jwks_uri from the issuer's discovery document
 *         ca_file: idp-ca.pem    # for the fetches; default the system CAs
 *         refresh_interval: 1h   # grace_period: 24h, unknown_kid_refresh_min_interval: 60s
 *         allow_insecure_loopback_jwks: false  # http:// to loopback (tests)
 *         algorithms: [RS256, ES256]   # required; RS*, PS*, ES* only
 *         clock_skew: 60s        # exp/nbf/iat tolerance; default 60s
 *         username_claim: sub    # default sub
 *         groups_claim: groups   # default groups; absent claim = no groups
 *         max_token_size: 16384  # bytes; default 16384, at most 65536
 *     grants:                    # default deny
 *       - when: {groups: [ai-agents], subject: "ci-*", provider: corp}
 *         db_users: [agent_ro]
 *         replication: false     # true: also replication=true|database connections
 *     allow_plaintext_loopback: false
 *   rules:                       # ordered, first match decides (doc/governance.md)
 *     - name: no-ddl             # unique
 *       when: {statements: [ddl], tables: [audit.*], functions: [dblink*],
 *              without_where: true, databases: [..], db_users: [..],
 *              subjects: ["ci-*"], groups: [ai-agents], application_names: ["*"]}
 *       action: deny             # allow | deny | approve (not yet: enforced as deny)
 *       message: text for the client
 *   default: allow               # when no rule matches
 *   unparsable: deny             # text the parser rejects (default deny)
 *   masks:                       # mask_catalog.h, doc/governance.md#masking
 *     - name: cards              # unique
 *       columns: [app.customers.card_number, "*.*.credit_card"]
 *       detect: [credit_card]    # and/or content detectors (mask_value.h)
 *       method: partial          # redact | partial | hash | null | email
 *       keep_last: 4             # partial only; key_file: hash only (16..64 bytes)
 *       except: {groups: [billing-admins]}
 *   derived: deny                # or mask
 *   predicates: allow            # or deny
 *   mask_refresh: 60s            # catalog re-resolution interval
 *   approval:
 *     timeout: 300s
 *     approvers: {groups: [dba-oncall]}   # token logins to the admin console
 *     webhook: {url: https://..., timeout: 5s, ca_file: .., secret_file: ..,
 *               allow_insecure_loopback: false}   # or just the URL
 *
 * Unknown keys are errors. Every error is "file:line: what is wrong".
 * Loading happens at startup (fatal) and on RELOAD (a bad file keeps the
 * running policy); it does all file I/O (JWKS files too), so nothing on the
 * login path touches the disk or the network (remote key sets are fetched by
 * the jwks worker thread).
 */
#ifndef PV_GOVERNANCE_H
#define PV_GOVERNANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pv_config;
struct oidc_keyset;
struct jwks_source;
struct pv_identity;
struct mask_rule;
struct rec_policy;

#define GOV_DEFAULT_MAX_TOKEN 16384
#define GOV_LIMIT_MAX_TOKEN   65536
#define GOV_DEFAULT_SKEW      60
#define GOV_DEFAULT_APPROVAL_TIMEOUT 300

struct gov_strlist {
	char **v;
	size_t n;
};

struct gov_provider {
	int line;
	char *name;
	char *issuer;
	struct gov_strlist audience;
	char *jwks_file; /* resolved path */
	char *jwks_uri;
	bool discovery; /* jwks_uri from <issuer>/.well-known/openid-configuration */
	char *ca_file;  /* resolved path; NULL = system CAs */
	bool allow_insecure_loopback_jwks;
	int64_t refresh_interval, grace_period, kid_refresh_min; /* seconds */
	unsigned algs;      /* bit set of enum oidc_alg (oidc.h) */
	int64_t clock_skew; /* seconds */
	char *username_claim;
	char *groups_claim;
	size_t max_token_size;
	struct oidc_keyset *keys; /* jwks_file */
	struct jwks_source *jwks; /* jwks_uri / discovery (jwks.h), shared across reloads */
};

struct gov_grant {
	int line;
	struct gov_strlist groups; /* any of; empty = no condition */
	char *subject;             /* fnmatch pattern; NULL = no condition */
	char *provider;            /* NULL = no condition */
	struct gov_strlist db_users;
	bool replication; /* also for replication connections (default: never) */
};

enum gov_action {
	GOV_ALLOW,
	GOV_DENY,
	GOV_APPROVE, /* hold for an admin's decision (approval.h) */
};

/* One entry of rules: (rules.h matches them). All conditions given must hold. */
struct gov_rule {
	int line;
	char *name;
	uint32_t classes;	    /* any of (enum stmt_class, inspect.h); 0 = no condition */
	struct gov_strlist tables;    /* patterns with '*': "schema.table" or bare "table" */
	struct gov_strlist functions; /* lower case patterns, qualified or bare */
	bool without_where;	    /* true: only an UPDATE/DELETE without WHERE matches */
	struct gov_strlist databases, db_users; /* exact names */
	struct gov_strlist subjects;		  /* fnmatch patterns on the identity subject */
	struct gov_strlist groups;		  /* any of the identity's groups */
	struct gov_strlist app_names;		  /* fnmatch patterns on application_name */
	enum gov_action action;
	char *message; /* NULL: none */
};

/* approval.webhook (webhook.h): where held and decided statements are announced. */
struct gov_webhook {
	char *url;     /* NULL: no webhook */
	char *ca_file; /* resolved path; NULL = system CAs */
	bool allow_insecure_loopback; /* http:// to loopback (tests) */
	int64_t timeout;              /* seconds per POST */
	unsigned char *secret;        /* secret_file's content, read at load; NULL: unsigned */
	size_t secret_len;
};

struct gov_policy {
	char *path;
	/* rules (rules.h): first match decides; else default_action */
	struct gov_rule *rules;
	size_t n_rules;
	bool rules_enabled; /* a rules/default/unparsable section exists: the hook runs */
	enum gov_action default_action;
	enum gov_action unparsable; /* text the parser rejects; default deny */
	/* Hit counters for SHOW POLICY: [0..n_rules) rules, then default, then unparsable.
	 * A separate array so a const policy can still count (event loop thread only). */
	uint64_t *hits;
	struct gov_provider *providers;
	size_t n_providers;
	struct gov_grant *grants;
	size_t n_grants;
	bool allow_plaintext_loopback;
	int64_t approval_timeout; /* seconds a held statement waits for a decision */
	/* masking (mask_catalog.h; parsed by mask_policy.c) */
	struct mask_rule *masks;
	size_t n_masks;
	bool derived_mask;    /* derived: mask (default deny) */
	bool predicates_deny; /* predicates: deny (default allow) */
	int64_t mask_refresh; /* mask_refresh: seconds between catalog resolutions */
	struct gov_strlist approver_groups; /* identities in these may APPROVE/DENY */
	struct gov_webhook webhook;
	struct rec_policy *recording; /* recording: (recorder_policy.c); NULL: off */
};

/* Parse a policy file; NULL with "file:line: reason" in err. */
struct gov_policy *gov_load(const char *path, char *err, size_t errlen);
/* The same from memory; origin names it in errors, base_dir resolves relative paths. */
struct gov_policy *gov_parse_buffer(const char *text, size_t len, const char *origin,
                                    const char *base_dir, char *err, size_t errlen);
void gov_free(struct gov_policy *pol);

/*
 * Two-step (re)load so that RELOAD can validate everything before swapping
 * anything: gov_prepare() loads cf->governance_file (*out = NULL when the key
 * is empty) and checks it against cf; gov_commit() makes it the running one.
 */
bool gov_prepare(const struct pv_config *cf, struct gov_policy **out, char *err, size_t errlen);
void gov_commit(struct gov_policy *pol);
/* The running policy; NULL without governance_file. */
const struct gov_policy *gov_active(void);

const struct gov_provider *gov_find_provider_by_issuer(const struct gov_policy *pol,
                                                       const char *issuer);
/*
 * Default deny: does a grant let this identity use database role db_user?
 * A replication connection needs a grant with replication: true.
 */
bool gov_grant_allows(const struct gov_policy *pol, const struct pv_identity *id,
                      const char *db_user, bool replication);
/* Is this identity in approval.approvers.groups (may decide held statements)? */
bool gov_is_approver(const struct gov_policy *pol, const struct pv_identity *id);

#endif
