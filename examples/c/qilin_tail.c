/* qilin_tail: a small C reader of a qilin-feed segment, built on the generated qilin_shm.h.
 *
 * Build (from the repository root):
 *   gcc -std=c11 -O2 -Wall -Wextra -I shm-layout/include examples/c/qilin_tail.c -o qilin_tail
 * or as C++:
 *   g++ -std=c++17 -O2 -Wall -Wextra -I shm-layout/include -x c++ examples/c/qilin_tail.c -o qilin_tail
 *
 * Usage:
 *   qilin_tail [SEGMENT] [--from oldest|newest|SEQ] [--count N] [--until SEQ] [--format text|compare]
 *              [--wait-ms MS] [--idle-exit-ms MS] [--pause-every N --pause-us US|--pause-lag L]
 *              [--lap-headroom N] [--latest ID]
 *
 *   SEGMENT         segment file (default /dev/shm/qilin)
 *   --from          where to start: oldest in the ring, newest (default: only new ticks) or a sequence
 *   --count N       exit after N ticks
 *   --until SEQ     exit once every sequence up to SEQ has been read or reported lost
 *   --format        text (default: one readable row per tick) or compare (canonical, exact: doubles as
 *                   their IEEE 754 bit pattern in hex; used by core/tests/reader_c.rs)
 *   --wait-ms MS    retry opening for up to MS milliseconds (the core may not have created it yet)
 *   --idle-exit-ms  exit when nothing new arrived for MS milliseconds
 *   --pause-every N, --pause-us US
 *                   sleep US microseconds after every N ticks (a deliberately slow reader, to be lapped)
 *   --pause-every N, --pause-lag L
 *                   after every N ticks, wait until the writer is L sequences ahead (or has passed
 *                   --until): with L > ring slots the reader is certain to be lapped (tests)
 *   --lap-headroom N
 *                   after a lap, resume N slots past the oldest sequence still in the ring (default
 *                   ring_slots / QILIN_LAP_HEADROOM_DIVISOR; 0: at the oldest; see qilin_set_lap_headroom)
 *   --latest ID     print the last value of instrument ID ("rb2605") and exit
 *
 * Output lines: a tick; `gap FIRST LAST` when sequences FIRST..=LAST were overwritten before they were
 * read (or skipped as lap headroom after them); `epoch PREVIOUS CURRENT` when the core restarted. Errors go to stderr as `qilin_tail: <why>`,
 * exit status 2 (1 for bad usage).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep, O_CLOEXEC under -std=c11 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qilin_shm.h"

static void usage(void) {
    fprintf(stderr,
            "usage: qilin_tail [SEGMENT] [--from oldest|newest|SEQ] [--count N] [--until SEQ] "
            "[--format text|compare] [--wait-ms MS] [--idle-exit-ms MS] "
            "[--pause-every N --pause-us US|--pause-lag L] [--lap-headroom N] [--latest ID]\n");
    exit(1);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_us(uint64_t us) {
    struct timespec ts;
    ts.tv_sec = (time_t)(us / 1000000u);
    ts.tv_nsec = (long)(us % 1000000u) * 1000;
    nanosleep(&ts, NULL);
}

static uint64_t number(const char *text) {
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (*text == 0 || *end != 0) usage();
    return (uint64_t)v;
}

static unsigned long long bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return (unsigned long long)u;
}

static void print_id(const uint8_t *id, size_t len) {
    size_t n = 0;
    while (n < len && id[n] != 0) n++;
    fwrite(id, 1, n, stdout);
}

/* The canonical line: every field but the reserved ones, integers in decimal, doubles as bits. Must
 * match `canonical` in core/tests/reader_c.rs. */
static void print_compare(const qilin_tick_record_t *t) {
    int i;
    printf("tick %llu idx=%u id=", (unsigned long long)t->sequence, (unsigned)t->instrument_index);
    print_id(t->instrument_id, sizeof t->instrument_id);
    printf(" ex=%u src=%u q=%u td=%u ad=%u ms=%u xt=%lld rx=%lld px=%lld", (unsigned)t->exchange,
           (unsigned)t->source, (unsigned)t->quality, (unsigned)t->trading_day, (unsigned)t->action_day,
           (unsigned)t->update_time_ms, (long long)t->exchange_time_ns, (long long)t->receive_ns,
           (long long)t->publish_ns);
#define F(name) printf(" " #name "=%016llx", bits(t->name))
    F(last_price);
    F(pre_settlement_price);
    F(pre_close_price);
    F(pre_open_interest);
    F(open_price);
    F(highest_price);
    F(lowest_price);
    printf(" volume=%lld", (long long)t->volume);
    F(turnover);
    F(open_interest);
    F(close_price);
    F(settlement_price);
    F(upper_limit_price);
    F(lower_limit_price);
    F(pre_delta);
    F(curr_delta);
    F(average_price);
    F(banding_upper_price);
    F(banding_lower_price);
#undef F
    for (i = 0; i < 5; i++) printf("%s%016llx", i ? "," : " bid_price=", bits(t->bid_price[i]));
    for (i = 0; i < 5; i++) printf("%s%016llx", i ? "," : " ask_price=", bits(t->ask_price[i]));
    for (i = 0; i < 5; i++) printf("%s%d", i ? "," : " bid_volume=", (int)t->bid_volume[i]);
    for (i = 0; i < 5; i++) printf("%s%d", i ? "," : " ask_volume=", (int)t->ask_volume[i]);
    putchar('\n');
}

