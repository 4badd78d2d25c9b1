/* latency_reader: the C strategy reader of the qilin-bench end-to-end series.
 *
 * Built by qilin-bench at run time with the system C compiler:
 *   cc -std=c11 -O2 -Wall -Wextra -I shm-layout/include benches/c/latency_reader.c -o latency_reader
 *
 * Usage: latency_reader SEGMENT CPU WARMUP COUNT [due]
 *   Pins itself to CPU, opens SEGMENT at the newest sequence, prints "ready", then spins on
 *   qilin_try_next. For each tick after the first WARMUP it keeps clock_gettime(CLOCK_REALTIME) minus
 *   the record's receive_ns, or with `due` minus the due time the harness's paced UDP sender
 *   carries in curr_delta (the 64 bits of the double are the due time in ns). After
 *   WARMUP + COUNT sequences (read or lost) it prints "ticks N lost L" and then one latency in ns
 *   per line.
 */
#define _GNU_SOURCE /* sched_setaffinity */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qilin_shm.h"

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    qilin_reader_t r;
    qilin_tick_record_t t;
    char err[256];
    uint64_t warmup, count, seen = 0, kept = 0, lost = 0, first, last, i;
    int64_t *lat;
    int due;
    cpu_set_t set;
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "due") == 0)) {
        fprintf(stderr, "usage: latency_reader SEGMENT CPU WARMUP COUNT [due]\n");
        return 1;
    }
    due = argc == 6;
    CPU_ZERO(&set);
    CPU_SET(atoi(argv[2]), &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("latency_reader: sched_setaffinity");
    warmup = strtoull(argv[3], NULL, 10);
    count = strtoull(argv[4], NULL, 10);
    lat = malloc((count + 1) * sizeof *lat);
    if (!lat) return 2;
    if (qilin_open(argv[1], &r, err, sizeof err) != 0) {
        fprintf(stderr, "latency_reader: %s\n", err);
        return 2;
    }
    qilin_seek_newest(&r);
    printf("ready\n");
    fflush(stdout);
    while (seen < warmup + count) {
        int rc = qilin_try_next(&r, &t, &first, &last);
        if (rc == QILIN_TICK) {
            int64_t now = now_ns();
            if (seen >= warmup) {
                int64_t since = t.receive_ns;
                if (due) memcpy(&since, &t.curr_delta, sizeof since);
                if (since < 1000000000000000000LL || since >= 4000000000000000000LL) {
                    fprintf(stderr, "latency_reader: tick %llu carries no due time in curr_delta\n",
                            (unsigned long long)seen);
                    return 3;
                }
                lat[kept++] = now - since;
            }
            seen++;
        } else if (rc == QILIN_GAP) {
            uint64_t n = last - first + 1, left = warmup + count - seen;
            lost += n < left ? n : left;
            seen += n;
        }
    }
    printf("ticks %llu lost %llu\n", (unsigned long long)kept, (unsigned long long)lost);
    for (i = 0; i < kept; i++) printf("%lld\n", (long long)lat[i]);
    free(lat);
    qilin_close(&r);
    return 0;
}
