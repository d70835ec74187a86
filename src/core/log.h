/* Structured logging: one JSON object per line on stderr.
 *
 * The level and format are process-wide settings (the log stream is one per
 * process); everything else is passed explicitly. Fields come as a jansson
 * object that the call takes ownership of, usually built with json_pack():
 *
 *   PT_LOG_INFO("containerd connected", "{s:s}", "socket", path);
 */
#ifndef PT_CORE_LOG_H
#define PT_CORE_LOG_H

#include <jansson.h>

enum pt_log_level { PT_LOG_DEBUG = 0, PT_LOG_INFO, PT_LOG_WARN, PT_LOG_ERROR };
enum pt_log_format { PT_LOG_JSON = 0, PT_LOG_LOGFMT };

/* Parses "debug", "info", "warn"/"warning", "error" (case-insensitive).
 * Returns 0 or -EINVAL. */
int pt_log_level_parse(const char *s, enum pt_log_level *out);
const char *pt_log_level_name(enum pt_log_level level);
void pt_log_setup(const char *component, enum pt_log_level level, enum pt_log_format format);
int pt_log_enabled(enum pt_log_level level);

/* Writes one record; takes ownership of fields (which may be NULL). */
void pt_log_json(enum pt_log_level level, const char *msg, json_t *fields);

#define PT_LOG_(lvl, msg, ...) \
  do { if (pt_log_enabled(lvl)) pt_log_json((lvl), (msg), json_pack(__VA_ARGS__)); } while (0)
#define PT_LOG_DEBUG(msg, ...) PT_LOG_(PT_LOG_DEBUG, msg, __VA_ARGS__)
#define PT_LOG_INFO(msg, ...) PT_LOG_(PT_LOG_INFO, msg, __VA_ARGS__)
#define PT_LOG_WARN(msg, ...) PT_LOG_(PT_LOG_WARN, msg, __VA_ARGS__)
#define PT_LOG_ERROR(msg, ...) PT_LOG_(PT_LOG_ERROR, msg, __VA_ARGS__)

#endif
