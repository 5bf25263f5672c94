/*
 * Diagnostic only, not part of the benchmark run: an LD_PRELOAD library that
 * sets TCP_NODELAY on every socket a process accepts. BENCHMARKS.md uses it
 * to show what the server's gRPC endpoint does once Nagle's algorithm is off
 * on its accepted connections (src/grpc/mod.rs serves them through
 * `serve_with_incoming_shutdown`, which ignores `Server::tcp_nodelay`).
 *
 *   gcc -shared -fPIC -O2 -o bench/.work/nodelay_shim.so bench/diagnostics/nodelay_shim.c -ldl
 *   LD_PRELOAD=$PWD/bench/.work/nodelay_shim.so target/release/tritonrs ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void set_nodelay(int fd) {
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) {
        real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    }
    int client = real(fd, address, length, flags);
    set_nodelay(client);
    return client;
}

int accept(int fd, struct sockaddr *address, socklen_t *length) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) {
        real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    }
    int client = real(fd, address, length);
    set_nodelay(client);
    return client;
}
