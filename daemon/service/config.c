#include "service/config.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "base/util.h"

#define NS_PER_SEC 1000000000.0
#define CONFIG_LINE_MAX 4096
#define CONFIG_FILE_MAX (1 << 20)

enum config_type {
	CT_STRING,   /* free text, may be empty */
	CT_PATH,     /* absolute path, or empty where allowed (min = 0) */
	CT_ADDRESS,  /* host:port or [v6]:port, or empty */
	CT_BOOL,
	CT_UINT32,
	CT_DOUBLE,
	CT_DURATION, /* uint64_t ns; limits in seconds */
	CT_BYTE_RATE,/* double bytes/s: "100KiB/s" or "100KiB" */
	CT_SIZE,     /* uint64_t bytes: "256MiB" */
	CT_GLOBS,    /* struct glob_list */
};

struct config_key;
typedef int (*config_parser)(const struct config_key *k, const char *value, void *dst,
			     char *why, size_t whylen);

struct config_key {
	const char *key;
	enum config_type type;
	config_parser parse;
	size_t offset;
	size_t size;
	double min, max; /* numbers: inclusive range; CT_PATH: min 1 = required */
	const char *def;
	const char *help;
};

static int parse_string(const struct config_key *k, const char *v, void *dst, char *why,
			size_t whylen)
{
	if (strlen(v) >= k->size)
		return set_err(why, whylen, -EINVAL, "is too long (at most %zu characters)",
			       k->size - 1);
	if (k->type == CT_PATH && (*v ? *v != '/' : k->min > 0))
		return set_err(why, whylen, -EINVAL, "is not an absolute path");
	strcpy(dst, v);
	return 0;
}

static int parse_address(const struct config_key *k, const char *v, void *dst, char *why,
			 size_t whylen)
{
	const char *colon = strrchr(v, ':');
	char *end;
	long port;

	if (*v) {
		if (!colon || colon == v || (v[0] == '[' && colon[-1] != ']'))
			return set_err(why, whylen, -EINVAL, "is not an address (host:port)");
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
			return set_err(why, whylen, -EINVAL, "is not an address (host:port)");
	}
	return parse_string(k, v, dst, why, whylen);
}

static int parse_bool(const struct config_key *k, const char *v, void *dst, char *why,
		      size_t whylen)
{
	static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };

	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
			*(bool *)dst = !strcasecmp(v, yes[i]);
			return 0;
		}
	}
	return set_err(why, whylen, -EINVAL, "is not a boolean (true or false)");
}

static int out_of_range(const struct config_key *k, char *why, size_t whylen);

static int parse_uint32(const struct config_key *k, const char *v, void *dst, char *why,
			size_t whylen)
{
	unsigned long long n;
	char *end;

	errno = 0;
	if (!isdigit((unsigned char)*v) || (n = strtoull(v, &end, 10), errno || *end))
		return set_err(why, whylen, -EINVAL, "is not a whole number");
	if ((double)n < k->min || (double)n > k->max)
		return out_of_range(k, why, whylen);
	*(uint32_t *)dst = (uint32_t)n;
	return 0;
}

static int parse_double(const struct config_key *k, const char *v, void *dst, char *why,
			size_t whylen)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (!*v || errno || *end || !isfinite(d))
		return set_err(why, whylen, -EINVAL, "is not a number");
	if (d < k->min || d > k->max)
		return out_of_range(k, why, whylen);
	*(double *)dst = d;
	return 0;
}

static int parse_duration(const struct config_key *k, const char *v, void *dst, char *why,
			  size_t whylen)
{
	uint64_t ns;

	if (parse_duration_ns(v, &ns))
		return set_err(why, whylen, -EINVAL, "is not a duration (e.g. 500ms, 15s, 10m, 1h)");
	if ((double)ns < k->min * NS_PER_SEC || (double)ns > k->max * NS_PER_SEC)
		return out_of_range(k, why, whylen);
	*(uint64_t *)dst = ns;
	return 0;
}

