/* work.h - the worker pool: blocking or CPU-heavy work (argon2id, a driver without an
 * asynchronous API, a blocking call to another service) runs on a small process-wide pool of
 * threads and completes with a callback on the event loop that asked, which never waits.
 *
 *   static void hash_cb(void *arg) { ...runs on a pool thread... }
 *   static void done_cb(void *arg, int status) { ...runs on the asking loop... }
 *   if (ps_work_queue(base, hash_cb, done_cb, job)) reply 503;
 *
 * Completion reaches a loop through one event per event_base, made active from the pool
 * thread: libevent's pthread support must be on (evthread_use_pthreads, which ps_work_start
 * and ps_server_run call) before that event_base is created.
 */
#ifndef POLYSHOP_WORK_H
#define POLYSHOP_WORK_H

struct event_base;

enum {
  PS_WORK_MAX_WORKERS = 64,
  PS_WORK_DEFAULT_QUEUE = 4096,
};

/* Starts the pool with `workers` threads (0: the number of cores, capped at
 * PS_WORK_MAX_WORKERS) and room for `queue_max` waiting jobs (0: PS_WORK_DEFAULT_QUEUE).
 * Also turns on libevent's pthread support. Optional: the first ps_work_queue starts the pool
 * with the defaults. Returns 0, PS_EEXISTS when the pool already runs (its settings stay), or
 * PS_EINVAL for a value out of range. */
int ps_work_start(int workers, int queue_max);

/* Queues work_cb(arg) to run on a pool thread; after_cb(arg, status) then runs on the loop of
 * `base` (status 0), or with PS_ECANCELED when the pool shut down (or the loop left, see
 * ps_work_loop_done) before work_cb ran, in which case work_cb never runs. Ordering between
 * jobs is not kept. arg belongs to the caller until after_cb has run. Call from the loop
 * thread of base. Returns 0, or PS_EINVAL (NULL base or callback), PS_ELIMIT (the queue is
 * full: the storm is refused, not queued), PS_ECANCELED (the pool is shutting down); then
 * neither callback is called. */
int ps_work_queue(struct event_base *base, void (*work_cb)(void *arg),
                  void (*after_cb)(void *arg, int status), void *arg);

/* Must be called on the loop thread of `base` once its loop has stopped and before the base
 * is freed, when that base ever queued work: jobs of base still queued get
 * after_cb(PS_ECANCELED), jobs running on a pool thread are waited for, and every completion
 * not yet delivered runs here, on this thread. Does nothing for a base that never queued. */
void ps_work_loop_done(struct event_base *base);

/* Stops the pool: every queued job gets after_cb(PS_ECANCELED) on its loop (through that
 * loop's event; a loop already gone gets it in ps_work_loop_done), jobs running finish, and
 * the threads are joined. Afterwards ps_work_queue starts a new pool. Safe to call when the
 * pool never started. */
void ps_work_shutdown(void);

/* Number of pool threads (0 when not started) and of jobs waiting, for /metrics. */
int ps_work_workers(void);
int ps_work_queued(void);

#endif
