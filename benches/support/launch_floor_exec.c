#include <unistd.h>
/* Benchmark support (benches/launcher.sh), not part of bbrun: the floor of
   any launcher that execs the interpreter. A static program that does
   nothing but exec its arguments: one more exec and nothing else. */
int main(int argc, char **argv) {
    (void)argc;
    execv(argv[1], argv + 1);
    return 127;
}
