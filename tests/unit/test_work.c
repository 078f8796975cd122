/* test_work.c - the worker pool: jobs run on pool threads and complete on the loop that
 * asked, the loop keeps serving its timers meanwhile, a full queue refuses, shutdown cancels
 * what still waits, and nothing leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "polyshop/error.h"
#include "polyshop/work.h"

/* Fails the test instead of hanging when a completion never comes. Not a timing check: the
 * jobs here take microseconds and the guard is a minute. */
static void guard_cb(evutil_socket_t fd, short what, void *arg) {
  fail_msg("the loop waited a minute for completions");
}

static struct event_base *new_base(struct event **guard) {
  evthread_use_pthreads(); /* before the base, as a service's start does */
  struct event_base *base = event_base_new();
  assert_non_null(base);
  *guard = evtimer_new(base, guard_cb, NULL);
  struct timeval tv = {60, 0};
  evtimer_add(*guard, &tv);
  return base;
}

static void end_base(struct event_base *base, struct event *guard) {
  ps_work_loop_done(base);
  event_free(guard);
  event_base_free(base);
  ps_work_shutdown();
}

typedef struct {
  int id, result, after_status, after_runs, work_runs;
  pthread_t work_thread;
  struct event_base *base;
} job_t;

static pthread_t loop_thread;
static int completed, expected;

static void double_cb(void *arg) {
  job_t *j = arg;
  j->work_thread = pthread_self();
  j->result = j->id * 2;
  j->work_runs++;
}

static void after_cb(void *arg, int status) {
  job_t *j = arg;
  assert_true(pthread_equal(pthread_self(), loop_thread));
  j->after_status = status;
  j->after_runs++;
  if (++completed == expected) event_base_loopbreak(j->base);
}

static void test_thousand_jobs_complete_on_their_loop(void **state) {
  struct event *guard;
  struct event_base *base = new_base(&guard);
  loop_thread = pthread_self();
  enum { N = 1000 };
  job_t *jobs = calloc(N, sizeof(*jobs));
  completed = 0;
  expected = N;
  for (int i = 0; i < N; i++) {
    jobs[i] = (job_t){.id = i + 1, .base = base};
    assert_int_equal(ps_work_queue(base, double_cb, after_cb, &jobs[i]), 0);
  }
  assert_true(ps_work_workers() >= 1);
  event_base_dispatch(base);
  assert_int_equal(completed, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(jobs[i].after_runs, 1);
    assert_int_equal(jobs[i].after_status, 0);
    assert_int_equal(jobs[i].result, 2 * (i + 1)); /* after_cb sees what work_cb made */
    assert_false(pthread_equal(jobs[i].work_thread, loop_thread));
  }
  free(jobs);
  end_base(base, guard);
}

static atomic_int ticks;

static void tick_cb(evutil_socket_t fd, short what, void *arg) { atomic_fetch_add(&ticks, 1); }

/* Sleeps on its pool thread until the loop's timer has fired three times: only a loop that
 * is not waiting for this job gets there. */
static void sleepy_cb(void *arg) {
  job_t *j = arg;
  while (atomic_load(&ticks) < 3) usleep(1000);
  j->work_runs++;
}

static void test_loop_runs_timers_while_a_job_sleeps(void **state) {
  struct event *guard;
  struct event_base *base = new_base(&guard);
  loop_thread = pthread_self();
  atomic_store(&ticks, 0);
  struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
  struct timeval tv = {0, 2000};
  event_add(tick, &tv);
  job_t j = {.base = base};
  completed = 0;
  expected = 1;
  assert_int_equal(ps_work_queue(base, sleepy_cb, after_cb, &j), 0);
  event_base_dispatch(base);
  assert_int_equal(j.work_runs, 1);
  assert_int_equal(j.after_status, 0);
  assert_true(atomic_load(&ticks) >= 3);
  event_free(tick);
  end_base(base, guard);
}

static atomic_int gate, gated_started;

static void gated_cb(void *arg) {
  job_t *j = arg;
  atomic_store(&gated_started, 1);
  while (!atomic_load(&gate)) usleep(500);
  j->work_runs++;
}

static void never_cb(void *arg, int status) { fail_msg("a refused job's callback ran"); }

