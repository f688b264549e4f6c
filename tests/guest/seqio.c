/* seqio: a writer of sequence-numbered, durable 4 KiB blocks and its verifier.
 *
 *   seqio write DEV [--rate N] [--count N] [--run-id X] [--retry-s S] [--resume 1]
 *   seqio verify DEV [--acked FILE] [--run-id X]
 *
 * write: sequence s = 1, 2, 3, ... goes to block (s-1) mod N (N = blocks of
 * DEV) with O_DIRECT|O_DSYNC, so a write that returned is durable: only then
 * is "SEQIO ACK <seq> <mono_ns> <latency_us>" printed (mono_ns: the guest's
 * CLOCK_MONOTONIC when the write was submitted, also stored in the block).
 * --rate: writes per second, 0 = as fast as possible; --count: stop after N
 * writes in all (the last sequence), 0 = never. A failed write prints "SEQIO ERR <seq> <errno>" and is
 * retried, the same sequence, every 100 ms for --retry-s seconds (default 60),
 * then seqio gives up (exit 2): a sequence is never skipped, so the disk
 * always holds one in-order stream. --resume 1 goes on with the run already on
 * DEV (--run-id's, else the one in its first block) after its highest intact
 * sequence, so a guest restarted after a failover extends the same stream;
 * "SEQIO START run=<id> blocks=<N> from=<first seq>" says where it starts.
 *
 * verify: reads every block, takes the highest sequence M of the run and
 * checks that block i holds the largest s <= M with (s-1) mod N == i, intact,
 * and that every sequence acked in FILE (the serial log: ACK lines after the
 * run's START line) is <= M. No record of the run at all is a failure too. One JSON line on stdout, one line per problem on
 * stderr; exit 0 when all is right, 1 when not, 2 on a usage or I/O error.
 *
 * Records are in native byte order: writer and verifier are both x86_64. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RECORD_SIZE 4096
#define WORDS (RECORD_SIZE / 8)
#define LIST_CAP 20
static const char MAGIC[8] = {'G', 'G', 'S', 'E', 'Q', 'I', 'O', '1'};

struct header {
    char magic[8];
    uint64_t run_id, seq, block, blocks, mono_ns;
};
#define FILL_FIRST (sizeof(struct header) / 8)  /* fill words up to the checksum word */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Different for every (run, seq), so a block left from an older write differs everywhere. */
static uint64_t fill_word(uint64_t run_id, uint64_t seq, unsigned k)
{
    return splitmix64(run_id ^ (seq << 12) ^ k);
}

/* FNV-1a over 64-bit words: every word but the last, which holds it. */
static uint64_t checksum(const uint64_t *w)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned k = 0; k < WORDS - 1; k++)
        h = (h ^ w[k]) * 0x100000001b3ull;
    return h;
}

static void make_block(uint64_t *w, uint64_t run_id, uint64_t seq, uint64_t block,
                       uint64_t blocks, uint64_t mono_ns)
{
    struct header h = {.run_id = run_id, .seq = seq, .block = block, .blocks = blocks, .mono_ns = mono_ns};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    memcpy(w, &h, sizeof h);
    for (unsigned k = FILL_FIRST; k < WORDS - 1; k++)
        w[k] = fill_word(run_id, seq, k);
    w[WORDS - 1] = checksum(w);
}

/* What a block holds, as far as the run's records go. */
enum record { EMPTY, INTACT, BROKEN };

static enum record read_record(const uint64_t *w, struct header *h)
{
    memcpy(h, w, sizeof *h);
    if (memcmp(h->magic, MAGIC, sizeof MAGIC) != 0)
        return EMPTY;
    if (checksum(w) != w[WORDS - 1])
        return BROKEN;
    for (unsigned k = FILL_FIRST; k < WORDS - 1; k++)
        if (w[k] != fill_word(h->run_id, h->seq, k))
            return BROKEN;
    return INTACT;
}

static uint64_t device_blocks(int fd, const char *dev)
{
    struct stat st;
    uint64_t bytes = 0;
    if (fstat(fd, &st) != 0 || (S_ISBLK(st.st_mode) ? ioctl(fd, BLKGETSIZE64, &bytes) != 0
                                                     : (bytes = (uint64_t)st.st_size, 0))) {
        fprintf(stderr, "seqio: %s: %s\n", dev, strerror(errno));
        exit(2);
    }
    if (bytes < RECORD_SIZE) {
        fprintf(stderr, "seqio: %s: smaller than one block\n", dev);
        exit(2);
    }
    return bytes / RECORD_SIZE;
}