static void print_text(const qilin_tick_record_t *t) {
    unsigned s = t->update_time_ms / 1000u;
    printf("%10llu %-10.32s %-5s %u %02u:%02u:%02u.%03u %12.3f %12.3f x%-5d %12.3f x%-5d %10lld\n",
           (unsigned long long)t->sequence, (const char *)t->instrument_id, qilin_exchange_name(t->exchange),
           (unsigned)t->action_day, s / 3600u, s / 60u % 60u, s % 60u, (unsigned)(t->update_time_ms % 1000u),
           t->last_price, t->bid_price[0], (int)t->bid_volume[0], t->ask_price[0], (int)t->ask_volume[0],
           (long long)t->volume);
}

int main(int argc, char **argv) {
    const char *path = "/dev/shm/qilin", *from = "newest", *format = "text", *latest = NULL;
    uint64_t count = 0, until = 0, wait_ms = 0, idle_exit_ms = 0, pause_every = 0, pause_us = 0, pause_lag = 0;
    uint64_t ticks = 0, first = 0, last = 0, idle_since, deadline, lap_headroom = 0;
    int compare, i, rc, set_headroom = 0;
    char err[1024];
    qilin_reader_t r;
    qilin_tick_record_t t;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            path = a;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(a, "--from") == 0) from = argv[++i];
        else if (strcmp(a, "--count") == 0) count = number(argv[++i]);
        else if (strcmp(a, "--until") == 0) until = number(argv[++i]);
        else if (strcmp(a, "--format") == 0) format = argv[++i];
        else if (strcmp(a, "--wait-ms") == 0) wait_ms = number(argv[++i]);
        else if (strcmp(a, "--idle-exit-ms") == 0) idle_exit_ms = number(argv[++i]);
        else if (strcmp(a, "--pause-every") == 0) pause_every = number(argv[++i]);
        else if (strcmp(a, "--pause-us") == 0) pause_us = number(argv[++i]);
        else if (strcmp(a, "--pause-lag") == 0) pause_lag = number(argv[++i]);
        else if (strcmp(a, "--latest") == 0) latest = argv[++i];
        else if (strcmp(a, "--lap-headroom") == 0) {
            lap_headroom = number(argv[++i]);
            set_headroom = 1;
        }
        else usage();
    }
    if (strcmp(format, "compare") != 0 && strcmp(format, "text") != 0) usage();
    compare = strcmp(format, "compare") == 0;

    deadline = now_ms() + wait_ms;
    while (qilin_open(path, &r, err, sizeof err) != 0) {
        if (now_ms() >= deadline) {
            fprintf(stderr, "qilin_tail: %s\n", err);
            return 2;
        }
        sleep_us(1000);
    }

    if (latest != NULL) {
        int64_t index = qilin_find_instrument(&r, latest);
        if (index < 0) {
            fprintf(stderr, "qilin_tail: instrument %s is not in the directory of %s\n", latest, path);
            return 2;
        }
        rc = qilin_latest(&r, (uint32_t)index, &t);
        if (rc == QILIN_LATEST_FOUND) compare ? print_compare(&t) : print_text(&t);
        else if (rc == QILIN_LATEST_NONE) printf("none\n");
        else {
            fprintf(stderr, "qilin_tail: last value of %s kept changing while being read\n", latest);
            return 2;
        }
        qilin_close(&r);
        return 0;
    }

    if (set_headroom) qilin_set_lap_headroom(&r, lap_headroom);
    if (strcmp(from, "oldest") == 0) qilin_seek_oldest(&r);
    else if (strcmp(from, "newest") == 0) qilin_seek_newest(&r);
    else qilin_seek_sequence(&r, number(from));

    idle_since = now_ms();
    for (;;) {
        if (until != 0 && qilin_next_sequence(&r) > until) break;
        if (count != 0 && ticks >= count) break;
        switch (qilin_try_next(&r, &t, &first, &last)) {
        case QILIN_TICK:
            ticks++;
            compare ? print_compare(&t) : print_text(&t);
            if (pause_every != 0 && ticks % pause_every == 0) {
                if (pause_us != 0) sleep_us(pause_us);
                while (pause_lag != 0 && qilin_write_cursor(&r) < qilin_next_sequence(&r) + pause_lag &&
                       (until == 0 || qilin_write_cursor(&r) < until))
                    sleep_us(200);
            }
            idle_since = 0;
            break;
        case QILIN_GAP:
            printf("gap %llu %llu\n", (unsigned long long)first, (unsigned long long)last);
            idle_since = 0;
            break;
        case QILIN_NEW_EPOCH:
            printf("epoch %llu %llu\n", (unsigned long long)first, (unsigned long long)last);
            idle_since = 0;
            break;
        default: /* QILIN_EMPTY */
            if (idle_exit_ms != 0) {
                uint64_t now = now_ms();
                if (idle_since == 0) idle_since = now;
                else if (now - idle_since >= idle_exit_ms) goto done;
            }
            break;
        }
    }
done:
    fflush(stdout);
    qilin_close(&r);
    return 0;
}
