/* work.c - the worker pool (see work.h): a few threads taking jobs from one bounded queue,
 * and one "done" list per event_base whose event the pool thread makes active, so the loop
 * runs the after_cb of finished jobs without ever waiting for them. One mutex guards the
 * queue, the done lists and the list of bases; jobs are coarse (a hash, a blocking call), so
 * it is taken a few times per job, never per byte of work. */
#include "polyshop/work.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <unistd.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"

typedef struct notifier notifier_t;

typedef struct job {
  void (*work_cb)(void *arg);
  void (*after_cb)(void *arg, int status);
  void *arg;
  int status;
  notifier_t *n;
  struct job *next;
} job_t;

/* One per event_base that queued work; owned by the pool, freed by ps_work_loop_done. */
struct notifier {
  struct event_base *base;
  struct event *ev;       /* made active when done goes from empty to non-empty */
  job_t *done, *done_tail;
  int inflight;           /* jobs of this base queued or running */
  notifier_t *next;
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t wake; /* a job was queued, or the pool stops */
  pthread_cond_t idle; /* some base's inflight dropped to 0 */
  int started, stopping, nworkers, queue_max, nqueued;
  pthread_t threads[PS_WORK_MAX_WORKERS];
  job_t *head, *tail;
  notifier_t *bases;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .idle = PTHREAD_COND_INITIALIZER};

/* Hands a finished (or canceled) job to its loop. Pool lock held. The base lock is taken
 * inside event_active under the pool lock; no path takes them the other way round. */
static void deliver_locked(job_t *j, int status) {
  notifier_t *n = j->n;
  j->status = status;
  j->next = NULL;
  int was_empty = n->done == NULL;
  if (n->done_tail)
    n->done_tail->next = j;
  else
    n->done = j;
  n->done_tail = j;
  if (--n->inflight == 0) pthread_cond_broadcast(&pool.idle);
  if (was_empty) event_active(n->ev, EV_READ, 0);
}

static void run_done(job_t *j) {
  while (j) {
    job_t *next = j->next;
    j->after_cb(j->arg, j->status);
    ps_free(j);
    j = next;
  }
}

/* On the loop of n->base: runs the after_cb of every job delivered so far. */
static void notify_cb(evutil_socket_t fd, short what, void *arg) {
  notifier_t *n = arg;
  pthread_mutex_lock(&pool.mu);
  job_t *j = n->done;
  n->done = n->done_tail = NULL;
  pthread_mutex_unlock(&pool.mu);
  run_done(j);
}

static void *worker_main(void *arg) {
  pthread_mutex_lock(&pool.mu);
  for (;;) {
    while (!pool.head && !pool.stopping) pthread_cond_wait(&pool.wake, &pool.mu);
    job_t *j = pool.head;
    if (!j) break; /* stopping, and shutdown already canceled what was queued */
    pool.head = j->next;
    if (!pool.head) pool.tail = NULL;
    pool.nqueued--;
    pthread_mutex_unlock(&pool.mu);
    j->work_cb(j->arg);
    pthread_mutex_lock(&pool.mu);
    deliver_locked(j, 0);
  }
  pthread_mutex_unlock(&pool.mu);
  return NULL;
}

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static void threads_on(void) { evthread_use_pthreads(); }

/* Pool lock held. */
static int start_locked(int workers, int queue_max) {
  if (workers == 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    workers = cores < 1 ? 1 : cores > PS_WORK_MAX_WORKERS ? PS_WORK_MAX_WORKERS : (int)cores;
  }
  if (queue_max == 0) queue_max = PS_WORK_DEFAULT_QUEUE;
  if (workers < 1 || workers > PS_WORK_MAX_WORKERS || queue_max < 1) return PS_EINVAL;
  pool.queue_max = queue_max;
  pool.nworkers = 0;
  for (int i = 0; i < workers; i++) {
    if (pthread_create(&pool.threads[i], NULL, worker_main, NULL)) break;
    pool.nworkers++;
  }
  if (pool.nworkers == 0) return PS_EINTERNAL;
  pool.started = 1;
  return 0;
}

