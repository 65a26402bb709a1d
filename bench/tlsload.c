/*
 * tlsload: a lock-step SMTP load generator with STARTTLS, in C (smtp-source cannot do TLS).
 *
 * Every session connects, reads the greeting, sends EHLO, STARTTLS, EHLO again (the TLS
 * part only with --tls), then MAIL, RCPT, DATA, the message and "." for each of
 * --per-session messages, waiting for every reply (no pipelining, like smtp-source -d),
 * then QUIT, and starts over until --messages are sent. One thread, one epoll loop, like
 * smtp-source, so that the load costs a few microseconds per message and the server under
 * test, not the generator, sets the pace. Prints one JSON line: messages, errors, seconds.
 *
 *     cc -O2 -o tlsload tlsload.c -lssl -lcrypto
 *     ./tlsload 127.0.0.1:2525 --sessions 20 --messages 20000 --length 1024 --tls
 *
 * A session whose greeting, EHLO or STARTTLS handshake does not complete within
 * --open-timeout seconds, or that waits longer than --reply-timeout for any later reply,
 * is counted as an error, closed and redone on a new connection (after 100 errors the
 * run gives up). The certificate is not verified: this is a load generator for loopback.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SESSIONS 10000
#define MAX_ERRORS 100
#define REPLY_BYTES 8192

enum step { CONNECTING, GREETING, EHLO1, STARTTLS, HANDSHAKE, EHLO2, MAIL, RCPT, DATA, BODY, QUIT, IDLE };

static const int expected[] = {
    [GREETING] = 220, [EHLO1] = 250, [STARTTLS] = 220, [EHLO2] = 250,
    [MAIL] = 250, [RCPT] = 250, [DATA] = 354, [BODY] = 250, [QUIT] = 221,
};

struct session {
    int fd;
    SSL *ssl;
    enum step step;
    int opened;          /* past the greeting, EHLO and STARTTLS */
    int batch;           /* messages of this connection not yet acknowledged */
    double since;        /* when the session started waiting (monotonic seconds) */
    unsigned events;     /* the epoll interest registered now */
    const char *out;     /* bytes to send before the next reply is read */
    size_t out_len, out_off;
    char in[REPLY_BYTES];
    size_t in_len;
};

static struct {
    struct sockaddr_in target;
    int tls, sessions, messages, per_session, length;
    double open_timeout, reply_timeout;
    const char *sender, *recipient;
} opt = {.sessions = 20, .messages = 2000, .per_session = 100, .length = 1024,
         .open_timeout = 10.0, .reply_timeout = 60.0,
         .sender = "a@bench.local", .recipient = "b@bench.local"};

static int epfd;
static SSL_CTX *ctx;
static long left, sent, errors;
static int active;
static char *mail_cmd, *rcpt_cmd, *message;
static size_t mail_len, rcpt_len, message_len;
static const char EHLO_CMD[] = "EHLO client.bench.local\r\n";
static const char STARTTLS_CMD[] = "STARTTLS\r\n";
static const char DATA_CMD[] = "DATA\r\n";
static const char QUIT_CMD[] = "QUIT\r\n";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static char *format(size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) die("vasprintf");
    *len = (size_t)n;
    return text;
}

/* Headers like smtp-source's, then `length` bytes of payload in 80-byte lines, then ".". */
static void build_message(void) {
    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", gmtime(&t));
    size_t head_len;
    char *head = format(&head_len, "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\nMessage-Id: <%d.0@bench.local>\r\n\r\n",
                        opt.sender, opt.recipient, date, (int)getpid());
    message = malloc(head_len + (size_t)opt.length + 200);
    if (!message) die("malloc");
    memcpy(message, head, head_len);
    free(head);
    size_t at = head_len;
    long remaining = opt.length;
    for (int number = 1; remaining > 0; number++) {
        long room = remaining - 2 < 78 ? remaining - 2 : 78;
        if (room < 0) room = 0;
        char line[96];
        int n = snprintf(line, sizeof line, "%d", number);
        while (n < 78) line[n++] = 'X';
        memcpy(message + at, line, (size_t)room);
        at += (size_t)room;
        memcpy(message + at, "\r\n", 2);
        at += 2;
        remaining -= room + 2;
    }
    memcpy(message + at, ".\r\n", 3);
    message_len = at + 3;
}

static void watch(struct session *s, unsigned events) {
    if (events == s->events) return;
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(epfd, s->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev) < 0) die("epoll_ctl");
    s->events = events;
}

static void send_next(struct session *s, enum step step, const char *out, size_t len) {
    s->step = step;
    s->out = out;
    s->out_len = len;
    s->out_off = 0;
}

static void close_session(struct session *s) {
    if (s->ssl) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) close(s->fd); /* also leaves the epoll set */
    s->fd = -1;
    s->events = 0;
    s->step = IDLE;
}

static void start_session(struct session *s);

