/*
 * janitor.h - periodic maintenance (every 1/3 s): timeouts for logins,
 * waiting clients, connects, idle and old servers, and retrying pools whose
 * server login is in back-off.
 */
#ifndef PV_JANITOR_H
#define PV_JANITOR_H

#include <stdbool.h>

bool janitor_start(void);
void janitor_stop(void);

#endif