static int parse_byte_rate(const struct config_key *k, const char *v, void *dst, char *why,
			   size_t whylen)
{
	char buf[64];
	size_t n = strlen(v);
	uint64_t bytes;

	if (n >= sizeof(buf))
		return set_err(why, whylen, -EINVAL, "is not a byte rate (e.g. 100KiB/s)");
	memcpy(buf, v, n + 1);
	if (n > 2 && !strcmp(buf + n - 2, "/s"))
		buf[n - 2] = '\0';
	if (parse_size(buf, &bytes))
		return set_err(why, whylen, -EINVAL, "is not a byte rate (e.g. 100KiB/s)");
	if ((double)bytes < k->min || (double)bytes > k->max)
		return out_of_range(k, why, whylen);
	*(double *)dst = (double)bytes;
	return 0;
}

static int parse_size_key(const struct config_key *k, const char *v, void *dst, char *why,
			  size_t whylen)
{
	uint64_t bytes;

	if (parse_size(v, &bytes))
		return set_err(why, whylen, -EINVAL, "is not a size (e.g. 256MiB)");
	if ((double)bytes < k->min || (double)bytes > k->max)
		return out_of_range(k, why, whylen);
	*(uint64_t *)dst = bytes;
	return 0;
}

static void trim(char **s, char **e)
{
	while (*s < *e && isspace((unsigned char)**s))
		(*s)++;
	while (*e > *s && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

static int parse_globs(const struct config_key *k, const char *v, void *dst, char *why,
		       size_t whylen)
{
	struct glob_list list = { 0 };
	const char *p = v;

	while (*v && *p) {
		const char *comma = strchr(p, ',');
		char *s = (char *)p, *e = (char *)(comma ? comma : p + strlen(p));

		trim(&s, &e);
		if (s == e)
			return set_err(why, whylen, -EINVAL, "has an empty pattern");
		if (list.count == CONFIG_GLOB_MAX)
			return set_err(why, whylen, -EINVAL, "has more than %d patterns",
				       CONFIG_GLOB_MAX);
		if ((size_t)(e - s) >= CONFIG_PATTERN_MAX)
			return set_err(why, whylen, -EINVAL, "has a pattern longer than %d",
				       CONFIG_PATTERN_MAX - 1);
		memcpy(list.pattern[list.count], s, e - s);
		list.pattern[list.count++][e - s] = '\0';
		if (!comma)
			break;
		p = comma + 1;
		if (!*p)
			return set_err(why, whylen, -EINVAL, "has an empty pattern");
	}
	*(struct glob_list *)dst = list;
	return 0;
}

#define F(field) offsetof(struct memdrift_config, field), sizeof(((struct memdrift_config *)0)->field)
#define STR(field) CT_STRING, parse_string, F(field), 0, 0
#define PATH(field, required) CT_PATH, parse_string, F(field), required, 0
#define ADDR(field) CT_ADDRESS, parse_address, F(field), 0, 0
#define BOOL(field) CT_BOOL, parse_bool, F(field), 0, 1
#define U32(field, lo, hi) CT_UINT32, parse_uint32, F(field), lo, hi
#define DBL(field, lo, hi) CT_DOUBLE, parse_double, F(field), lo, hi
#define DUR(field, lo, hi) CT_DURATION, parse_duration, F(field), lo, hi
#define RATE(field, lo, hi) CT_BYTE_RATE, parse_byte_rate, F(field), lo, hi
#define SIZE(field, lo, hi) CT_SIZE, parse_size_key, F(field), lo, hi
#define GLOBS(field) CT_GLOBS, parse_globs, F(field), 0, 0

#define DAY 86400.0
#define GIB 1073741824.0

/* Keys are listed by section; the order is the order of the written file. */
static const struct config_key keys[] = {
	{ "metrics.listen", ADDR(metrics_listen), "127.0.0.1:9464",
	  "Prometheus /metrics, /healthz and pprof endpoint, host:port; empty disables it. A non-loopback address needs tls_cert, tls_key and token_file (or insecure_listen)." },
	{ "metrics.unix_socket", PATH(metrics_unix_socket, 0), "",
	  "Also serve on this Unix socket (mode 0666): /debug/pprof/*?pid=N goes to root and to the target's own user (SO_PEERCRED); empty: none." },
	{ "metrics.token_file", PATH(metrics_token_file, 0), "",
	  "File holding a bearer token: TCP clients need 'Authorization: Bearer TOKEN' for /metrics and profiles; without it TCP serves no profiles." },
	{ "metrics.tls_cert", PATH(metrics_tls_cert, 0), "", "PEM certificate (chain) for HTTPS on metrics.listen; with metrics.tls_key." },
	{ "metrics.tls_key", PATH(metrics_tls_key, 0), "", "PEM private key for metrics.tls_cert." },
	{ "metrics.insecure_listen", BOOL(metrics_insecure_listen), "false",
	  "Accept a non-loopback metrics.listen without TLS and a token: anyone who reaches it reads /metrics (never profiles)." },
	{ "metrics.max_connections", U32(metrics_max_connections, 8, 4096), "512",
	  "Open connections at once per listener; more are refused." },
	{ "metrics.max_connections_per_ip", U32(metrics_max_connections_per_ip, 0, 4096), "64",
	  "Open TCP connections per client address (0: no bound), so one client cannot take them all." },
	{ "metrics.timeout", DUR(metrics_timeout_ns, 1, 3600), "10s", "Idle connections are closed after this." },
	{ "alerts.file", PATH(alerts_file, 0), "",
	  "Also append alerts as JSON lines to this file (absolute path); empty: none." },
	{ "alerts.stdout", BOOL(alerts_stdout), "true", "Write alerts as JSON lines to stdout (journald / container logs)." },
	{ "alerts.hysteresis", U32(alert.hysteresis, 1, 1000), "3",
	  "Clear evaluations in a row before a firing alert resolves." },
	{ "alerts.rate_limit", U32(alert.rate_limit, 0, 100000), "10",
	  "New alerts allowed per alerts.rate_interval (a burst of as many); 0: unlimited. Resolutions are never limited." },
	{ "alerts.rate_interval", DUR(alert.rate_interval_ns, 1, DAY), "1m", "Interval of alerts.rate_limit." },
	{ "alerts.max_active", U32(alert.max_active, 1, ALERT_MAX_ACTIVE_LIMIT), "256",
	  "Alerts firing at once; new ones beyond it are dropped and counted." },
	{ "state.dir", PATH(state_dir, 1), "/var/lib/memdrift", "OOM post-mortems and profiles go here." },
	{ "state.postmortem_max_count", U32(postmortem_max_count, 1, 100000), "32",
	  "Post-mortem directories kept in state.dir; the oldest go first." },
	{ "state.postmortem_max_bytes", SIZE(postmortem_max_bytes, 1 << 20, 1024 * GIB), "256MiB",
	  "Bytes of post-mortems kept in state.dir; the oldest go first." },
	{ "select.go", BOOL(select_go), "true", "Watch Go programs." },
	{ "select.jvm", BOOL(select_jvm), "true", "Watch JVMs (processes that map libjvm.so)." },
	{ "select.include_comm", GLOBS(include_comm), "",
	  "Comma-separated globs; when not empty, only processes whose comm matches one are watched." },
	{ "select.exclude_comm", GLOBS(exclude_comm), "", "Processes whose comm matches one of these globs are not watched." },
	{ "select.include_exe", GLOBS(include_exe), "", "Globs on the executable path as the process sees it ('*' crosses '/')." },
	{ "select.exclude_exe", GLOBS(exclude_exe), "", "Globs on the executable path to leave alone." },
	{ "select.include_cgroup", GLOBS(include_cgroup), "", "Globs on the cgroup v2 path (/proc/PID/cgroup), e.g. /kubepods.slice/*." },
	{ "select.exclude_cgroup", GLOBS(exclude_cgroup), "", "Globs on the cgroup path to leave alone." },
	{ "detect.window", DUR(detect.window_ns, 10, 7 * DAY), "10m",
	  "Sliding window the detectors judge; a leak is reported once it has covered most of it." },
	{ "detect.interval", DUR(interval_ns, 0.1, 3600), "15s", "How often series are sampled and detectors run." },
	{ "detect.min_points", U32(detect.min_points, 9, DETECT_MAX_POINTS), "12",
	  "Points a window needs before it is judged (3 per third at least)." },
	{ "detect.max_points", U32(detect.max_points, 9, DETECT_MAX_POINTS), "120",
	  "Windows with more points are averaged down to this many (Theil-Sen costs n^2)." },
	{ "detect.p_threshold", DBL(detect.p_threshold, 1e-12, 0.5), "0.01",
	  "Mann-Kendall two-sided p-value below which an upward trend is significant." },
	{ "detect.persist_fraction", DBL(detect.persist_fraction, 0, 1), "0.5",
	  "Each third of the window must grow at least this fraction of the minimum slope (rejects steps and bursts)." },
	{ "detect.critical_factor", DBL(detect.critical_factor, 1, 1e6), "4",
	  "A slope this many times the minimum is critical instead of warning." },
	{ "detect.min_slope.goroutines", DBL(detect.min_slope[DRIFT_GOROUTINE_LEAK], 1e-6, 1e9), "0.1",
	  "Goroutines per second at one creation site that count as a leak." },
	{ "detect.min_slope.go_heap", RATE(detect.min_slope[DRIFT_GO_HEAP_GROWTH], 1, 64 * GIB), "100KiB/s",
	  "Growth of the heap marked after each GC that counts as a leak." },
	{ "detect.min_slope.native", RATE(detect.min_slope[DRIFT_NATIVE_LEAK], 1, 64 * GIB), "100KiB/s",
	  "Growth of outstanding C memory (one stack) that counts as a leak." },
	{ "detect.min_slope.jni_refs", DBL(detect.min_slope[DRIFT_JNI_REF_LEAK], 1e-6, 1e9), "0.5",
	  "JNI global references per second (one stack) that count as a leak." },
	{ "detect.min_slope.rss", RATE(detect.min_slope[DRIFT_RSS_GROWTH], 1, 64 * GIB), "256KiB/s",
	  "RSS growth that counts as drift." },
	{ "detect.rss_k", DBL(detect.rss_k, 0, 100), "3",
	  "RSS growth-rate anomaly: recent median rate above mean + k*stddev of the earlier rates." },
	{ "goroutine.blocked_min_age", DUR(goroutine_blocked_min_age_ns, 0, 7 * DAY), "1m",
	  "A goroutine waiting on a channel, select or sync this long counts as blocked long." },
	{ "goroutine.blocked_fraction", DBL(detect.goroutine_blocked_fraction, 0, 1), "0.5",
	  "A growing site is critical when this fraction of its growth is blocked long." },
	{ "native.min_oldest_age", DUR(detect.native_min_oldest_age_ns, 0, 7 * DAY), "2m",
	  "C memory / JNI refs: the oldest outstanding must be this old; younger is churn, not a leak." },
	{ "trace.on_drift", BOOL(trace_on_drift), "false",
	  "Switch a drifting process's trace-tier probes on for trace.duration to sharpen the evidence." },
	{ "trace.duration", DUR(trace_duration_ns, 1, DAY), "60s", "How long trace probes stay on." },
	{ "trace.cpu_budget", DBL(trace_cpu_budget_percent, 0.01, 100), "2",
	  "Percent of one CPU the trace probes may cost the target (hits counted in BPF x measured cost per probe kind, over each detect.interval) before they are detached." },
	{ "limits.max_processes", U32(max_processes, 1, 65536), "512", "Processes watched at once; more are counted and skipped." },
	{ "limits.max_sites", U32(max_sites, 1, 65536), "256", "Sites kept per process and kind (goroutine sites, stacks)." },
	{ "limits.max_native_allocations", U32(max_native_allocations, 1024, 16777216), "65536",
	  "Outstanding C allocations tracked per process." },
	{ "limits.label_cardinality", U32(label_cardinality, 1, 1000000), "2000",
	  "Prometheus series per metric family; the rest are folded into site=\"other\"." },
	{ "limits.series_points", U32(series_points, 16, SERIES_MAX_CAPACITY), "240",
	  "Points kept per time series (16 bytes each)." },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void fmt_limit(const struct config_key *k, double v, char *buf, size_t len)
{
	switch (k->type) {
	case CT_DURATION:
		snprintf(buf, len, "%gs", v);
		break;
	case CT_BYTE_RATE:
		snprintf(buf, len, "%.0fB/s", v);
		break;
	case CT_SIZE:
		snprintf(buf, len, "%.0fB", v);
		break;
	default:
		snprintf(buf, len, "%g", v);
	}
}

static int out_of_range(const struct config_key *k, char *why, size_t whylen)
{
	char lo[32], hi[32];

	fmt_limit(k, k->min, lo, sizeof(lo));
	fmt_limit(k, k->max, hi, sizeof(hi));
	return set_err(why, whylen, -EINVAL, "is out of range (%s to %s)", lo, hi);
}

static const struct config_key *find_key(const char *key)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (!strcmp(keys[i].key, key))
			return &keys[i];
	return NULL;
}

int config_set(struct memdrift_config *cfg, const char *key, const char *value, char *err,
	       size_t errlen)
{
	const struct config_key *k = find_key(key);
	char why[160];

	if (!k)
		return set_err(err, errlen, -ENOENT, "%s: unknown key", key);
	if (k->parse(k, value, (char *)cfg + k->offset, why, sizeof(why)))
		return set_err(err, errlen, -EINVAL, "%s: '%s' %s", key, value, why);
	return 0;
}

void config_defaults(struct memdrift_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	detect_params_defaults(&cfg->detect);
	alert_params_defaults(&cfg->alert);
	/* The table is the documentation: its defaults win, and must parse. */
	for (size_t i = 0; i < NKEYS; i++)
		if (config_set(cfg, keys[i].key, keys[i].def, NULL, 0))
			abort();
}

int config_set_arg(struct memdrift_config *cfg, const char *arg, char *err, size_t errlen)
{
	const char *eq = strchr(arg, '=');
	char key[128], inner[CONFIG_ERR_MAX];
	char *s, *e;
	int ret;

	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(key))
		return set_err(err, errlen, -EINVAL, "--set: '%s' is not KEY=VALUE", arg);
	memcpy(key, arg, eq - arg);
	key[eq - arg] = '\0';
	s = key;
	e = key + strlen(key);
	trim(&s, &e);
	*e = '\0';
	ret = config_set(cfg, s, eq + 1, inner, sizeof(inner));
	if (ret)
		return set_err(err, errlen, ret, "--set: %s", inner);
	return 0;
}

/* "127.0.0.1:9464", "[::1]:9464", "localhost:9464": loopback only. */
static bool listen_is_loopback(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	char host[64];
	size_t n = colon ? (size_t)(colon - listen) : 0;

	if (!n || n >= sizeof(host))
		return false;
	memcpy(host, listen, n);
	host[n] = '\0';
	if (!strcmp(host, "[::1]") || !strcmp(host, "localhost"))
		return true;
	/* 127.0.0.0/8: a dotted quad starting 127. */
	return !strncmp(host, "127.", 4) && strspn(host, "0123456789.") == n;
}

/* Who may reach the endpoint is decided here, before anything listens. */
static int validate_endpoint(const struct memdrift_config *cfg, char *err, size_t errlen)
{
	bool tls = cfg->metrics_tls_cert[0] && cfg->metrics_tls_key[0];

	if (!cfg->metrics_tls_cert[0] != !cfg->metrics_tls_key[0])
		return set_err(err, errlen, -EINVAL,
			       "metrics.tls_cert: metrics.tls_cert and metrics.tls_key go together");
	/* sockaddr_un.sun_path holds 108 bytes */
	if (strlen(cfg->metrics_unix_socket) >= 108)
		return set_err(err, errlen, -EINVAL,
			       "metrics.unix_socket: longer than a socket path may be (107)");
	if (cfg->metrics_listen[0] && !listen_is_loopback(cfg->metrics_listen) &&
	    !(tls && cfg->metrics_token_file[0]) && !cfg->metrics_insecure_listen)
		return set_err(err, errlen, -EINVAL,
			       "metrics.listen: %s is not a loopback address: set metrics.tls_cert, "
			       "metrics.tls_key and metrics.token_file, or metrics.insecure_listen = true",
			       cfg->metrics_listen);
	return 0;
}

int config_validate(const struct memdrift_config *cfg, char *err, size_t errlen)
{
	const struct detect_params *d = &cfg->detect;

	if (d->min_points > d->max_points)
		return set_err(err, errlen, -EINVAL,
			       "detect.min_points: %u is more than detect.max_points (%u)",
			       d->min_points, d->max_points);
	if (cfg->interval_ns * 3 > d->window_ns)
		return set_err(err, errlen, -EINVAL,
			       "detect.interval: must be at most a third of detect.window");
	if (cfg->series_points < d->min_points)
		return set_err(err, errlen, -EINVAL,
			       "limits.series_points: %u is less than detect.min_points (%u)",
			       cfg->series_points, d->min_points);
	if (cfg->interval_ns && cfg->series_points < d->window_ns / cfg->interval_ns + 1)
		return set_err(err, errlen, -EINVAL,
			       "limits.series_points: %u cannot hold detect.window at detect.interval (%lu points)",
			       cfg->series_points, (unsigned long)(d->window_ns / cfg->interval_ns + 1));
	if (cfg->goroutine_blocked_min_age_ns >= d->window_ns)
		return set_err(err, errlen, -EINVAL,
			       "goroutine.blocked_min_age: must be shorter than detect.window");
	if (!cfg->select_go && !cfg->select_jvm)
		return set_err(err, errlen, -EINVAL,
			       "select.go: select.go and select.jvm are both false: nothing to watch");
	return validate_endpoint(cfg, err, errlen);
}

/* Splits one line into key and value; section headers update prefix.
 * Returns 0 (*key NULL for blank/comment/section lines) or -EINVAL with why. */
static int split_line(char *line, char *section, size_t seclen, char **key, char **value,
		      char *why, size_t whylen)
{
	char *s = line, *e = line + strlen(line), *eq, *ks, *ke, *vs, *ve;

	*key = NULL;
	trim(&s, &e);
	*e = '\0';
	if (s == e || *s == '#' || *s == ';')
		return 0;
	if (*s == '[') {
		char *close = strchr(s, ']');
		bool known = false;

		if (!close || close[1])
			return set_err(why, whylen, -EINVAL, "%s: expected [section]", s);
		*close = '\0';
		for (size_t i = 0; i < NKEYS && !known; i++)
			known = !strncmp(keys[i].key, s + 1, strlen(s + 1)) &&
				keys[i].key[strlen(s + 1)] == '.';
		if (!known || !s[1])
			return set_err(why, whylen, -EINVAL, "[%s]: unknown section", s + 1);
		snprintf(section, seclen, "%s", s + 1);
		return 0;
	}
	eq = strchr(s, '=');
	if (!eq)
		return set_err(why, whylen, -EINVAL, "expected 'key = value'");
	ks = s;
	ke = eq;
	trim(&ks, &ke);
	if (ks == ke)
		return set_err(why, whylen, -EINVAL, "expected 'key = value'");
	*ke = '\0';
	vs = eq + 1;
	ve = e;
	trim(&vs, &ve);
	if (*vs == '"') {
		char *close = strchr(vs + 1, '"'), *rest;

		if (!close)
			return set_err(why, whylen, -EINVAL, "%s: unterminated quote", ks);
		rest = close + 1;
		while (isspace((unsigned char)*rest))
			rest++;
		if (*rest && *rest != '#')
			return set_err(why, whylen, -EINVAL, "%s: text after the closing quote", ks);
		vs++;
		*close = '\0';
	} else {
		/* " #" starts a trailing comment; '#' inside a word does not. */
		for (char *c = vs; c < ve; c++)
			if (*c == '#' && c > vs && isspace((unsigned char)c[-1])) {
				ve = c;
				trim(&vs, &ve);
				break;
			}
		*ve = '\0';
	}
	*key = ks;
	*value = vs;
	return 0;
}

int config_parse_buffer(const char *name, const char *text, struct memdrift_config *cfg,
			char *err, size_t errlen)
{
	char section[64] = "", line[CONFIG_LINE_MAX], full[192], why[CONFIG_ERR_MAX];
	const char *p = text;
	unsigned lineno = 0;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char *key, *value;
		int ret;

		lineno++;
		if (n >= sizeof(line))
			return set_err(err, errlen, -EINVAL, "%s:%u: line longer than %d bytes", name,
				       lineno, CONFIG_LINE_MAX - 1);
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + (nl ? 1 : 0);
		if (split_line(line, section, sizeof(section), &key, &value, why, sizeof(why)))
			return set_err(err, errlen, -EINVAL, "%s:%u: %s", name, lineno, why);
		if (!key)
			continue;
		if (section[0])
			snprintf(full, sizeof(full), "%s.%s", section, key);
		else
			snprintf(full, sizeof(full), "%s", key);
		ret = config_set(cfg, full, value, why, sizeof(why));
		if (ret)
			return set_err(err, errlen, -EINVAL, "%s:%u: %s", name, lineno, why);
	}
	return 0;
}