static void fail(struct session *s, const char *why) {
    errors++;
    left += s->batch; /* not acknowledged: sent again on a new connection */
    if (errors <= 3) fprintf(stderr, "tlsload: %s (in step %d)\n", why, (int)s->step);
    if (errors > MAX_ERRORS) left = 0;
    s->batch = 0;
    close_session(s);
    start_session(s);
}

static void start_session(struct session *s) {
    if (left <= 0) {
        active--;
        return;
    }
    s->batch = left < opt.per_session ? (int)left : opt.per_session;
    left -= s->batch;
    s->opened = 0;
    s->in_len = 0;
    s->since = now();
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) die("socket");
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    send_next(s, CONNECTING, NULL, 0);
    if (connect(s->fd, (struct sockaddr *)&opt.target, sizeof opt.target) == 0) {
        s->step = GREETING;
        watch(s, EPOLLIN);
    } else if (errno == EINPROGRESS) {
        watch(s, EPOLLOUT);
    } else {
        fail(s, strerror(errno));
    }
}

/* The next command once a message (or the opening) is done: MAIL, or QUIT. */
static void next_message(struct session *s) {
    s->opened = 1;
    if (s->batch > 0)
        send_next(s, MAIL, mail_cmd, mail_len);
    else
        send_next(s, QUIT, QUIT_CMD, sizeof QUIT_CMD - 1);
}

/* A whole reply with this code arrived in step s->step. Returns 0 when the session ended. */
static int advance(struct session *s, int code) {
    if (code != expected[s->step]) {
        char why[64];
        snprintf(why, sizeof why, "expected %d, got %d", expected[s->step], code);
        fail(s, why);
        return 0;
    }
    s->since = now();
    switch (s->step) {
    case GREETING: send_next(s, EHLO1, EHLO_CMD, sizeof EHLO_CMD - 1); break;
    case EHLO1:
        if (opt.tls)
            send_next(s, STARTTLS, STARTTLS_CMD, sizeof STARTTLS_CMD - 1);
        else
            next_message(s);
        break;
    case STARTTLS:
        if (s->in_len) {
            fail(s, "data after the STARTTLS reply");
            return 0;
        }
        s->ssl = SSL_new(ctx);
        if (!s->ssl || !SSL_set_fd(s->ssl, s->fd)) die("SSL_new");
        SSL_set_tlsext_host_name(s->ssl, "bench.local");
        SSL_set_connect_state(s->ssl);
        send_next(s, HANDSHAKE, NULL, 0);
        break;
    case EHLO2: next_message(s); break;
    case MAIL: send_next(s, RCPT, rcpt_cmd, rcpt_len); break;
    case RCPT: send_next(s, DATA, DATA_CMD, sizeof DATA_CMD - 1); break;
    case DATA: send_next(s, BODY, message, message_len); break;
    case BODY:
        sent++;
        s->batch--;
        next_message(s);
        break;
    case QUIT:
        if (s->ssl) {
            SSL_shutdown(s->ssl); /* one close_notify, not waited for */
            ERR_clear_error();    /* (whatever it met must not look like the next call's error) */
        }
        close_session(s);
        start_session(s);
        return 0;
    default: break;
    }
    return 1;
}

/* The code of the first whole reply in s->in (removed from it), 0 if none is whole yet,
 * -1 if the server sent something that is not a reply. */
static int take_reply(struct session *s) {
    size_t start = 0;
    while (start < s->in_len) {
        char *end = memchr(s->in + start, '\n', s->in_len - start);
        if (!end) return 0;
        size_t line_len = (size_t)(end - (s->in + start)) + 1;
        const char *line = s->in + start;
        start += line_len;
        if (line_len < 5 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0'
            || line[2] > '9')
            return -1;
        if (line[3] == '-') continue;
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        memmove(s->in, s->in + start, s->in_len - start);
        s->in_len -= start;
        return code;
    }
    return 0;
}

/* Returns >0 bytes moved, 0 would block (interest set), -1 failed (session restarted). */
static long io(struct session *s, int writing) {
    if (s->ssl) {
        int n = writing ? SSL_write(s->ssl, s->out + s->out_off, (int)(s->out_len - s->out_off))
                        : SSL_read(s->ssl, s->in + s->in_len, (int)(sizeof s->in - s->in_len));
        if (n > 0) return n;
        int error = SSL_get_error(s->ssl, n);
        if (error == SSL_ERROR_WANT_READ) { watch(s, EPOLLIN); return 0; }
        if (error == SSL_ERROR_WANT_WRITE) { watch(s, EPOLLOUT); return 0; }
        ERR_clear_error();
        fail(s, error == SSL_ERROR_ZERO_RETURN ? "connection closed by the server" : "TLS error");
        return -1;
    }
    ssize_t n = writing ? send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL)
                        : recv(s->fd, s->in + s->in_len, sizeof s->in - s->in_len, 0);
    if (n > 0) return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch(s, writing ? EPOLLOUT : EPOLLIN);
        return 0;
    }
    fail(s, n == 0 ? "connection closed by the server" : strerror(errno));
    return -1;
}

/* Move the session on as far as it goes without blocking; `ready` when epoll said so
 * (a connection in progress is only looked at then). */
