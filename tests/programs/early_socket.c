/* A library whose constructor uses a socket function, as some libraries
 * linked into real programs do (PostgreSQL's server loads one). Preloaded
 * after libvcl_ldpreload.so it initialises before it, so LDP starts lazily,
 * from this call, before LDP's own constructor has run. */
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void use_a_socket_early(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0)
        close(fd);
}