static void test_full_queue_refuses(void **state) {
  struct event *guard;
  struct event_base *base = new_base(&guard);
  loop_thread = pthread_self();
  assert_int_equal(ps_work_start(1, 2), 0);
  assert_int_equal(ps_work_start(1, 2), PS_EEXISTS);
  atomic_store(&gate, 0);
  atomic_store(&gated_started, 0);
  job_t a = {.base = base}, b = {.id = 2, .base = base}, c = {.id = 3, .base = base}, d = {0};
  completed = 0;
  expected = 3;
  assert_int_equal(ps_work_queue(base, gated_cb, after_cb, &a), 0);
  while (!atomic_load(&gated_started)) usleep(200); /* the one worker holds a */
  assert_int_equal(ps_work_queue(base, double_cb, after_cb, &b), 0);
  assert_int_equal(ps_work_queue(base, double_cb, after_cb, &c), 0);
  assert_int_equal(ps_work_queued(), 2);
  assert_int_equal(ps_work_queue(base, double_cb, never_cb, &d), PS_ELIMIT);
  assert_int_equal(ps_work_queue(NULL, double_cb, never_cb, &d), PS_EINVAL);
  assert_int_equal(ps_work_queue(base, NULL, never_cb, &d), PS_EINVAL);
  atomic_store(&gate, 1);
  event_base_dispatch(base);
  assert_int_equal(completed, 3);
  assert_int_equal(b.result, 4);
  assert_int_equal(c.result, 6);
  assert_int_equal(d.work_runs, 0);
  end_base(base, guard);
}

static void *shutdown_main(void *arg) {
  ps_work_shutdown();
  return NULL;
}

static void test_shutdown_cancels_queued_work(void **state) {
  struct event *guard;
  struct event_base *base = new_base(&guard);
  loop_thread = pthread_self();
  assert_int_equal(ps_work_start(1, 0), 0);
  atomic_store(&gate, 0);
  atomic_store(&gated_started, 0);
  job_t a = {.base = base}, b = {.id = 2, .base = base}, c = {.id = 3, .base = base};
  completed = 0;
  expected = 3;
  assert_int_equal(ps_work_queue(base, gated_cb, after_cb, &a), 0);
  while (!atomic_load(&gated_started)) usleep(200);
  assert_int_equal(ps_work_queue(base, double_cb, after_cb, &b), 0);
  assert_int_equal(ps_work_queue(base, double_cb, after_cb, &c), 0);
  pthread_t stopper;
  pthread_create(&stopper, NULL, shutdown_main, NULL);
  while (ps_work_queued() > 0) usleep(200); /* shutdown took b and c off the queue */
  atomic_store(&gate, 1);                    /* a may finish; shutdown joins its worker */
  pthread_join(stopper, NULL);
  assert_int_equal(ps_work_workers(), 0);
  event_base_dispatch(base); /* the cancellations arrive on this loop */
  assert_int_equal(completed, 3);
  assert_int_equal(a.after_status, 0);
  assert_int_equal(a.work_runs, 1);
  assert_int_equal(b.after_status, PS_ECANCELED);
  assert_int_equal(c.after_status, PS_ECANCELED);
  assert_int_equal(b.work_runs + c.work_runs, 0);
  end_base(base, guard);
}

/* A loop that stops with a job still queued gets its cancellation in ps_work_loop_done, on
 * the loop's own thread, and its running job's completion too. */
static void test_loop_done_delivers_what_is_left(void **state) {
  struct event *guard;
  struct event_base *base = new_base(&guard);
  loop_thread = pthread_self();
  assert_int_equal(ps_work_start(1, 0), 0);
  atomic_store(&gate, 0);
  atomic_store(&gated_started, 0);
  job_t a = {.base = base}, b = {.id = 2, .base = base};
  completed = 0;
  expected = -1;
  assert_int_equal(ps_work_queue(base, gated_cb, after_cb, &a), 0);
  while (!atomic_load(&gated_started)) usleep(200);
  assert_int_equal(ps_work_queue(base, double_cb, after_cb, &b), 0);
  atomic_store(&gate, 1);
  ps_work_loop_done(base); /* never dispatched: everything arrives here */
  assert_int_equal(a.after_runs, 1);
  assert_int_equal(b.after_runs, 1);
  assert_int_equal(a.after_status, 0);
  assert_true(b.after_status == 0 || b.after_status == PS_ECANCELED);
  end_base(base, guard);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thousand_jobs_complete_on_their_loop),
      cmocka_unit_test(test_loop_runs_timers_while_a_job_sleeps),
      cmocka_unit_test(test_full_queue_refuses),
      cmocka_unit_test(test_shutdown_cancels_queued_work),
      cmocka_unit_test(test_loop_done_delivers_what_is_left),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
