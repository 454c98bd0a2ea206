/* Private to config.c and config_ini.c: what the file loader needs from the
 * config model (the key table, value checks, the rules between keys, the
 * copy-and-swap of a load). Not part of the module's interface (config.h). */
#ifndef SOCKID_CONFIG_INTERNAL_H
#define SOCKID_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "text.h"

#define CONFIG_VALUE_MAX 4096
#define CONFIG_QUOTE_MAX 48 /* bytes of a value or key shown in a message */
/* Keys in config.c's [agent] table (checked there at compile time): a load
 * records the line of each. */
#define CONFIG_N_KEYS 24

/* One row of the [agent] key table; only config.c looks inside. */
struct config_key;

/* Rules between keys: lo <= hi for numbers, lo != hi for paths. */
struct config_rule {
    const char *lo, *hi;
    bool differ;
};

/* How a message names a key: as in the file, or as a flag. */
enum config_style {
    CONFIG_STYLE_FILE,
    CONFIG_STYLE_FLAG,
};

/* Writes at most CONFIG_QUOTE_MAX of the len bytes at s into out, escaped so
 * a message stays one line of text. */
const char *config_quote_n(char *out, size_t out_len, const char *s, size_t len);
const char *config_quote(char *out, size_t out_len, const char *s);

/* "socket, admin_socket, ..." or "--socket, --admin-socket, ...". */
const char *config_key_list(char *out, size_t out_len, enum config_style style);
const struct config_key *config_key_find(const char *name);
/* k's position in the table: 0 .. CONFIG_N_KEYS - 1. */
size_t config_key_index(const struct config_key *k);

bool config_has_control(const char *s);
bool config_parse_bool(const char *s, bool *ret);

/* Applies value to key k of cfg. On a bad value writes what is wrong and what
 * is allowed into why, and leaves cfg alone. */
__attribute__((warn_unused_result)) int config_key_apply(struct config *cfg,
                                                         const struct config_key *k,
                                                         const char *value, char *why,
                                                         size_t why_len);

/* The first rule cfg breaks, or NULL. */
const struct config_rule *config_rule_broken(const struct config *cfg);
/* Explains the broken rule r from the side of key blame (r->lo or r->hi). */
void config_rule_why(const struct config *cfg, const struct config_rule *r, const char *blame,
                     enum config_style style, char *why, size_t why_len);

void config_attestor_clear(struct config_attestor *a);
__attribute__((warn_unused_result)) int config_attestor_add(struct config_attestor *a,
                                                            const char *key, const char *value);
/* Appends an empty [attestor.NAME] (name is len bytes). */
__attribute__((warn_unused_result)) int config_attestor_append(struct config *cfg, const char *name,
                                                               size_t len);

/* A deep copy, which a load or a flag changes before it is swapped in. */
__attribute__((warn_unused_result)) int config_dup(const struct config *cfg, struct config **ret);
/* Moves work's contents into cfg and frees what cfg held before. */
void config_commit(struct config *cfg, struct config *work);

#endif
