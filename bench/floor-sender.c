/*
 * The least CPU a paced UDP sender can spend per packet, for bench/powstream-vs-ref:
 * one absolute sleep to the next send time of an exponential schedule, one clock
 * read, one send() of a 14-octet datagram on a connected socket. No control
 * connection, no files, no sessions: what powstream -t and perfSONAR's powstream -t
 * both pay for every packet, and nothing else.
 *
 * Usage: floor-sender PORT MEAN_INTERVAL_SECONDS   (sends to 127.0.0.1:PORT forever)
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: floor-sender PORT MEAN_INTERVAL_SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double mean = atof(argv[2]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || mean <= 0 || connect(s, (struct sockaddr *)&to, sizeof to) != 0) {
        perror("floor-sender");
        return 1;
    }
    /* The timer slack our senders ask for at this rate (owamp/src/engine/wait.rs,
     * timer_slack): 1 % of the mean interval, within 50 us .. 1 ms. A wider slack
     * would let one wake-up send several packets, and the floor would be no floor. */
    double slack = mean * 0.01;
    slack = slack < 50e-6 ? 50e-6 : slack > 1e-3 ? 1e-3 : slack;
    prctl(PR_SET_TIMERSLACK, (unsigned long)(slack * 1e9), 0, 0, 0);
    struct timespec next;
    clock_gettime(CLOCK_REALTIME, &next);
    srand48(1);
    char pkt[14] = {0};
    for (;;) {
        long ns = next.tv_nsec + (long)(-mean * log(1.0 - drand48()) * 1e9);
        next.tv_sec += ns / 1000000000L;
        next.tv_nsec = ns % 1000000000L;
        clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &next, NULL);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        memcpy(pkt + 4, &now, sizeof now < 10 ? sizeof now : 10);
        (void)send(s, pkt, sizeof pkt, 0);
    }
}
