/* log.h - structured logs: one JSON object per line on stderr, written with a single write()
 * so lines from several threads never interleave. */
#ifndef POLYSHOP_LOG_H
#define POLYSHOP_LOG_H

typedef enum { PS_LOG_DEBUG = 0, PS_LOG_INFO, PS_LOG_WARN, PS_LOG_ERROR, PS_LOG_FATAL } ps_log_level_t;

/* Sets the service name printed in every line and the minimum level. */
void ps_log_init(const char *service, ps_log_level_t min_level);

/* Parses "debug", "info", "warn", "error"; returns 0 or PS_EINVAL. */
int ps_log_level_parse(const char *s, ps_log_level_t *out);

/* Logs a message; request_id may be NULL. The formatted message is escaped for JSON. */
void ps_log(ps_log_level_t level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The access log line of one request. */
void ps_log_access(const char *request_id, const char *method, const char *path,
                   const char *route, int status, double seconds, const char *client);

#define ps_log_debug(...) ps_log(PS_LOG_DEBUG, NULL, __VA_ARGS__)
#define ps_log_info(...) ps_log(PS_LOG_INFO, NULL, __VA_ARGS__)
#define ps_log_warn(...) ps_log(PS_LOG_WARN, NULL, __VA_ARGS__)
#define ps_log_error(...) ps_log(PS_LOG_ERROR, NULL, __VA_ARGS__)

#endif
