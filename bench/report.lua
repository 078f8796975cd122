-- wrk script for bench/run: at the end of a run, prints one machine-readable line with the
-- throughput, latency percentiles (microseconds) and error counts, which bench/run parses.
done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"seconds\":%.3f,\"rps\":%.1f,\"p50_us\":%d,\"p90_us\":%d," ..
    "\"p99_us\":%d,\"p999_us\":%d,\"max_us\":%d,\"errors\":%d,\"non2xx\":%d}\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, errors, e.status))
end
