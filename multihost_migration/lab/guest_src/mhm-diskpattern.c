/* mhm-diskpattern write|verify DEVICE SEED MIB
 *
 * Writes or verifies a deterministic pseudo-random pattern derived from SEED
 * on the first MIB MiB of DEVICE.  I/O uses O_DIRECT when the device accepts
 * it, else buffered I/O with fsync (write) / posix_fadvise DONTNEED (verify).
 * write prints "DISK WRITTEN bytes=N" and exits 0; verify prints "DISK OK" or
 * "DISK BAD offset=N" and exits 0 or 1.  Errors exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1024UL * 1024UL)

/* splitmix64 of the seed and the 8-byte word index: any word is computable alone. */
static uint64_t pattern_word(uint64_t seed, uint64_t index)
{
    uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void fill(uint64_t *buf, uint64_t seed, uint64_t first_word)
{
    size_t i;
    for (i = 0; i < CHUNK / 8; i++)
        buf[i] = pattern_word(seed, first_word + i);
}

static int open_device(const char *path, int flags, int *direct)
{
    int fd = open(path, flags | O_DIRECT);
    *direct = fd >= 0;
    if (fd < 0 && errno == EINVAL)
        fd = open(path, flags);
    return fd;
}

static int full_io(int fd, void *buf, off_t off, int writing)
{
    size_t done = 0;
    while (done < CHUNK) {
        ssize_t n = writing ? pwrite(fd, (char *)buf + done, CHUNK - done, off + (off_t)done)
                            : pread(fd, (char *)buf + done, CHUNK - done, off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t seed, mib, chunk, *want, *got;
    int writing, direct, fd;
    size_t i;

    if (argc != 5 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "verify") != 0)) {
        fprintf(stderr, "usage: mhm-diskpattern write|verify DEVICE SEED MIB\n");
        return 2;
    }
    writing = strcmp(argv[1], "write") == 0;
    seed = strtoull(argv[3], NULL, 0);
    mib = strtoull(argv[4], NULL, 10);
    if (mib == 0) {
        fprintf(stderr, "mhm-diskpattern: MIB must be positive\n");
        return 2;
    }
    if (posix_memalign((void **)&want, 4096, CHUNK) != 0
        || posix_memalign((void **)&got, 4096, CHUNK) != 0) {
        fprintf(stderr, "mhm-diskpattern: out of memory\n");
        return 2;
    }
    fd = open_device(argv[2], writing ? O_WRONLY : O_RDONLY, &direct);
    if (fd < 0) {
        fprintf(stderr, "mhm-diskpattern: %s: %s\n", argv[2], strerror(errno));
        return 2;
    }
    if (!writing && !direct)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    for (chunk = 0; chunk < mib; chunk++) {
        off_t off = (off_t)(chunk * CHUNK);
        fill(want, seed, chunk * (CHUNK / 8));
        if (writing) {
            if (full_io(fd, want, off, 1) != 0) {
                fprintf(stderr, "mhm-diskpattern: write at %lld: %s\n",
                        (long long)off, strerror(errno));
                return 2;
            }
            continue;
        }
        if (full_io(fd, got, off, 0) != 0) {
            fprintf(stderr, "mhm-diskpattern: read at %lld: %s\n",
                    (long long)off, strerror(errno));
            return 2;
        }
        if (memcmp(want, got, CHUNK) != 0) {
            for (i = 0; i < CHUNK / 8 && want[i] == got[i]; i++)
                ;
            printf("DISK BAD offset=%llu\n", (unsigned long long)off + i * 8);
            return 1;
        }
    }
    if (writing) {
        if (fsync(fd) != 0) {
            fprintf(stderr, "mhm-diskpattern: fsync: %s\n", strerror(errno));
            return 2;
        }
        printf("DISK WRITTEN bytes=%llu\n", (unsigned long long)(mib * CHUNK));
    } else {
        printf("DISK OK\n");
    }
    close(fd);
    return 0;
}