static void drive(struct session *s, int ready) {
    for (;; ready = 0) {
        if (s->step == IDLE) return;
        if (s->step == CONNECTING) {
            if (!ready) return;
            int error = 0;
            socklen_t len = sizeof error;
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &error, &len);
            if (error) { fail(s, strerror(error)); continue; }
            s->step = GREETING;
        } else if (s->step == HANDSHAKE) {
            int r = SSL_do_handshake(s->ssl);
            if (r == 1) {
                send_next(s, EHLO2, EHLO_CMD, sizeof EHLO_CMD - 1);
                continue;
            }
            int error = SSL_get_error(s->ssl, r);
            if (error == SSL_ERROR_WANT_READ) { watch(s, EPOLLIN); return; }
            if (error == SSL_ERROR_WANT_WRITE) { watch(s, EPOLLOUT); return; }
            ERR_clear_error();
            fail(s, "TLS handshake failed");
        } else if (s->out_off < s->out_len) {
            long n = io(s, 1);
            if (n <= 0) return;
            s->out_off += (size_t)n;
        } else {
            int code = take_reply(s);
            if (code < 0) { fail(s, "not an SMTP reply"); continue; }
            if (code > 0) { advance(s, code); continue; }
            if (s->in_len == sizeof s->in) { fail(s, "reply too long"); continue; }
            long n = io(s, 0);
            if (n <= 0) return;
            s->in_len += (size_t)n;
        }
    }
}

/* Sessions waiting past their timeout fail and start over. */
static void check_timeouts(struct session *all, int count) {
    double t = now();
    for (int i = 0; i < count; i++) {
        struct session *s = &all[i];
        if (s->step == IDLE) continue;
        double limit = s->opened ? opt.reply_timeout : opt.open_timeout;
        if (t - s->since > limit) {
            fail(s, s->opened ? "reply timed out" : "greeting, EHLO or STARTTLS timed out");
        }
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: tlsload HOST:PORT [--tls] [-s SESSIONS] [-m MESSAGES] [-l LENGTH] [--per-session N]\n"
            "               [--sender ADDR] [--recipient ADDR] [--open-timeout S] [--reply-timeout S]\n");
    exit(2);
}

static void parse(int argc, char **argv) {
    static const struct option long_options[] = {
        {"tls", no_argument, 0, 'T'},          {"sessions", required_argument, 0, 's'},
        {"messages", required_argument, 0, 'm'}, {"length", required_argument, 0, 'l'},
        {"per-session", required_argument, 0, 'P'}, {"sender", required_argument, 0, 'f'},
        {"recipient", required_argument, 0, 't'}, {"open-timeout", required_argument, 0, 'O'},
        {"reply-timeout", required_argument, 0, 'R'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:m:l:f:t:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'T': opt.tls = 1; break;
        case 's': opt.sessions = atoi(optarg); break;
        case 'm': opt.messages = atoi(optarg); break;
        case 'l': opt.length = atoi(optarg); break;
        case 'P': opt.per_session = atoi(optarg); break;
        case 'f': opt.sender = optarg; break;
        case 't': opt.recipient = optarg; break;
        case 'O': opt.open_timeout = atof(optarg); break;
        case 'R': opt.reply_timeout = atof(optarg); break;
        default: usage();
        }
    }
    if (optind != argc - 1) usage();
    if (opt.sessions < 1 || opt.sessions > MAX_SESSIONS || opt.messages < 0 || opt.per_session < 1
        || opt.length < 0 || opt.length > 64 * 1024 * 1024 || opt.open_timeout <= 0 || opt.reply_timeout <= 0)
        usage();
    char *target = argv[optind];
    char *colon = strrchr(target, ':');
    if (!colon) usage();
    *colon = '\0';
    opt.target.sin_family = AF_INET;
    opt.target.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, *target ? target : "127.0.0.1", &opt.target.sin_addr) != 1) usage();
}

int main(int argc, char **argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (opt.tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) die("SSL_CTX_new");
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    mail_cmd = format(&mail_len, "MAIL FROM:<%s>\r\n", opt.sender);
    rcpt_cmd = format(&rcpt_len, "RCPT TO:<%s>\r\n", opt.recipient);
    build_message();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    int count = opt.sessions;
    struct session *all = calloc((size_t)count, sizeof *all);
    if (!all) die("calloc");
    double start = now();
    left = opt.messages;
    for (int i = 0; i < count; i++) {
        all[i].fd = -1;
        all[i].step = IDLE;
        active++;
        start_session(&all[i]);
    }
    struct epoll_event events[256];
    double checked = now();
    while (active > 0) {
        int n = epoll_wait(epfd, events, 256, 250);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) drive(events[i].data.ptr, 1);
        if (now() - checked >= 0.25) {
            check_timeouts(all, count);
            checked = now();
        }
    }
    double seconds = now() - start;
    printf("{\"messages\": %ld, \"errors\": %ld, \"seconds\": %.4f}\n", sent, errors, seconds);
    return sent == opt.messages ? 0 : 1;
}
