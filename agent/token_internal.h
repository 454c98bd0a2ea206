/* Private to token.c and token_cache.c: the one limit both enforce. Not part
 * of the module's interface (token.h). */
#ifndef SOCKID_TOKEN_INTERNAL_H
#define SOCKID_TOKEN_INTERNAL_H

/* NumericDates beyond this are refused rather than risk overflow: 2^53,
 * past which a double no longer holds every integer. */
#define NUMERIC_DATE_MAX 9007199254740992LL

#endif
