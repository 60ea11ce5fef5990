/*
 * mask_derived.h - decides what masking means for one classified statement
 * (issue 8, item 4: derived values).
 *
 * Owns: given the column references inspection found (struct inspect_colref,
 * with their context) and a way to ask which columns are masked, whether the
 * statement must be denied, or which of its output columns the rewriter must
 * mask as a whole because they are computed from masked values. It knows
 * nothing about the catalog (the caller's mask_names answers by name) and
 * does no I/O. Plain column references are not its business: the rewriter
 * masks those by RowDescription.
 */
#ifndef PV_MASK_DERIVED_H
#define PV_MASK_DERIVED_H

#include <stdbool.h>
#include <stdint.h>

#include "inspect.h"

/* Which columns are masked, asked by name (schema NULL: unqualified, as written). */
struct mask_names {
	bool (*is_masked)(void *arg, const char *schema, const char *table, const char *column);
	bool (*table_has_masked)(void *arg, const char *schema, const char *table);
	void *arg;
};

/* The `derived:` policy: deny such statements, or mask the output columns they feed. */
enum mask_derived_mode { MASK_DERIVED_DENY, MASK_DERIVED_MASK };

struct mask_verdict {
	bool deny;
	char reason[160];           /* set when deny: which column and why */
	uint64_t mask_positions_lo; /* bit i-1 = output column i masked (derived: mask), up to 64 */
	bool mask_all;              /* reserved: never set, unknown positions deny instead */
};

/*
 * Decide for r (never NULL). predicates_deny: `predicates: deny`, masked
 * columns may not be tested either (oracle attacks). A statement with no
 * masked reference gets a zeroed verdict (allowed, nothing to mask).
 */
void mask_check_statement(const struct inspect_result *r, const struct mask_names *names,
                          enum mask_derived_mode mode, bool predicates_deny,
                          struct mask_verdict *out);

#endif
