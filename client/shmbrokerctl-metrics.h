/*
 * shmbrokerctl-metrics.h: a status reply as metrics, for `shmbrokerctl status
 * --format=openmetrics|prometheus`.
 */
#pragma once

#include <stdio.h>

typedef enum MetricsFormat {
        METRICS_OPENMETRICS,     /* OpenMetrics 1.0 text: UNIT lines, counters' families without _total, # EOF */
        METRICS_PROMETHEUS,      /* Prometheus text 0.0.4, which node_exporter's textfile collector reads */
} MetricsFormat;

/* Write the metrics of status reply @status_json (the daemon's JSON text) to @out in
 * @format. Returns 0, or -EINVAL when the text is not a status reply. */
int metrics_print(const char *status_json, MetricsFormat format, FILE *out);