static uint64_t number(const char *s)
{
    char *end;
    errno = 0;
    uint64_t v = strtoull(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "seqio: not a number: %s\n", s);
        exit(2);
    }
    return v;
}

/* Blocks read at once when scanning DEV: a 1 GiB disk is 1024 reads, not 262144
 * (one at a time, a guest under TCG took minutes to resume). */
#define SCAN_CHUNK 256

/* The highest intact sequence of the run on DEV (0: none), choosing the run from block 0 unless given. */
static uint64_t last_written(int fd, uint64_t blocks, uint64_t *run_id, int run_given)
{
    uint64_t last = 0, *buf;
    struct header h;
    if (posix_memalign((void **)&buf, RECORD_SIZE, SCAN_CHUNK * RECORD_SIZE) != 0)
        exit(2);
    for (uint64_t first = 0; first < blocks; first += SCAN_CHUNK) {
        size_t want = (blocks - first < SCAN_CHUNK ? blocks - first : SCAN_CHUNK) * RECORD_SIZE;
        ssize_t got = pread(fd, buf, want, (off_t)(first * RECORD_SIZE));
        for (uint64_t i = first; got > 0 && i < first + (uint64_t)got / RECORD_SIZE; i++) {
            if (read_record(buf + (i - first) * WORDS, &h) != INTACT || h.block != i)
                continue;
            if (!run_given)
                *run_id = h.run_id, run_given = 1;
            if (h.run_id == *run_id && h.seq > last)
                last = h.seq;
        }
        if (got != (ssize_t)want)
            break;
    }
    free(buf);
    return last;
}

static int do_write(const char *dev, uint64_t rate, uint64_t count, uint64_t run_id, int run_given,
                    uint64_t retry_s, int resume)
{
    int fd = open(dev, (resume ? O_RDWR : O_WRONLY) | O_DIRECT | O_DSYNC);
    if (fd < 0) {
        fprintf(stderr, "seqio: %s: %s\n", dev, strerror(errno));
        return 2;
    }
    uint64_t blocks = device_blocks(fd, dev);
    uint64_t *buf;
    if (posix_memalign((void **)&buf, RECORD_SIZE, RECORD_SIZE) != 0)
        return 2;
    uint64_t first = resume ? last_written(fd, blocks, &run_id, run_given) + 1 : 1;
    printf("SEQIO START run=%llu blocks=%llu from=%llu\n", (unsigned long long)run_id, (unsigned long long)blocks,
           (unsigned long long)first);
    fflush(stdout);

    uint64_t period = rate ? 1000000000ull / rate : 0, next = now_ns();
    for (uint64_t seq = first; count == 0 || seq <= count; seq++) {
        if (period) {
            struct timespec at = {.tv_sec = next / 1000000000ull, .tv_nsec = next % 1000000000ull};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
            /* After a stall (a migration) go on at the rate, without a burst to catch up. */
            uint64_t now = now_ns();
            next = (next + period > now) ? next + period : now;
        }
        uint64_t block = (seq - 1) % blocks, submitted = now_ns();
        make_block(buf, run_id, seq, block, blocks, submitted);
        for (;;) {
            ssize_t n = pwrite(fd, buf, RECORD_SIZE, (off_t)(block * RECORD_SIZE));
            if (n == RECORD_SIZE)
                break;
            printf("SEQIO ERR %llu %d\n", (unsigned long long)seq, n < 0 ? errno : EIO);
            fflush(stdout);
            if (now_ns() - submitted > retry_s * 1000000000ull) {
                printf("SEQIO GIVEUP %llu\n", (unsigned long long)seq);
                return 2;
            }
            usleep(100000);
        }
        printf("SEQIO ACK %llu %llu %llu\n", (unsigned long long)seq, (unsigned long long)submitted,
               (unsigned long long)((now_ns() - submitted) / 1000));
        fflush(stdout);
    }
    printf("SEQIO DONE last=%llu\n", (unsigned long long)count);
    fflush(stdout);
    return 0;
}

/* One sequence with its guest timestamp, from the acked log or from the disk. */
struct stamp {
    uint64_t seq, mono_ns;
};

static int by_seq(const void *a, const void *b)
{
    uint64_t x = ((const struct stamp *)a)->seq, y = ((const struct stamp *)b)->seq;
    return (x > y) - (x < y);
}

struct problems {
    const char *name;
    unsigned long long count;
    char json[LIST_CAP * 64];
};

