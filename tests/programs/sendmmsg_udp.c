/* Sends three datagrams to ADDR PORT with one sendmmsg call, then reads
 * three answers (an echo server's). Prints "sendmmsg sent N" and
 * "received: <datagram>" lines; exits 1 on a failure.
 *
 * Usage: sendmmsg_udp ADDR PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        printf("socket/connect: %s\n", strerror(errno));
        return 1;
    }
    char *texts[3] = {"first", "second", "third"};
    struct iovec iov[3];
    struct mmsghdr msgs[3];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < 3; i++) {
        iov[i].iov_base = texts[i];
        iov[i].iov_len = strlen(texts[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(fd, msgs, 3, 0);
    if (n < 0) {
        printf("sendmmsg: %s\n", strerror(errno));
        return 1;
    }
    printf("sendmmsg sent %d (lengths %u %u %u)\n", n, msgs[0].msg_len, msgs[1].msg_len, msgs[2].msg_len);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < n; i++) {
        char buf[64];
        ssize_t got = recv(fd, buf, sizeof buf - 1, 0);
        if (got < 0) {
            printf("recv: %s\n", strerror(errno));
            return 1;
        }
        buf[got] = 0;
        printf("received: %s\n", buf);
    }
    close(fd);
    return n == 3 ? 0 : 1;
}
