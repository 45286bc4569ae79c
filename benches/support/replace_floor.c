#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>
#include <sys/stat.h>
/* Benchmark support (benches/rpath.sh), not part of bbrun: the floor of
   atomic replacement. For each file: read it, create a temp file beside
   it, write the bytes, rename it over the file; then one syncfs. No ELF
   parsing or rewriting at all, so no RPATH tool that replaces files
   atomically can be faster than this. */
int main(int argc, char **argv) {
    static char buf[1<<20];
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    int n = 0;
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY); ssize_t len = read(fd, buf, sizeof buf); close(fd);
        char tmp[4096]; snprintf(tmp, sizeof tmp, "%s.tmp", argv[i]);
        fd = open(tmp, O_CREAT|O_EXCL|O_WRONLY, 0755); write(fd, buf, len); close(fd);
        rename(tmp, argv[i]); n++;
    }
    int d = open(argc > 1 ? argv[1] : ".", O_RDONLY); syncfs(d); close(d);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%d files %.4f s\n", n, (b.tv_sec-a.tv_sec)+(b.tv_nsec-a.tv_nsec)/1e9);
}