static void report(struct problems *p, uint64_t block, uint64_t want, uint64_t found)
{
    fprintf(stderr, "seqio: block %llu: %s: want seq %llu, holds %llu\n", (unsigned long long)block,
            p->name, (unsigned long long)want, (unsigned long long)found);
    if (p->count++ < LIST_CAP) {
        size_t len = strlen(p->json);
        snprintf(p->json + len, sizeof p->json - len, "%s{\"block\":%llu,\"want\":%llu,\"found\":%llu}",
                 len ? "," : "", (unsigned long long)block, (unsigned long long)want, (unsigned long long)found);
    }
}

/* Reads FILE's ACK lines of the run: those after its START line, or all when FILE has none. */
static struct stamp *read_acked(const char *path, uint64_t *run_id, int *run_given, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "seqio: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char line[256];
    unsigned long long a, b, latency;
    char end;
    int has_start = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "SEQIO START run=%llu", &a) == 1) {
            has_start = 1;
            if (!*run_given) /* the log's last START line names the run */
                *run_id = a;
        }
    *run_given |= has_start;
    rewind(f);
    size_t cap = 1024;
    struct stamp *acked = malloc(cap * sizeof *acked);
    int in_run = !has_start;
    *n = 0;
    while (acked && fgets(line, sizeof line, f)) {
        if (sscanf(line, "SEQIO START run=%llu", &a) == 1)
            in_run = (a == *run_id);
        else if (in_run && sscanf(line, "SEQIO ACK %llu %llu %llu%c", &a, &b, &latency, &end) == 4 &&
                 (end == '\n' || end == '\r')) { /* a line cut off by a crash acknowledges nothing */
            if (*n == cap)
                acked = realloc(acked, (cap *= 2) * sizeof *acked);
            if (acked)
                acked[(*n)++] = (struct stamp){a, b};
        }
    }
    fclose(f);
    if (!acked)
        exit(2);
    return acked;
}

