#include <dlfcn.h>
#include <stdio.h>
/* Benchmark support (benches/launcher.sh), not part of bbrun: a launcher
   with no second exec. It loads the interpreter's libpython into itself
   and runs CPython's own main there, as the interpreter binary would
   (`LIBPYTHON ARGV0 ARGS...`; argv[0] is the interpreter's path, from
   which CPython computes sys.executable and its prefixes). Only possible
   for an interpreter linked against a shared libpython, and only from a
   dynamically linked launcher (docs/launcher.md, "Cost"). */
int main(int argc, char **argv) {
    void *lib = dlopen(argv[1], RTLD_LAZY | RTLD_GLOBAL);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 127;
    }
    int (*py_main)(int, char **) = (int (*)(int, char **))dlsym(lib, "Py_BytesMain");
    if (!py_main) {
        fprintf(stderr, "%s: no Py_BytesMain\n", argv[1]);
        return 127;
    }
    return py_main(argc - 2, argv + 2);
}