int config_read_file(const char *path, size_t max, char **text, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	struct stat st;
	size_t n;
	char *buf;

	if (!f)
		return set_err(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return set_err(err, errlen, -EINVAL, "%s: not a regular file", path);
	}
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return set_err(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f) || n > max) {
		int ret = ferror(f) ? -EIO : -EFBIG;

		fclose(f);
		free(buf);
		if (ret == -EIO)
			return set_err(err, errlen, ret, "%s: read error", path);
		return set_err(err, errlen, ret, "%s: larger than %zu KiB", path, max >> 10);
	}
	fclose(f);
	buf[n] = '\0';
	if (memchr(buf, '\0', n)) {
		free(buf);
		return set_err(err, errlen, -EINVAL, "%s: binary file", path);
	}
	*text = buf;
	return 0;
}

int config_load_with(const char *path, const char *const *sets, size_t nsets,
		     struct memdrift_config *out, char *err, size_t errlen)
{
	struct memdrift_config *cfg = malloc(sizeof(*cfg));
	char inner[CONFIG_ERR_MAX];
	char *text = NULL;
	int ret = 0;

	if (!cfg)
		return set_err(err, errlen, -ENOMEM, "config: out of memory");
	config_defaults(cfg);
	if (path) {
		ret = config_read_file(path, CONFIG_FILE_MAX, &text, err, errlen);
		if (!ret)
			ret = config_parse_buffer(path, text, cfg, err, errlen);
		free(text);
	}
	for (size_t i = 0; !ret && i < nsets; i++)
		ret = config_set_arg(cfg, sets[i], err, errlen);
	if (!ret && (ret = config_validate(cfg, inner, sizeof(inner))))
		set_err(err, errlen, ret, "%s: %s", path ? path : "--set", inner);
	if (!ret)
		*out = *cfg;
	free(cfg);
	return ret;
}