static int do_verify(const char *dev, const char *acked_path, uint64_t run_id, int run_given)
{
    int fd = open(dev, O_RDONLY | O_DIRECT);
    if (fd < 0 && errno == EINVAL)  /* a file system without O_DIRECT: its cache is coherent anyway */
        fd = open(dev, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "seqio: %s: %s\n", dev, strerror(errno));
        return 2;
    }
    uint64_t blocks = device_blocks(fd, dev);
    enum slot { NONE, HELD, TORN, MISPLACED };
    uint64_t *buf, *seq = calloc(blocks, 8), *mono = calloc(blocks, 8);
    unsigned char *slot = calloc(blocks, 1);
    if (posix_memalign((void **)&buf, RECORD_SIZE, SCAN_CHUNK * RECORD_SIZE) != 0 || !seq || !mono || !slot)
        return 2;
    size_t n_acked = 0;
    struct stamp *acked = acked_path ? read_acked(acked_path, &run_id, &run_given, &n_acked) : NULL;

    uint64_t last = 0;
    struct header h;
    for (uint64_t first = 0; first < blocks; first += SCAN_CHUNK) {
        size_t want = (blocks - first < SCAN_CHUNK ? blocks - first : SCAN_CHUNK) * RECORD_SIZE;
        if (pread(fd, buf, want, (off_t)(first * RECORD_SIZE)) != (ssize_t)want) {
            fprintf(stderr, "seqio: %s: read at block %llu failed\n", dev, (unsigned long long)first);
            return 2;
        }
        for (uint64_t i = first; i < first + want / RECORD_SIZE; i++) {
            enum record s = read_record(buf + (i - first) * WORDS, &h);
            if (s == INTACT && !run_given) /* no run named: the newest run wrote block 0 first */
                run_id = h.run_id, run_given = 1;
            if (s == EMPTY || h.run_id != run_id)
                continue;
            seq[i] = h.seq;
            mono[i] = h.mono_ns;
            if (s == BROKEN)
                slot[i] = TORN;
            else if (h.block != i || h.blocks != blocks || h.seq == 0 || (h.seq - 1) % blocks != i)
                slot[i] = MISPLACED;  /* never what a single stream leaves here */
            else {
                slot[i] = HELD;
                last = h.seq > last ? h.seq : last;
            }
        }
    }

    struct problems missing = {.name = "missing"}, torn = {.name = "torn"}, stale = {.name = "stale"};
    uint64_t verified = 0, unwritten = 0;
    for (uint64_t i = 0; i < blocks; i++) {
        uint64_t expect = last >= i + 1 ? i + 1 + (last - (i + 1)) / blocks * blocks : 0;
        if (slot[i] == TORN)
            report(&torn, i, expect, 0);
        else if (slot[i] == MISPLACED || (slot[i] == HELD && seq[i] != expect))
            report(&stale, i, expect, seq[i]);
        else if (slot[i] == HELD)
            verified++;
        else if (expect)
            report(&missing, i, expect, 0);
        else
            unwritten++;
    }

    /* Guest timestamps of acked and surviving writes: the largest gap is the guest's downtime. */
    struct stamp *stamps = malloc((n_acked + blocks) * sizeof *stamps);
    size_t n_stamps = 0;
    uint64_t acked_last = 0;
    if (!stamps)
        return 2;
    for (size_t k = 0; k < n_acked; k++) {
        if (acked[k].seq > last)
            report(&missing, (acked[k].seq - 1) % blocks, acked[k].seq, last);
        acked_last = acked[k].seq > acked_last ? acked[k].seq : acked_last;
        stamps[n_stamps++] = acked[k];
    }
    for (uint64_t i = 0; i < blocks; i++)
        if (slot[i] == HELD)
            stamps[n_stamps++] = (struct stamp){seq[i], mono[i]};
    qsort(stamps, n_stamps, sizeof *stamps, by_seq);
    uint64_t max_gap = 0, gap_after = 0;
    for (size_t k = 1; k < n_stamps; k++)
        /* a clock going back is a reboot between the two (a resumed run), not a gap */
        if (stamps[k].seq != stamps[k - 1].seq && stamps[k].mono_ns > stamps[k - 1].mono_ns &&
            stamps[k].mono_ns - stamps[k - 1].mono_ns > max_gap)
            max_gap = stamps[k].mono_ns - stamps[k - 1].mono_ns, gap_after = stamps[k - 1].seq;

    int ok = last > 0 && !missing.count && !torn.count && !stale.count;  /* nothing of the run: nothing verified */
    printf("{\"ok\":%s,\"run\":%llu,\"blocks\":%llu,\"last\":%llu,\"acked\":%zu,\"acked_last\":%llu,"
           "\"verified\":%llu,\"unwritten\":%llu,\"missing_count\":%llu,\"missing\":[%s],"
           "\"torn_count\":%llu,\"torn\":[%s],\"stale_count\":%llu,\"stale\":[%s],"
           "\"max_gap_ms\":%.3f,\"max_gap_after_seq\":%llu}\n",
           ok ? "true" : "false", (unsigned long long)run_id, (unsigned long long)blocks,
           (unsigned long long)last, n_acked, (unsigned long long)acked_last, (unsigned long long)verified,
           (unsigned long long)unwritten, missing.count, missing.json, torn.count, torn.json,
           stale.count, stale.json, max_gap / 1e6, (unsigned long long)gap_after);
    return ok ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: seqio write DEV [--rate N] [--count N] [--run-id X] [--retry-s S] [--resume 1]\n"
                    "       seqio verify DEV [--acked FILE] [--run-id X]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        usage();
    const char *mode = argv[1], *dev = argv[2], *acked = NULL;
    uint64_t rate = 0, count = 0, retry_s = 60, run_id = 0;
    int run_given = 0, resume = 0;
    for (int k = 3; k < argc; k++) {
        const char *opt = argv[k], *val = k + 1 < argc ? argv[++k] : NULL;
        if (!val)
            usage();
        if (!strcmp(opt, "--rate"))
            rate = number(val);
        else if (!strcmp(opt, "--count"))
            count = number(val);
        else if (!strcmp(opt, "--retry-s"))
            retry_s = number(val);
        else if (!strcmp(opt, "--run-id"))
            run_id = number(val), run_given = 1;
        else if (!strcmp(opt, "--resume"))
            resume = number(val) != 0;
        else if (!strcmp(opt, "--acked"))
            acked = val;
        else
            usage();
    }
    if (!strcmp(mode, "write")) {
        if (!run_given) { /* a fresh id per run, so a verify tells this run's blocks from older ones */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t seed = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid();
            run_id = splitmix64(seed) >> 16;  /* < 2^53: exact as a JSON number anywhere */
        }
        return do_write(dev, rate, count, run_id, run_given, retry_s, resume);
    }
    if (!strcmp(mode, "verify"))
        return do_verify(dev, acked, run_id, run_given);
    usage();
    return 2;
}
