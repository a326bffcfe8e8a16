/* The daemon's configuration: `key = value` lines, `# comments`, optional
 * `[section]` headers (a key inside [detect] is detect.KEY), parsed through one
 * table of {key, type, parser, destination, min, max, default, help}.
 * Errors name the file, line and key:
 *   "/etc/memdrift.conf:12: detect.window: '10x' is not a duration"
 * (log_errno and cli_fail add the "memdrift: " prefix). --set KEY=VALUE flags go through the
 * same config_set. Reload: config_load* fill a NEW struct and copy it out only
 * on success, so a bad file never touches the running config. */
#ifndef MEMDRIFT_CONFIG_H
#define MEMDRIFT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "detect/alert.h"
#include "detect/detect.h"

#define CONFIG_GLOB_MAX 16      /* patterns per selector list */
#define CONFIG_PATTERN_MAX 128
#define CONFIG_PATH_MAX 256
#define CONFIG_ERR_MAX 512      /* a good size for err buffers */

struct glob_list {
	uint32_t count;
	char pattern[CONFIG_GLOB_MAX][CONFIG_PATTERN_MAX];
};

struct memdrift_config {
	char metrics_listen[64];             /* host:port, "" = no HTTP endpoint */
	char metrics_unix_socket[CONFIG_PATH_MAX]; /* "" = none */
	char metrics_token_file[CONFIG_PATH_MAX];  /* bearer token for TCP clients */
	char metrics_tls_cert[CONFIG_PATH_MAX], metrics_tls_key[CONFIG_PATH_MAX];
	bool metrics_insecure_listen;        /* non-loopback without TLS+token acknowledged */
	uint32_t metrics_max_connections, metrics_max_connections_per_ip;
	uint64_t metrics_timeout_ns;
	char alerts_file[CONFIG_PATH_MAX];   /* "" = none */
	bool alerts_stdout;
	char state_dir[CONFIG_PATH_MAX];
	uint32_t postmortem_max_count;       /* post-mortems kept in state.dir */
	uint64_t postmortem_max_bytes;
	bool select_go, select_jvm;
	struct glob_list include_comm, exclude_comm;
	struct glob_list include_exe, exclude_exe;
	struct glob_list include_cgroup, exclude_cgroup;
	uint64_t interval_ns;                /* evaluation (and snapshot) interval */
	struct detect_params detect;
	uint64_t goroutine_blocked_min_age_ns; /* what counts as "blocked long" */
	struct alert_params alert;
	bool trace_on_drift;
	uint64_t trace_duration_ns;
	double trace_cpu_budget_percent;
	uint32_t max_processes;
	uint32_t max_sites;                  /* per process and kind */
	uint32_t max_native_allocations;     /* outstanding, per process */
	uint32_t label_cardinality;          /* Prometheus series per metric family */
	uint32_t series_points;              /* ring capacity of each time series */
};

/* Every key at its documented default. */
void config_defaults(struct memdrift_config *cfg);

/* Sets one key from text, validating type and range. 0, -ENOENT (unknown
 * key) or -EINVAL; err gets "KEY: 'VALUE' is not a duration". */
int config_set(struct memdrift_config *cfg, const char *key, const char *value, char *err,
	       size_t errlen);
/* "KEY=VALUE" as given to --set; err gets "--set: KEY: ...". */
int config_set_arg(struct memdrift_config *cfg, const char *arg, char *err, size_t errlen);

/* Checks between keys (min_points <= max_points, interval < window, ...).
 * err gets "KEY: why". */
int config_validate(const struct memdrift_config *cfg, char *err, size_t errlen);

/* Defaults, then the file, then cross-key validation, into *out only on
 * success. */
int config_load(const char *path, struct memdrift_config *out, char *err, size_t errlen);
/* Same with --set overrides applied after the file (also on SIGHUP reload).
 * path may be NULL: defaults and overrides only. */
int config_load_with(const char *path, const char *const *sets, size_t nsets,
		     struct memdrift_config *out, char *err, size_t errlen);
/* Reads a regular text file of at most max bytes (no NUL) into a malloc'd
 * string: the config itself, and the token and TLS files it names. */
int config_read_file(const char *path, size_t max, char **text, char *err, size_t errlen);
/* Parses text as if read from a file named name (tests, fuzzing). */
int config_parse_buffer(const char *name, const char *text, struct memdrift_config *cfg,
			char *err, size_t errlen);

/* Writes cfg as a commented config file that config_load reads back to the
 * same values; with defaults it is the documented reference
 * (`memdrift daemon --print-config`, daemon/service/memdrift.conf.example). */
int config_write(FILE *f, const struct memdrift_config *cfg);

/* Selectors: every non-empty include list must match, no exclude may.
 * Globs are fnmatch(3) without FNM_PATHNAME: '*' crosses '/'. NULL
 * attributes match no pattern. */
bool config_selects(const struct memdrift_config *cfg, const char *comm, const char *exe,
		    const char *cgroup);

#endif