int ps_work_start(int workers, int queue_max) {
  pthread_once(&threads_once, threads_on);
  pthread_mutex_lock(&pool.mu);
  int rc = pool.started ? PS_EEXISTS : start_locked(workers, queue_max);
  pthread_mutex_unlock(&pool.mu);
  return rc;
}

/* Pool lock held. The notifier of base, made on first use (on base's own loop thread). */
static notifier_t *notifier_locked(struct event_base *base) {
  for (notifier_t *n = pool.bases; n; n = n->next)
    if (n->base == base) return n;
  notifier_t *n = ps_calloc(1, sizeof(*n));
  n->base = base;
  n->ev = event_new(base, -1, 0, notify_cb, n);
  if (!n->ev) {
    ps_free(n);
    return NULL;
  }
  n->next = pool.bases;
  pool.bases = n;
  return n;
}

int ps_work_queue(struct event_base *base, void (*work_cb)(void *arg),
                  void (*after_cb)(void *arg, int status), void *arg) {
  if (!base || !work_cb || !after_cb) return PS_EINVAL;
  pthread_once(&threads_once, threads_on);
  pthread_mutex_lock(&pool.mu);
  int rc = 0;
  notifier_t *n = NULL;
  if (pool.stopping)
    rc = PS_ECANCELED;
  else if (!pool.started && (rc = start_locked(0, 0)) != 0)
    ; /* rc says why */
  else if (pool.nqueued >= pool.queue_max)
    rc = PS_ELIMIT;
  else if (!(n = notifier_locked(base)))
    rc = PS_ENOMEM;
  if (rc == 0) {
    job_t *j = ps_calloc(1, sizeof(*j));
    *j = (job_t){.work_cb = work_cb, .after_cb = after_cb, .arg = arg, .n = n};
    if (pool.tail)
      pool.tail->next = j;
    else
      pool.head = j;
    pool.tail = j;
    pool.nqueued++;
    n->inflight++;
    pthread_cond_signal(&pool.wake);
  }
  pthread_mutex_unlock(&pool.mu);
  return rc;
}

/* Pool lock held: cancels the queued jobs of n (every base's when n is NULL). */
static void cancel_queued_locked(notifier_t *n) {
  job_t **pp = &pool.head;
  pool.tail = NULL;
  while (*pp) {
    job_t *j = *pp;
    if (n && j->n != n) {
      pool.tail = j;
      pp = &j->next;
      continue;
    }
    *pp = j->next;
    pool.nqueued--;
    deliver_locked(j, PS_ECANCELED);
  }
}

void ps_work_loop_done(struct event_base *base) {
  pthread_mutex_lock(&pool.mu);
  notifier_t **pp = &pool.bases;
  while (*pp && (*pp)->base != base) pp = &(*pp)->next;
  notifier_t *n = *pp;
  if (!n) {
    pthread_mutex_unlock(&pool.mu);
    return;
  }
  cancel_queued_locked(n);
  /* A job of this loop on a pool thread right now: its after_cb must still run here. */
  while (n->inflight > 0) pthread_cond_wait(&pool.idle, &pool.mu);
  *pp = n->next;
  job_t *j = n->done;
  pthread_mutex_unlock(&pool.mu);
  event_free(n->ev);
  ps_free(n);
  run_done(j);
}

void ps_work_shutdown(void) {
  pthread_mutex_lock(&pool.mu);
  if (!pool.started || pool.stopping) {
    pthread_mutex_unlock(&pool.mu);
    return;
  }
  pool.stopping = 1;
  cancel_queued_locked(NULL);
  pthread_cond_broadcast(&pool.wake);
  int nworkers = pool.nworkers;
  pthread_mutex_unlock(&pool.mu);
  for (int i = 0; i < nworkers; i++) pthread_join(pool.threads[i], NULL);
  pthread_mutex_lock(&pool.mu);
  pool.started = pool.stopping = pool.nworkers = 0;
  pthread_mutex_unlock(&pool.mu);
}

int ps_work_workers(void) {
  pthread_mutex_lock(&pool.mu);
  int n = pool.nworkers;
  pthread_mutex_unlock(&pool.mu);
  return n;
}

int ps_work_queued(void) {
  pthread_mutex_lock(&pool.mu);
  int n = pool.nqueued;
  pthread_mutex_unlock(&pool.mu);
  return n;
}