int config_load(const char *path, struct memdrift_config *out, char *err, size_t errlen)
{
	return config_load_with(path, NULL, 0, out, err, errlen);
}

/* ---- writing ---- */

static void fmt_duration_key(uint64_t ns, char *buf, size_t len)
{
	static const struct { const char *suffix; uint64_t ns; } units[] = {
		{ "h", 3600000000000ull }, { "m", 60000000000ull }, { "s", 1000000000ull },
		{ "ms", 1000000ull }, { "us", 1000ull },
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (ns && ns % units[i].ns == 0) {
			snprintf(buf, len, "%lu%s", (unsigned long)(ns / units[i].ns), units[i].suffix);
			return;
		}
	snprintf(buf, len, "%luns", (unsigned long)ns);
}

static void fmt_value(const struct config_key *k, const void *src, char *buf, size_t len)
{
	switch (k->type) {
	case CT_STRING:
	case CT_PATH:
	case CT_ADDRESS:
		snprintf(buf, len, "%s", *(const char *)src ? (const char *)src : "\"\"");
		break;
	case CT_BOOL:
		snprintf(buf, len, "%s", *(const bool *)src ? "true" : "false");
		break;
	case CT_UINT32:
		snprintf(buf, len, "%u", *(const uint32_t *)src);
		break;
	case CT_DOUBLE:
		snprintf(buf, len, "%.17g", *(const double *)src);
		/* shortest text that reads back to the same double */
		for (int prec = 1; prec <= 17; prec++) {
			char t[64];

			snprintf(t, sizeof(t), "%.*g", prec, *(const double *)src);
			if (strtod(t, NULL) == *(const double *)src) {
				snprintf(buf, len, "%s", t);
				break;
			}
		}
		break;
	case CT_DURATION:
		fmt_duration_key(*(const uint64_t *)src, buf, len);
		break;
	case CT_BYTE_RATE:
	case CT_SIZE: {
		uint64_t b = k->type == CT_SIZE ? *(const uint64_t *)src :
						  (uint64_t)*(const double *)src;
		const char *per = k->type == CT_SIZE ? "" : "/s";

		if (b && b % (1ull << 30) == 0)
			snprintf(buf, len, "%luGiB%s", (unsigned long)(b >> 30), per);
		else if (b && b % (1ull << 20) == 0)
			snprintf(buf, len, "%luMiB%s", (unsigned long)(b >> 20), per);
		else if (b && b % 1024 == 0)
			snprintf(buf, len, "%luKiB%s", (unsigned long)(b >> 10), per);
		else
			snprintf(buf, len, "%lu%s", (unsigned long)b, per);
		break;
	}
	case CT_GLOBS: {
		const struct glob_list *l = src;
		size_t pos = 0;

		buf[0] = '\0';
		for (uint32_t i = 0; i < l->count && pos < len; i++)
			pos += snprintf(buf + pos, len - pos, "%s%s", i ? ", " : "", l->pattern[i]);
		if (!l->count)
			snprintf(buf, len, "\"\"");
		break;
	}
	}
}

int config_write(FILE *f, const struct memdrift_config *cfg)
{
	char value[CONFIG_GLOB_MAX * (CONFIG_PATTERN_MAX + 2) + 64], section[64] = "";

	fprintf(f, "# memdrift daemon configuration. Every key is listed at its default.\n"
		   "# Syntax: 'key = value', '# comment', '[section]' (a key in [detect] is\n"
		   "# detect.KEY). Durations: 500ms, 15s, 10m, 1h. Byte rates: 100KiB/s, 1MiB/s.\n"
		   "# Glob lists: comma-separated. Quote empty values: \"\".\n"
		   "# Flags override the file: memdrift daemon --set detect.window=1m.\n"
		   "# SIGHUP reloads this file; a file with an error is refused and the\n"
		   "# running configuration stays.\n");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &keys[i];
		const char *dot = strchr(k->key, '.');
		size_t seclen = (size_t)(dot - k->key);

		if (strlen(section) != seclen || strncmp(section, k->key, seclen)) {
			snprintf(section, sizeof(section), "%.*s", (int)seclen, k->key);
			fprintf(f, "\n[%s]\n", section);
		}
		fmt_value(k, (const char *)cfg + k->offset, value, sizeof(value));
		fprintf(f, "# %s\n%s = %s\n", k->help, dot + 1, value);
	}
	return ferror(f) ? -EIO : 0;
}

/* ---- selectors ---- */

static bool list_matches(const struct glob_list *l, const char *s)
{
	if (!s)
		return false;
	for (uint32_t i = 0; i < l->count; i++)
		if (!fnmatch(l->pattern[i], s, 0))
			return true;
	return false;
}

static bool include_ok(const struct glob_list *l, const char *s)
{
	return !l->count || list_matches(l, s);
}

bool config_selects(const struct memdrift_config *cfg, const char *comm, const char *exe,
		    const char *cgroup)
{
	return include_ok(&cfg->include_comm, comm) && include_ok(&cfg->include_exe, exe) &&
	       include_ok(&cfg->include_cgroup, cgroup) && !list_matches(&cfg->exclude_comm, comm) &&
	       !list_matches(&cfg->exclude_exe, exe) && !list_matches(&cfg->exclude_cgroup, cgroup);
}
