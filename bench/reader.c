/*
 * bench.fanout's native reader (--reader native): receives a publish phase's deliveries on sockets the Python
 * load generator opened and subscribed, so that reading them costs the load generator a fraction of a core.
 *
 * Why C: on a 2-core machine the Python reader needs most of a core for ~150,000 deliveries/s (a data_received
 * call, a JSON parse and a dict per delivery); a server with two workers then competes with it for the second
 * core and cannot show what a second core gives (bench/README.md, --workers). This reader does one read per
 * readable socket and finds each publication's {"t":SENT_NS,"i":INDEX} by a byte search: the transport's framing
 * (HTTP chunks, SSE lines, server-to-client WebSocket frames, all JSON) never holds that sequence itself.
 *
 *   reader --expected N --messages M --timeout SECONDS --out FILE [--gather-ms MS] FD...
 *
 * --gather-ms pauses after each poll (see the loop).
 *
 * It prints "ready" once it watches every FD, reads until N deliveries have come (or the timeout passes, or every
 * socket ended), then writes FILE: int64 received, first, last (CLOCK_REALTIME ns), ended (sockets that ended),
 * then min(received, N) latencies (ns), M latest latencies by publication index and the deliveries of each FD in
 * the order given, all native-endian int64.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define CARRY 96          /* longest unfinished {"t":...,"i":... kept from one read to the next */
#define READ_SIZE (1 << 18)
#define EVENTS 1024

static const char PATTERN[] = "{\"t\":";

struct conn {
    int fd;
    int carried;
    int64_t received;
    char carry[CARRY];
};

static int64_t nowNs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define CUT (-2)       /* the read ended inside what was being parsed: the next read finishes it */
#define NOT_DIGITS (-1)

/* The digits at *p (advanced past them); CUT when the buffer ends first, NOT_DIGITS when there are none. */
static int64_t digits(const char **p, const char *end) {
    const char *q = *p;
    int64_t value = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        value = value * 10 + (*q - '0');
        q++;
    }
    if (q == end) {
        return CUT;
    }
    if (q == *p) {
        return NOT_DIGITS;
    }
    *p = q;
    return value;
}

/* At q: ,"i": (1), something else (0), or the end of the buffer inside it (CUT). */
static int indexKey(const char *q, const char *end) {
    static const char KEY[] = ",\"i\":";
    size_t have = (size_t)(end - q), want = sizeof KEY - 1;
    if (have < want) {
        return memcmp(q, KEY, have) == 0 ? CUT : 0;
    }
    return memcmp(q, KEY, want) == 0;
}

int main(int argc, char **argv) {
    int64_t expected = 0, messages = 0;
    double timeout = 60, gather = 0;
    const char *out = NULL;
    int first = 1;
    while (first < argc && strncmp(argv[first], "--", 2) == 0 && first + 1 < argc) {
        if (!strcmp(argv[first], "--expected")) expected = atoll(argv[first + 1]);
        else if (!strcmp(argv[first], "--messages")) messages = atoll(argv[first + 1]);
        else if (!strcmp(argv[first], "--timeout")) timeout = atof(argv[first + 1]);
        else if (!strcmp(argv[first], "--out")) out = argv[first + 1];
        else if (!strcmp(argv[first], "--gather-ms")) gather = atof(argv[first + 1]);
        else break;
        first += 2;
    }
    int count = argc - first;
    if (expected <= 0 || messages <= 0 || out == NULL || count <= 0) {
        fprintf(stderr, "usage: reader --expected N --messages M --timeout S --out FILE FD...\n");
        return 2;
    }
    struct conn *conns = calloc((size_t)count, sizeof *conns);
    int64_t *latencies = malloc((size_t)expected * sizeof *latencies);
    int64_t *lastPer = calloc((size_t)messages, sizeof *lastPer);
    char *buffer = malloc(CARRY + READ_SIZE);
    int poll = epoll_create1(0);
    if (!conns || !latencies || !lastPer || !buffer || poll < 0) {
        perror("reader: setup");
        return 2;
    }
    for (int k = 0; k < count; k++) {
        conns[k].fd = atoi(argv[first + k]);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[k]};
        if (epoll_ctl(poll, EPOLL_CTL_ADD, conns[k].fd, &ev) < 0) {
            perror("reader: epoll_ctl");
            return 2;
        }
    }
    printf("ready\n");
    fflush(stdout);

    int64_t received = 0, firstAt = 0, lastAt = 0, ended = 0;
    int64_t deadline = nowNs() + (int64_t)(timeout * 1e9);
    struct epoll_event events[EVENTS];
    while (received < expected && ended < count) {
        int64_t left = deadline - nowNs();
        if (left <= 0) break;
        int n = epoll_wait(poll, events, EVENTS, (int)(left / 1000000) + 1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("reader: epoll_wait");
            break;
        }
        if (gather > 0 && n > 0) {
            /* Let more arrive before reading: each read is a trip through the TCP stack (and an ACK on loopback)
             * that costs about as much as the server's send, so fewer reads leave the cores to the server. */
            struct timespec pause = {0, (long)(gather * 1e6)};
            nanosleep(&pause, NULL);
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            memcpy(buffer, c->carry, (size_t)c->carried);
            ssize_t got = read(c->fd, buffer + c->carried, READ_SIZE);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                epoll_ctl(poll, EPOLL_CTL_DEL, c->fd, NULL);
                ended++;
                continue;
            }
            int64_t now = nowNs();
            const char *p = buffer, *end = buffer + c->carried + got, *keep = NULL;
            const char *hit;
            while ((hit = memmem(p, (size_t)(end - p), PATTERN, sizeof PATTERN - 1)) != NULL) {
                const char *q = hit + sizeof PATTERN - 1;
                int64_t sent = digits(&q, end), index = NOT_DIGITS;
                int key = sent >= 0 ? indexKey(q, end) : 0;
                if (key == 1) {
                    q += 5;
                    index = digits(&q, end);
                    if (index >= 0) {
                        int64_t latency = now - sent;
                        if (received < expected) latencies[received] = latency;
                        if (index < messages && latency > lastPer[index]) lastPer[index] = latency;
                        received++;
                        c->received++;
                        if (!firstAt) firstAt = now;
                        lastAt = now;
                        p = q;
                        continue;
                    }
                }
                if ((sent == CUT || key == CUT || index == CUT) && end - hit < CARRY) {
                    keep = hit; /* cut by the end of this read: finished by the next one */
                    break;
                }
                p = hit + 1; /* not a publication's data after all */
            }
            if (keep == NULL) {
                /* A pattern's start may lie at the very end: keep what could be its beginning. */
                ptrdiff_t tail = (ptrdiff_t)(sizeof PATTERN - 1);
                keep = end - (end - p < tail ? end - p : tail);
            }
            c->carried = (int)(end - keep);
            memmove(c->carry, keep, (size_t)c->carried);
        }
    }
    FILE *f = fopen(out, "wb");
    if (!f) {
        perror("reader: results file");
        return 2;
    }
    int64_t stored = received < expected ? received : expected;
    int64_t head[4] = {received, firstAt, lastAt, ended};
    fwrite(head, sizeof head[0], 4, f);
    fwrite(latencies, sizeof latencies[0], (size_t)stored, f);
    fwrite(lastPer, sizeof lastPer[0], (size_t)messages, f);
    for (int k = 0; k < count; k++) {
        fwrite(&conns[k].received, sizeof conns[k].received, 1, f);
    }
    fclose(f);
    return 0;
}
