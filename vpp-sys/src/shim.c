/*
 * vpp-sys C shim: what bindgen cannot express.
 *
 * - the thread-local worker index (binding a __thread variable as a Rust
 *   static links but reads garbage);
 * - vppinfra pool/hash macros (pool_is_free_index, pool_elts, hash_get);
 * - fields of the global `vcm` that are set once at start-up.
 *
 * - what VLS does inside VCL that VCL has no call for: moving a session
 *   between workers, copying a parent's sessions into a forked child,
 *   listening and handing sessions over between related processes.
 *
 * No function has state of its own (one caches a dlsym answer) or blocks
 * (the move takes VCL's workers_lock for a memcpy).
 *
 * VPPSYS_RELEASE is the release of the VPP it is compiled against, YYMM
 * (2510, 2602, 2606, 2610), defined by the build script. Code that differs
 * between releases says so with #if on it, oldest release first.
 */
#include <vcl/vcl_private.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

/* fifo_records.c: libsvm's calls, one process of the application at a
 * time. */
void vppsys_fifo_segment_free_client_fifo (fifo_segment_t *fs, svm_fifo_t *f);
void vppsys_svm_fifo_del_subscriber (svm_fifo_t *f, u8 subscriber);

#ifndef VPPSYS_RELEASE
#error "VPPSYS_RELEASE (the VPP release as YYMM, e.g. 2606) is defined by vpp-sys' build script"
#endif
#if VPPSYS_RELEASE < 2510
#error "VPP releases before 25.10 are not supported"
#endif

uint32_t
vppsys_worker_index (void)
{
  return (uint32_t) __vcl_worker_index;
}

void
vppsys_set_worker_index (uint32_t wrk_index)
{
  /* ~0 must become VCL's uword ~0, not a 32-bit one */
  __vcl_worker_index = wrk_index == (uint32_t) ~0 ? (uword) ~0 : (uword) wrk_index;
}

int
vppsys_worker_is_valid (uint32_t wrk_index)
{
  if (!vcm || !vcm->workers || wrk_index == (uint32_t) ~0)
    return 0;
  return !pool_is_free_index (vcm->workers, wrk_index);
}

/* Worker wrk_index, or 0 when it is gone. */
static vcl_worker_t *
vppsys_worker_get (uint32_t wrk_index)
{
  return vppsys_worker_is_valid (wrk_index) ?
	   pool_elt_at_index (vcm->workers, wrk_index) :
	   0;
}

/* VPP's index of the calling thread's app worker (~0 if it has no VCL
 * worker); the same as the VCL index unless that worker is a forked
 * process's (see vppsys_worker_takes_handovers). */
uint32_t
vppsys_vpp_worker_index (void)
{
  vcl_worker_t *wrk = vppsys_worker_get ((uint32_t) __vcl_worker_index);

  return wrk ? wrk->vpp_wrk_index : ~0u;
}

/* Worker wrk_index's mq epoll fd as recorded in the worker (a descriptor
 * number of the process that registered the worker), or -1. */
int
vppsys_worker_mqs_epfd (uint32_t wrk_index)
{
  vcl_worker_t *wrk = vppsys_worker_get (wrk_index);
  return wrk ? wrk->mqs_epfd : -1;
}

/* The calling thread's worker's message-queue eventfd (VPP writes it when
 * the queue goes from empty to not empty), or -1 (no worker, or no
 * use-mq-eventfd). */
int
vppsys_worker_mq_eventfd (void)
{
  vcl_worker_t *wrk = vppsys_worker_get (vppsys_worker_index ());
  if (!wrk || !wrk->app_event_queue)
    return -1;
  return svm_msg_q_get_eventfd (wrk->app_event_queue);
}

/* A process without a worker of its own (a forked child whose worker
 * registration failed), at exit: VCL's exit handler (vppcom_app_exit)
 * cleans up the calling thread's worker whenever the worker pool is not
 * empty, and would look up worker ~0. VCL's state is in a heap forked
 * processes share (MAP_SHARED), so the pool itself must stay as it is for
 * the parent; only this process's pointer to that state (vcm, a global of
 * its own) is turned to an empty state of its own, in which the pool is
 * empty. VCL must not be used in this process afterwards. */
void
vppsys_forget_inherited_workers (void)
{
  static vppcom_main_t empty;

  vcm = &empty;
}

/*
 * Before the calling thread's worker goes away (process exit, a thread's
 * worker unregistering): waits at most max_s seconds until VPP has taken
 * every message this worker queued for it (its control queue and the
 * event queues of its sessions' VPP threads). VPP handles an app's
 * detach and worker removal, which come over the app's socket, in its
 * pre-input node, before the session node reads the event queues; it then
 * handles an accepted reply queued just before the exit for a session the
 * detach already took from the app (app_wrk_index ~0) and crashes in
 * session_mq_accepted_reply_handler (25.10 to 26.10, no check there). A
 * queue seen empty was read by VPP's session node, which dispatches the
 * control events it read in the same run. 1 when all are empty, 0 when
 * the time ran out (a stopped or overloaded VPP), -1 without a worker
 * or with one detached from its VPP.
 */
int
vppsys_wait_vpp_read_queues (double max_s)
{
  vcl_worker_t *wrk = vppsys_worker_get (vppsys_worker_index ());
  /* One event queue per VPP thread the worker's sessions are on, and the
   * control queue (thread 0's); queues beyond 16 are not waited for. */
  svm_msg_q_t *mqs[16];
  u32 n_mqs = 0, i;
  vcl_session_t *s;
  f64 deadline;

  /* A worker detached from its VPP (gone, restarted) has no queues to
   * wait for: VCL unmapped VPP's segment, and its sessions' queue pointers
   * point into that unmapped memory. */
  if (!wrk || !wrk->ctrl_mq || wrk->api_client_handle == ~0)
    return -1;
  mqs[n_mqs++] = wrk->ctrl_mq;
  pool_foreach (s, wrk->sessions)
    {
      if (!s->vpp_evt_q || n_mqs == ARRAY_LEN (mqs) ||
	  s->session_state == VCL_STATE_DETACHED ||
	  (s->flags & VCL_SESSION_F_LISTEN_NO_MQ))
	continue;
      for (i = 0; i < n_mqs && mqs[i] != s->vpp_evt_q; i++)
	;
      if (i == n_mqs)
	mqs[n_mqs++] = s->vpp_evt_q;
    }
  deadline = clib_time_now (&wrk->clib_time) + max_s;
  for (;;)
    {
      for (i = 0; i < n_mqs && svm_msg_q_is_empty (mqs[i]); i++)
	;
      if (i == n_mqs)
	return 1;
      if (clib_time_now (&wrk->clib_time) > deadline)
	return 0;
      usleep (50);
    }
}

/* Adds fd to out (room for max) unless not above 0; counts it in *n. */
static void
vppsys_fd_add (int fd, int *out, int max, int *n)
{
  /* 0 is VCL's "none" for its epoll fd and pipes (zeroed fields). */
  if (fd <= 0)
    return;
  if (*n < max)
    out[*n] = fd;
  *n += 1;
}

/* The kernel descriptors VCL holds in this process, none of which the
 * application opened: for each worker this process registered, its socket
 * to VPP (app socket API, or the binary API socket), its message queues'
 * eventfds, its queue epoll fd and its detach pipe; and every mapped
 * segment's memfd (VCL closes it when the segment goes). Writes at most max
 * of them to out and returns how many there are (possibly with repeats). */
static int vppsys_internal_fds_of (int *out, int max, int with_segments);

int
vppsys_internal_fds (int *out, int max)
{
  return vppsys_internal_fds_of (out, max, 1);
}

/* vppsys_internal_fds without the segments' memfds: only what this
 * process's workers opened here (sockets, eventfds, epoll fd, pipes). The
 * segment table is shared with forked relatives, and a segment one of
 * them mapped later has a descriptor number that means nothing here (or
 * another file of this process's). */
int
vppsys_worker_fds (int *out, int max)
{
  return vppsys_internal_fds_of (out, max, 0);
}

static int
vppsys_internal_fds_of (int *out, int max, int with_segments)
{
  vcl_worker_t *wrk;
  vcl_mq_evt_conn_t *c;
  fifo_segment_t *fs;
  pid_t me = getpid ();
  int n = 0;

  if (!vcm || !vcm->workers)
    return 0;
  clib_spinlock_lock (&vcm->workers_lock);
  pool_foreach (wrk, vcm->workers)
    {
      if (wrk->current_pid != me)
	continue;
      vppsys_fd_add (wrk->app_api_sock.fd, out, max, &n);
      vppsys_fd_add (wrk->bapi_sock_ctx.socket_fd, out, max, &n);
      vppsys_fd_add (wrk->mqs_epfd, out, max, &n);
      vppsys_fd_add (wrk->detached_pipefds[0], out, max, &n);
      vppsys_fd_add (wrk->detached_pipefds[1], out, max, &n);
      if (wrk->app_event_queue)
	vppsys_fd_add (svm_msg_q_get_eventfd (wrk->app_event_queue), out, max,
		       &n);
      if (wrk->ctrl_mq)
	vppsys_fd_add (svm_msg_q_get_eventfd (wrk->ctrl_mq), out, max, &n);
      pool_foreach (c, wrk->mq_evt_conns)
	vppsys_fd_add (c->mq_fd, out, max, &n);
    }
  clib_spinlock_unlock (&vcm->workers_lock);
  if (!with_segments)
    return n;
  clib_rwlock_reader_lock (&vcm->segment_table_lock);
  pool_foreach (fs, vcm->segment_main.segments)
    if (fs->ssvm.fd > 0)
      vppsys_fd_add (fs->ssvm.fd, out, max, &n);
  clib_rwlock_reader_unlock (&vcm->segment_table_lock);
  return n;
}

/* 0 if descriptor fd can no longer be VCL's socket to VPP (app socket
 * API): closed, or reopened as something that is no socket; else 1. Only
 * fstat (the system call, not LDP's wrapper): a sandbox that refuses it
 * (OpenSSH's pre-auth child answers EACCES, and kills for most other
 * calls) leaves the answer 1, as nothing else can have closed it there. */
static int
vppsys_is_app_socket (int fd)
{
  struct stat st;

  if (fd < 0)
    return 0;
  if (syscall (SYS_fstat, fd, &st) != 0)
    return errno != EBADF;
  return S_ISSOCK (st.st_mode);
}

/* vppcom_worker_unregister for the calling thread's worker, with the app
 * socket API in two other ways:
 * - if the program has closed the worker's socket to VPP (dropbear closes
 *   every number before exec), VPP dropped the worker when it closed, and
 *   VCL's goodbye would fail on the dead descriptor (printing
 *   "sendmsg: Bad file descriptor" into the program's stderr) and close
 *   whatever has that number now: nothing is sent or closed, the queue
 *   epoll fd included;
 * - quietly (a forked child ending or execing): the socket is closed
 *   instead of sending the removal over it, and VPP removes a worker
 *   whose socket closes (sapi_socket_detach). Only close, no sendmsg: a
 *   sandboxed process may be killed for the latter (OpenSSH's pre-auth
 *   child, seccomp).
 * The worker's state in VCL's heap is freed either way. Returns 1 if VPP
 * was sent the removal, 0 if not. */
int
vppsys_worker_leave (int quietly)
{
  vcl_worker_t *wrk = vcl_worker_get_current ();
  int notify = 1;

  if (vcm->cfg.vpp_app_socket_api)
    {
      notify = 0;
      if (!vppsys_is_app_socket (wrk->app_api_sock.fd))
	wrk->mqs_epfd = -1;
      else if (quietly)
	{
	  syscall (SYS_close, wrk->app_api_sock.fd);
	  wrk->app_api_sock.fd = -1;
	}
      else
	notify = 1;
    }
  vcl_worker_cleanup (wrk, notify);
  vcl_set_worker_index (~0);
  return notify;
}

uint32_t
vppsys_worker_unhandled_events (void)
{
  vcl_worker_t *wrk = vppsys_worker_get (vppsys_worker_index ());
  return wrk ? vec_len (wrk->unhandled_evts_vector) : 0;
}

uint32_t
vppsys_n_workers (void)
{
  return vcm && vcm->workers ? pool_elts (vcm->workers) : 0;
}

/* Session lookup that never asserts: 0 when the worker or session is gone. */
vcl_session_t *
vppsys_session_get (uint32_t wrk_index, uint32_t session_index)
{
  vcl_worker_t *wrk = vppsys_worker_get (wrk_index);
  if (!wrk || !wrk->sessions ||
      pool_is_free_index (wrk->sessions, session_index))
    return 0;
  return pool_elt_at_index (wrk->sessions, session_index);
}

void
vppsys_set_wrk_rpc_fn (vcl_rpc_fn_t *fn)
{
  vcm->wrk_rpc_fn = fn;
}

void
vppsys_set_epoll_fns (int (*create1) (int),
		      int (*ctl) (int, int, int, struct epoll_event *),
		      int (*wait) (int, struct epoll_event *, int, int))
{
  vcm->vcl_epoll_create1 = create1;
  vcm->vcl_epoll_ctl = ctl;
  vcm->vcl_epoll_wait = wait;
}

uint8_t
vppsys_cfg_mt_wrk_supported (void)
{
  return vcm ? vcm->cfg.mt_wrk_supported : 0;
}

uint8_t
vppsys_cfg_use_mq_eventfd (void)
{
  return vcm ? vcm->cfg.use_mq_eventfd : 0;
}

/*
 * Session state by handle, on the calling thread's worker. A handle of
 * another worker, or of a freed session, gives "no session" (0 / -1).
 */
static vcl_session_t *
vppsys_current_session (uint32_t sh)
{
  uint32_t wrk_index = vppsys_worker_index ();
  if (wrk_index == (uint32_t) ~0 || (sh >> 24) != wrk_index)
    return 0;
  return vppsys_session_get (wrk_index, sh & 0xFFFFFF);
}

int
vppsys_sh_is_nonblocking (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  return s ? vcl_session_has_attr (s, VCL_SESS_ATTR_NONBLOCK) : -1;
}

int
vppsys_sh_read_ready (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || (s->flags & VCL_SESSION_F_IS_VEP))
    return -1;
  return vcl_session_read_ready (s);
}

/* Same test as the C layer: a datagram write only surely fits if more than
 * 64 KiB are free. A stream listener is never writable (as with the kernel;
 * VCL answers EBADFD for it, which would read as "writable, the write will
 * say why"). */
int
vppsys_sh_write_nonblk (uint32_t sh)
{
  int rv;
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || (s->flags & VCL_SESSION_F_IS_VEP))
    return -1;
  if (s->session_state == VCL_STATE_LISTEN && !s->is_dgram)
    return 0;
  rv = vcl_session_write_ready (s);
  if (!s->is_dgram)
    return rv != 0;
  return rv < 0 ? 1 : (rv > (64 << 10));
}

/* Room to write on sh, as VCL's poll sees it: bytes free in a stream's TX
 * FIFO, or the longest datagram that fits; 0 if none; a negative VPPCOM
 * error if the session is not open (or no such session: EBADFD). */
int
vppsys_sh_write_space (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || (s->flags & VCL_SESSION_F_IS_VEP))
    return VPPCOM_EBADFD;
  return vcl_session_write_ready (s);
}

/* A datagram session's write that did not fit: asks VPP for a TX event at
 * its next dequeue that leaves more than 64 KiB (and a header) free, the room
 * vppsys_sh_write_nonblk wants before it calls a datagram session writable
 * (the FIFO's size if smaller). Streams need nothing: they refuse a write
 * only when the FIFO is full, and VCL's epoll registration asks for the
 * event that follows a full FIFO. 0, or -1 for no such session. */
int
vppsys_sh_want_tx_event (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  u32 thresh;
  if (!s || (s->flags & VCL_SESSION_F_IS_VEP))
    return -1;
  if (!s->is_dgram || !s->tx_fifo)
    return 0;
  thresh = (64 << 10) + 1 + sizeof (session_dgram_hdr_t);
  thresh = clib_min (thresh, svm_fifo_size (s->tx_fifo));
  svm_fifo_set_deq_thresh (s->tx_fifo, thresh);
  svm_fifo_add_want_deq_ntf (s->tx_fifo, SVM_FIFO_WANT_DEQ_NOTIF);
  return 0;
}

void
vppsys_sh_set_app_closing (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (s)
    s->flags |= VCL_SESSION_F_APP_CLOSING;
}

void
vppsys_sh_set_nonblocking (uint32_t sh, uint8_t on)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s)
    return;
  if (on)
    vcl_session_set_attr (s, VCL_SESS_ATTR_NONBLOCK);
  else
    vcl_session_clear_attr (s, VCL_SESS_ATTR_NONBLOCK);
}

/* Asks for a TX event on sh when its TX FIFO, full now, gets room (VCL's
 * own request, as its epoll does for EPOLLOUT). No-op without a FIFO or
 * for a handle of another worker. */
void
vppsys_sh_want_tx_space_notice (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (s)
    vcl_session_add_want_deq_ntf (s, SVM_FIFO_WANT_DEQ_NOTIF_IF_FULL);
}

/* Before a poll sleeps on the message queue's eventfd for data on sh: VPP
 * queues an RX event only while the RX FIFO's event flag is clear, and sets
 * the flag as it queues one. It queues that event after the enqueue, so a
 * reader that looks in between empties the FIFO first; VCL's poll then
 * drains the late event and leaves the flag set (its select and epoll clear
 * it for an empty FIFO), and the next enqueue sends no event. This clears
 * the flag of an empty FIFO, as VCL's select and epoll do. 1 if the FIFO
 * holds data afterwards (it arrived meanwhile, perhaps without an event:
 * look again before sleeping), 0 if it is empty or there is none, -1 for
 * no such session on the calling thread's worker. */
int
vppsys_sh_rearm_rx_event (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || (s->flags & VCL_SESSION_F_IS_VEP))
    return -1;
  /* A session not open reads as ready (an error) and has no event due. */
  if (!vcl_session_is_open (s) || !s->rx_fifo)
    return 0;
  if (svm_fifo_is_empty_cons (s->rx_fifo))
    svm_fifo_unset_event (s->rx_fifo);
  return !svm_fifo_is_empty_cons (s->rx_fifo);
}

/* A datagram session's place: 0 not a datagram session (or no such
 * session), 1 neither bound nor connected (VCL refuses to send on it,
 * where the kernel binds it to a free port first), 2 bound or connected. */
int
vppsys_sh_datagram_state (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || !s->is_dgram || (s->flags & VCL_SESSION_F_IS_VEP))
    return 0;
  if (s->session_state == VCL_STATE_CLOSED &&
      !(s->flags & VCL_SESSION_F_CONNECTED))
    return 1;
  return 2;
}

/* Whether the session has a peer: VCL answers VPPCOM_ATTR_GET_PEER_ADDR
 * with zeros, or what an earlier use of the record left, for a listener,
 * a socket never connected, or a datagram session never connected (bound
 * or not), where the kernel's getpeername fails with ENOTCONN. (A
 * cut-through connection's peer port is 0: the port cannot tell.)
 * -1: no session. */
int
vppsys_sh_has_peer (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s)
    return -1;
  if (s->flags & VCL_SESSION_F_IS_VEP)
    return 0;
  if (s->is_dgram)
    return (s->flags & VCL_SESSION_F_CONNECTED) != 0;
  if (s->session_state == VCL_STATE_LISTEN)
    return 0;
  if (s->session_state == VCL_STATE_CLOSED &&
      !(s->flags & VCL_SESSION_F_CONNECTED))
    return 0;
  return 1;
}

/* Outcome of a connect in progress: 1 connected (open, or already closing),
 * 0 still connecting, or the error a blocking connect would return. */
int
vppsys_sh_connect_state (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s)
    return VPPCOM_EBADFD;
  switch (s->session_state)
    {
    case VCL_STATE_READY:
    case VCL_STATE_VPP_CLOSING:
    case VCL_STATE_DISCONNECT:
      return 1;
    case VCL_STATE_DETACHED:
      return s->vpp_error == SESSION_E_ALREADY_LISTENING ? VPPCOM_EADDRINUSE :
							    VPPCOM_ECONNREFUSED;
    default:
      return 0;
    }
}

/*
 * After vppcom_poll: answers VPP's requests to take a connection
 * (REQ_WORKER_UPDATE, sent when a relative left a connection this worker
 * shares) that the poll read. vppcom_poll queues them without answering
 * (only VCL's select, epoll wait, accept and I/O that waits do), so a
 * forked child that waits in poll stayed a mere FIFO subscriber: VPP kept
 * telling the old owner of the connection's data, and the child woke only
 * when its wait's slice ended (100 ms per message). Answered with VCL's own
 * flush, which sends the worker updates and waits for VPP's replies; does
 * nothing while none is queued. The caller holds the worker's locks.
 */
void
vppsys_answer_worker_updates (void)
{
  vcl_worker_t *wrk = vppsys_worker_get ((uint32_t) __vcl_worker_index);

  if (wrk && vec_len (wrk->pending_session_wrk_updates))
    vcl_flush_mq_events ();
}

/* A stream whose non-blocking connect is still in progress (VCL marks it
 * UPDATED until VPP answers): 1, else 0. */
int
vppsys_sh_connecting (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  return s && !s->is_dgram && (s->flags & VCL_SESSION_F_CONNECTED) &&
	 s->session_state == VCL_STATE_UPDATED;
}

int vppsys_session_claim_events (uint32_t sh);
/* Exported by libvppcom, not declared in its headers. */
void vcl_worker_flush_mq_events (vcl_worker_t *wrk);

/*
 * VCL (25.10 to 26.10) checks little of a session's state before it sends
 * a listen or connect request to VPP: a listen on a session that connects
 * or has connected, or a second connect while the first is in progress,
 * goes out as a new request, and a session whose earlier request failed
 * (DETACHED) sends another and returns at once with the old error, its
 * reply still on the way. Such replies reach a session in a state they
 * were not meant for, or a freed one (vcl_session_bound_handler writes
 * through the session of a late "bound" reply without checking it is
 * there; a blocking connect waits the same way). These refuse what a
 * socket would refuse, without a request: listen only on a session that
 * has never connected (or listens already); connect not again on a stream
 * session that has (while in progress: EINPROGRESS; once failed: its
 * error, where a socket could try again).
 */
int
vppsys_session_listen (uint32_t sh, uint32_t q_len)
{
  vcl_session_t *s = vppsys_current_session (sh);

  if (s && !(s->flags & VCL_SESSION_F_IS_VEP) &&
      s->session_state != VCL_STATE_LISTEN)
    {
      if (s->flags & VCL_SESSION_F_CONNECTED)
	return VPPCOM_EINVAL;
      if (s->session_state == VCL_STATE_DETACHED)
	return s->vpp_error == SESSION_E_ALREADY_LISTENING ?
		 VPPCOM_EADDRINUSE :
		 VPPCOM_ECONNREFUSED;
      if (s->session_state != VCL_STATE_CLOSED)
	return VPPCOM_EINVAL;
    }
  return vppcom_session_listen (sh, q_len);
}

/*
 * A bound, unconnected datagram session (a connectionless listener in
 * VPP's terms) about to be closed, or connected (VCL unlistens it first):
 * waits, at most VPPSYS_DGRAM_SENT_WAIT_S seconds, until VPP has taken the
 * datagrams queued in its TX FIFO. VPP frees such a session and its FIFOs
 * as soon as it reads the unlisten (app_worker_stop_listen_session), and
 * its session node dispatches the control events it read before the IO
 * events of the same run, so a datagram sent just before the close, whose
 * TX event was still queued with the unlisten, was never sent (a
 * connected session's close waits for its TX FIFO, udp_session_close).
 * The kernel's close keeps what was sent. VPP normally takes a datagram
 * within microseconds; the bound is for a stopped or overloaded VPP.
 */
#define VPPSYS_DGRAM_SENT_WAIT_S 0.25

static void
vppsys_wait_dgrams_taken (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  vcl_worker_t *wrk;
  f64 deadline;

  if (!s || !s->is_dgram || (s->flags & VCL_SESSION_F_IS_VEP) ||
      s->session_state != VCL_STATE_LISTEN || !s->tx_fifo)
    return;
  /* (The session is the calling thread's worker's: it has one.) */
  wrk = vppsys_worker_get (vppsys_worker_index ());
  deadline = clib_time_now (&wrk->clib_time) + VPPSYS_DGRAM_SENT_WAIT_S;
  while (svm_fifo_max_dequeue_prod (s->tx_fifo) &&
	 clib_time_now (&wrk->clib_time) < deadline)
    usleep (20);
}

int
vppsys_session_connect (uint32_t sh, vppcom_endpt_t *server_ep)
{
  vcl_session_t *s = vppsys_current_session (sh);

  if (s && !(s->flags & VCL_SESSION_F_IS_VEP) && !s->is_dgram &&
      (s->flags & VCL_SESSION_F_CONNECTED))
    {
      switch (s->session_state)
	{
	case VCL_STATE_READY:
	case VCL_STATE_VPP_CLOSING:
	  /* Connected: VCL answers OK without a request. */
	  break;
	case VCL_STATE_UPDATED:
	  return VPPCOM_EINPROGRESS;
	case VCL_STATE_DETACHED:
	  return s->vpp_error == SESSION_E_ALREADY_LISTENING ?
		   VPPCOM_EADDRINUSE :
		   VPPCOM_ECONNREFUSED;
	case VCL_STATE_DISCONNECT:
	  return VPPCOM_ECONNRESET;
	default:
	  return VPPCOM_EINVAL;
	}
    }
  vppsys_wait_dgrams_taken (sh);
  return vppcom_session_connect (sh, server_ep);
}

/*
 * Moving a session between workers (per-thread workers, "migration").
 *
 * What can move: an epoll session whose members can all move (they are
 * unlinked and stay where they are: the caller re-registers them, see
 * vppsys_session_rejoin),
 * a session never opened, and a stream listener listening on its worker
 * (VPP moves the listener to the new worker: application_change_listener_
 * owner). Everything else answers VPPSYS_MOVE_NOT_MOVABLE: datagram
 * listeners, fork copies of listeners, sessions connecting or closing, and
 * connections.
 *
 * Connections do not move. VPP's worker update (SESSION_CTRL_EVT_WORKER_
 * UPDATE, what vcl_session_worker_update uses) gives a connection new FIFOs
 * on the new worker and copies the old ones with svm_fifo_clone, which
 * (25.10 to 26.10) copies the old head chunk whole into the new FIFO's first
 * chunk and keeps head and tail: right only for FIFOs of one chunk of their
 * full size. VPP makes a FIFO's first chunk 4 KiB (the segment's
 * pct_first_alloc is 0 for VCL apps) and grows it chunk by chunk, so after
 * some traffic the copy overruns the new chunk in VPP's segment and the
 * application reads through chunk pointers that do not exist (found
 * crashing in svm_fifo_copy_from_chunk_ma on the first read after a few
 * moves). No other message changes a connection's owning worker.
 *
 * move_out copies the session into *out and removes it from its worker: the
 * heap blocks it owns (extended config, endpoint attributes, a listener's
 * pending accepts) now belong to *out, so the freed original does not free
 * them; the worker forgets the session's VPP handle (and those of the
 * connections waiting in a listener's accept queue). move_in puts such a
 * copy on the calling thread's worker; take_over then has VPP deliver a
 * listener's new connections to that worker. discard frees what a copy
 * owns when it is not moved in after all.
 *
 * A listener leaves a stub in its place on the old worker. Until VPP has
 * handled take_over's worker update it announces new connections
 * (SESSION_CTRL_EVT_ACCEPTED) to the old worker, on that worker's queue:
 * the ones VPP sends between move_out's handling of that queue and its
 * handling of the update. Without a listener there, VCL drops them
 * (vcl_session_accepted: "couldn't find listen session"; its caller
 * vcl_handle_mq_event then reads the attributes of the null session it
 * got), and their peers wait for ever. The stub is a listen session that
 * keeps the listener's index and VPP handle, nothing else (no attributes:
 * VCL postpones no copy of the event; in no epoll set: no epoll wait
 * reports it), so VCL queues such connections on it as on any listener.
 * Once take_over has VPP's answer no more come, and stub_take (as the old
 * worker, or on its thread) takes the stub's queue and frees it;
 * listener_merge adds that queue to the moved listener's, marked as the
 * old worker's connections like those move_out took along.
 */
#define VPPSYS_MOVE_NO_WORKER (-1)
#define VPPSYS_MOVE_NO_SESSION (-2)
#define VPPSYS_MOVE_NOT_MOVABLE (-3)
#define VPPSYS_MOVE_VPP_TIMEOUT (-4)

/* Marks an accept queued on another worker (VPP gave the connection to
 * that worker): the worker that accepts it must take it over. VCL only
 * tests the two low bits of these flags. */
#define VPPSYS_ACCEPT_F_FOREIGN (1u << 30)

/* Marks a moved listener's stub (see above). VCL's session flags use the
 * low 11 bits of their 16. */
#define VPPSYS_SESSION_F_STUB ((vcl_session_flags_t) (1u << 15))
STATIC_ASSERT (sizeof (vcl_session_flags_t) >= 2,
	       "room for the stub flag in VCL's session flags");

static int
vppsys_session_is_stub (vcl_session_t *s)
{
  return (s->flags & VPPSYS_SESSION_F_STUB) != 0;
}

static int
vppsys_session_is_listener (vcl_session_t *s)
{
  return s->session_state == VCL_STATE_LISTEN;
}

static int
vppsys_session_is_movable (vcl_session_t *s)
{
  if (vppsys_session_is_stub (s))
    return 0;
  if (s->flags & VCL_SESSION_F_IS_VEP)
    return 1;
  if (s->session_state == VCL_STATE_CLOSED &&
      s->vpp_handle == SESSION_INVALID_HANDLE && !s->rx_fifo && !s->tx_fifo)
    return 1;
  if (vppsys_session_is_listener (s))
    return !vcl_session_is_cl (s) && s->vpp_handle != SESSION_INVALID_HANDLE &&
	   !(s->flags &
	     (VCL_SESSION_F_LISTEN_NO_MQ | VCL_SESSION_F_PENDING_LISTEN));
  /* A connection: see the note above. */
  return 0;
}

/* Removes s from the level-triggered ring of wrk (as VCL's own
 * vcl_epoll_lt_del). */
static void
vppsys_lt_del (vcl_worker_t *wrk, vcl_session_t *s)
{
  vcl_session_t *prev, *next;

  if (s->vep.lt_next == VCL_INVALID_SESSION_INDEX)
    return;
  if (s->vep.lt_next == s->session_index)
    wrk->ep_lt_current = VCL_INVALID_SESSION_INDEX;
  else
    {
      prev = vcl_session_get (wrk, s->vep.lt_prev);
      next = vcl_session_get (wrk, s->vep.lt_next);
      if (prev)
	prev->vep.lt_next = s->vep.lt_next;
      if (next)
	next->vep.lt_prev = s->vep.lt_prev;
      if (s->session_index == wrk->ep_lt_current)
	wrk->ep_lt_current = s->vep.lt_next;
    }
  s->vep.lt_next = VCL_INVALID_SESSION_INDEX;
  s->vep.lt_prev = VCL_INVALID_SESSION_INDEX;
}

/* Takes member s of an epoll set of wrk out of the set (VCL's
 * EPOLL_CTL_DEL), keeping the events it asked for in s->vep.ev. */
static void
vppsys_vep_unlink (vcl_worker_t *wrk, vcl_session_t *s)
{
  vcl_session_t *vep, *prev, *next;
  struct epoll_event ev = s->vep.ev;

  if (!(s->flags & VCL_SESSION_F_IS_VEP_SESSION))
    return;
  vep = vcl_session_get (wrk, s->vep.vep_sh & 0xFFFFFF);
  if (s->vep.prev_sh == s->vep.vep_sh)
    {
      if (vep)
	vep->vep.next_sh = s->vep.next_sh;
    }
  else if ((prev = vcl_session_get (wrk, s->vep.prev_sh & 0xFFFFFF)))
    prev->vep.next_sh = s->vep.next_sh;
  if (s->vep.next_sh != (uint32_t) ~0 &&
      (next = vcl_session_get (wrk, s->vep.next_sh & 0xFFFFFF)))
    next->vep.prev_sh = s->vep.prev_sh;
  vppsys_lt_del (wrk, s);
  memset (&s->vep, 0, sizeof (s->vep));
  s->vep.next_sh = ~0;
  s->vep.prev_sh = ~0;
  s->vep.vep_sh = ~0;
  s->vep.lt_next = VCL_INVALID_SESSION_INDEX;
  s->vep.lt_prev = VCL_INVALID_SESSION_INDEX;
  s->vep.ev = ev;
  s->flags &= ~VCL_SESSION_F_IS_VEP_SESSION;
  if (vcl_session_is_open (s))
    vcl_session_del_want_deq_ntf (s, SVM_FIFO_WANT_DEQ_NOTIF_IF_FULL);
}

/* Unlinks every member of epoll session vep (they stay on wrk). */
static void
vppsys_vep_unlink_all (vcl_worker_t *wrk, vcl_session_t *vep)
{
  vcl_session_t *m;
  uint32_t guard = pool_elts (wrk->sessions) + 1;

  while (vep->vep.next_sh != (uint32_t) ~0 && guard--)
    {
      m = vcl_session_get (wrk, vep->vep.next_sh & 0xFFFFFF);
      if (!m || !(m->flags & VCL_SESSION_F_IS_VEP_SESSION))
	{
	  vep->vep.next_sh = ~0;
	  break;
	}
      vppsys_vep_unlink (wrk, m);
    }
  vep->vep.next_sh = ~0;
}

/* Every member of epoll session vep can move too: a set whose members
 * include a connection stays with it (its events could not reach the set
 * on another worker). */
static int
vppsys_vep_members_movable (vcl_worker_t *wrk, vcl_session_t *vep)
{
  vcl_session_t *m;
  uint32_t next = vep->vep.next_sh;
  uint32_t guard = pool_elts (wrk->sessions) + 1;

  while (next != (uint32_t) ~0 && guard--)
    {
      m = vcl_session_get (wrk, next & 0xFFFFFF);
      if (!m)
	break;
      if ((m->flags & VCL_SESSION_F_IS_VEP) || !vppsys_session_is_movable (m))
	return 0;
      next = m->vep.next_sh;
    }
  return 1;
}

/* Handles worker wrk_index's message queue on the calling thread (whose
 * own worker it is not): the caller holds that worker's gate, so its thread
 * is outside VCL. */
static void
vppsys_flush_mq_as (uint32_t wrk_index)
{
  vcl_worker_t *wrk = vppsys_worker_get (wrk_index);
  uword saved = __vcl_worker_index;

  if (!wrk)
    return;
  __vcl_worker_index = wrk_index;
  vcl_worker_flush_mq_events (wrk);
  __vcl_worker_index = saved;
}

/* Turns listener s, just copied out (the copy owns its heap blocks), into
 * its stub: a bare listen session with the same index and VPP handle (the
 * worker's table still maps the handle to it). */
static void
vppsys_listener_leave_stub (vcl_session_t *s)
{
  uint32_t session_index = s->session_index;
  session_handle_t vpp_handle = s->vpp_handle;
  session_type_t session_type = s->session_type;

  memset (s, 0, sizeof (*s));
  s->session_index = session_index;
  s->vpp_handle = vpp_handle;
  s->parent_handle = SESSION_INVALID_HANDLE;
  s->session_type = session_type;
  s->session_state = VCL_STATE_LISTEN;
  s->listener_index = VCL_INVALID_SESSION_INDEX;
  s->flags = VPPSYS_SESSION_F_STUB;
  s->vep.next_sh = ~0;
  s->vep.prev_sh = ~0;
  s->vep.vep_sh = ~0;
  s->vep.lt_next = VCL_INVALID_SESSION_INDEX;
  s->vep.lt_prev = VCL_INVALID_SESSION_INDEX;
}

/* Drops the events worker wrk keeps for the next epoll wait (postponed or
 * I/O) that name session index session_index. */
static void
vppsys_forget_events_of (vcl_worker_t *wrk, uint32_t session_index)
{
  session_event_t *e;
  uint32_t i, kept = 0;

  for (i = 0; i < vec_len (wrk->unhandled_evts_vector); i++)
    {
      e = &wrk->unhandled_evts_vector[i];
      if (e->session_index == session_index &&
	  (e->postponed || e->event_type == SESSION_IO_EVT_RX ||
	   e->event_type == SESSION_IO_EVT_TX))
	continue;
      wrk->unhandled_evts_vector[kept++] = *e;
    }
  if (wrk->unhandled_evts_vector)
    vec_set_len (wrk->unhandled_evts_vector, kept);
}

int
vppsys_session_move_out (uint32_t wrk_index, uint32_t session_index,
			 vcl_session_t *out)
{
  vcl_worker_t *wrk;
  vcl_session_t *s;
  vcl_session_msg_t *m;
  int rv = 0;

  if (!vcm || !vcm->workers)
    return VPPSYS_MOVE_NO_WORKER;
  /* A listener leaving another thread's worker: connections VPP already
   * sent that worker wait in its queue; they go into the listener's accept
   * queue first and move with it. */
  s = vppsys_session_get (wrk_index, session_index);
  if (s && vppsys_session_is_listener (s) &&
      wrk_index != vppsys_worker_index ())
    vppsys_flush_mq_as (wrk_index);
  clib_spinlock_lock (&vcm->workers_lock);
  wrk = vppsys_worker_get (wrk_index);
  if (!wrk)
    {
      rv = VPPSYS_MOVE_NO_WORKER;
      goto done;
    }
  s = vppsys_session_get (wrk_index, session_index);
  if (!s)
    {
      rv = VPPSYS_MOVE_NO_SESSION;
      goto done;
    }
  if (!vppsys_session_is_movable (s))
    {
      rv = VPPSYS_MOVE_NOT_MOVABLE;
      goto done;
    }
  if ((s->flags & VCL_SESSION_F_IS_VEP) && !vppsys_vep_members_movable (wrk, s))
    {
      rv = VPPSYS_MOVE_NOT_MOVABLE;
      goto done;
    }
  if (s->flags & VCL_SESSION_F_IS_VEP)
    vppsys_vep_unlink_all (wrk, s);
  else
    vppsys_vep_unlink (wrk, s);
  /* VCL takes a session for epolled when its vep.ev asks for events, and
   * a level-triggered event then puts it in the worker's ring. A session
   * already out of its set keeps those events for its move (see
   * vppsys_vep_unlink) and can land in the ring that way; out of the ring
   * it goes here whatever its flags, or the ring keeps the index of a
   * freed session (or of the listener's stub) and the worker's next epoll
   * wait crashes walking it. */
  vppsys_lt_del (wrk, s);
  if (vppsys_session_is_listener (s))
    {
      /* Connections waiting in the accept queue were sent to this worker:
       * their handles point at the listener here. (The listener's own
       * handle stays, for its stub.) */
      clib_fifo_foreach (m, s->accept_evts_fifo, ({
			   vcl_session_table_del_vpp_handle (
			     wrk, m->accepted_msg.handle);
			   m->flags |= VPPSYS_ACCEPT_F_FOREIGN;
			 }));
    }
  else if (s->vpp_handle != SESSION_INVALID_HANDLE)
    vcl_session_table_del_vpp_handle (wrk, s->vpp_handle);
  clib_memcpy (out, s, sizeof (*s));
  if (vppsys_session_is_listener (s))
    {
      vppsys_listener_leave_stub (s);
      goto done;
    }
  s->ext_config = 0;
  s->tep_attrs = 0;
  s->accept_evts_fifo = 0;
  /* The FIFOs go with the copy (freeing would detach them). */
  s->rx_fifo = s->tx_fifo = 0;
  s->ct_rx_fifo = s->ct_tx_fifo = 0;
  vcl_session_free (wrk, s);
done:
  clib_spinlock_unlock (&vcm->workers_lock);
  return rv;
}

int
vppsys_session_move_in (const vcl_session_t *in)
{
  vcl_worker_t *wrk = vppsys_worker_get (vppsys_worker_index ());
  vcl_session_t *s;
  vcl_session_msg_t *m;
  uint32_t session_index;

  if (!wrk)
    return VPPSYS_MOVE_NO_WORKER;
  s = vcl_session_alloc (wrk);
  session_index = s->session_index;
  clib_memcpy (s, in, sizeof (*s));
  s->session_index = session_index;
  if (s->vpp_handle != SESSION_INVALID_HANDLE)
    {
      if (vppsys_session_is_listener (s))
	{
	  vcl_session_table_add_listener (wrk, s->vpp_handle, session_index);
	  clib_fifo_foreach (m, s->accept_evts_fifo, ({
			       vcl_session_table_add_vpp_handle (
				 wrk, m->accepted_msg.handle, session_index);
			     }));
	}
      else
	vcl_session_table_add_vpp_handle (wrk, s->vpp_handle, session_index);
    }
  return (int) session_index;
}

void
vppsys_session_discard (vcl_session_t *copy)
{
  if (copy->ext_config)
    clib_mem_free (copy->ext_config);
  vec_free (copy->tep_attrs);
  clib_fifo_free (copy->accept_evts_fifo);
  copy->ext_config = 0;
}

/*
 * Takes the stub a listener left at session_index of worker wrk_index (see
 * above) into *out, with the connections VCL queued on it, and frees it. A
 * caller that is not that worker's thread holds its gate: the worker's
 * queue is handled first, as that worker. On the worker's own thread (an
 * RPC, inside VCL's handling of the queue) the queue is not handled again:
 * VCL handles its messages in order, and the stub's connections came before
 * the request. 0, VPPSYS_MOVE_NO_WORKER or VPPSYS_MOVE_NO_SESSION (no stub
 * there).
 */
int
vppsys_listener_stub_take (uint32_t wrk_index, uint32_t session_index,
			   vcl_session_t *out)
{
  vcl_worker_t *wrk;
  vcl_session_t *s;
  vcl_session_msg_t *m;
  uword *p;
  int rv = 0;

  if (!vcm || !vcm->workers)
    return VPPSYS_MOVE_NO_WORKER;
  s = vppsys_session_get (wrk_index, session_index);
  if (s && vppsys_session_is_stub (s) && wrk_index != vppsys_worker_index ())
    vppsys_flush_mq_as (wrk_index);
  clib_spinlock_lock (&vcm->workers_lock);
  wrk = vppsys_worker_get (wrk_index);
  if (!wrk)
    {
      rv = VPPSYS_MOVE_NO_WORKER;
      goto done;
    }
  s = vppsys_session_get (wrk_index, session_index);
  if (!s || !vppsys_session_is_stub (s))
    {
      rv = VPPSYS_MOVE_NO_SESSION;
      goto done;
    }
  clib_fifo_foreach (m, s->accept_evts_fifo, ({
		       vcl_session_table_del_vpp_handle (
			 wrk, m->accepted_msg.handle);
		       m->flags |= VPPSYS_ACCEPT_F_FOREIGN;
		     }));
  p = hash_get (wrk->session_index_by_vpp_handles, s->vpp_handle);
  if (p && p[0] == session_index)
    vcl_session_table_del_listener (wrk, s->vpp_handle);
  clib_memcpy (out, s, sizeof (*s));
  s->accept_evts_fifo = 0;
  vppsys_forget_events_of (wrk, session_index);
  vcl_session_free (wrk, s);
done:
  clib_spinlock_unlock (&vcm->workers_lock);
  return rv;
}

/*
 * Adds the connections of stub (taken by stub_take) to the accept queue of
 * listener sh of the current worker, still marked as the old worker's;
 * frees what the stub's copy owns. If the listener is in an epoll set, its
 * next wait reports it readable. How many were added, or
 * VPPSYS_MOVE_NO_SESSION (then they are dropped with the copy).
 */
int
vppsys_listener_merge (uint32_t sh, vcl_session_t *stub)
{
  vcl_worker_t *wrk = vppsys_worker_get (vppsys_worker_index ());
  vcl_session_t *s = vppsys_current_session (sh);
  vcl_session_msg_t *m, *to;
  session_event_t *e;
  int n = 0;

  if (!wrk || !s || !vppsys_session_is_listener (s) ||
      vppsys_session_is_stub (s))
    {
      vppsys_session_discard (stub);
      return VPPSYS_MOVE_NO_SESSION;
    }
  clib_fifo_foreach (m, stub->accept_evts_fifo, ({
		       clib_fifo_add2 (s->accept_evts_fifo, to);
		       *to = *m;
		       vcl_session_table_add_vpp_handle (
			 wrk, m->accepted_msg.handle, s->session_index);
		       n++;
		     }));
  vppsys_session_discard (stub);
  if (n && (s->flags & VCL_SESSION_F_IS_VEP_SESSION) &&
      (s->vep.ev.events & EPOLLIN))
    {
      /* As VCL does for a non-blocking listener's new connection. */
      vec_add2 (wrk->unhandled_evts_vector, e, 1);
      clib_memset (e, 0, sizeof (*e));
      e->event_type = SESSION_CTRL_EVT_ACCEPTED;
      e->postponed = 1;
      e->session_index = s->session_index;
    }
  return n;
}

/* Sends VPP, on mq, a worker update for s from worker wrk naming worker
 * vpp_wrk_index (VPP's index of the app worker) as the new owner. Naming
 * wrk itself: VPP makes it the owner and answers on its queue; naming
 * another worker while wrk owns s: VPP asks that worker to take s
 * (REQ_WORKER_UPDATE), which it does with a worker update of its own. */
static void
vppsys_send_worker_update_naming (vcl_worker_t *wrk, vcl_session_t *s,
				  svm_msg_q_t *mq, uint32_t vpp_wrk_index)
{
  app_session_evt_t _app_evt, *app_evt = &_app_evt;
  session_worker_update_msg_t *mp;

  app_alloc_ctrl_evt_to_vpp (mq, app_evt, SESSION_CTRL_EVT_WORKER_UPDATE);
  mp = (session_worker_update_msg_t *) app_evt->evt->data;
  mp->client_index = wrk->api_client_handle;
  mp->handle = s->vpp_handle;
  mp->req_wrk_index = wrk->vpp_wrk_index;
  mp->wrk_index = vpp_wrk_index;
  app_send_ctrl_evt_to_vpp (mq, app_evt);
}

/* Sends VPP a worker update for s from the current worker: VPP makes this
 * worker the session's owner and answers on this worker's queue. */
static void
vppsys_send_worker_update (vcl_worker_t *wrk, vcl_session_t *s,
			   svm_msg_q_t *mq)
{
  vppsys_send_worker_update_naming (wrk, s, mq, wrk->vpp_wrk_index);
}

/*
 * Answers in place of VCL's vcl_send_session_worker_update, whose only
 * caller in VCL (vcl_handle_pending_wrk_updates, a worker taking a
 * connection VPP asked it to take) names the worker by its VCL index where
 * VPP reads the index of the app worker in VPP (application_get_worker).
 * The two differ for the worker of a forked process now and then (see
 * vppsys_worker_takes_handovers); VPP then gives the connection to
 * whichever worker has that index. Here the worker's own VCL index is
 * replaced by its VPP index; any other index is sent as given.
 *
 * libvls.so exports this function under VCL's name (the root build
 * script's aliases), and VCL calls it through its PLT, so a process that
 * preloads libvls.so sends the right index; vppsys_worker_updates_corrected
 * tells whether that is the case. Nothing in this library calls VCL's
 * function by that name (it would reach this one).
 */
void
vppsys_vcl_send_session_worker_update (vcl_worker_t *wrk, vcl_session_t *s,
				       uint32_t wrk_index)
{
  if (wrk_index == wrk->wrk_index)
    wrk_index = wrk->vpp_wrk_index;
  vppsys_send_worker_update_naming (wrk, s, s->vpp_evt_q, wrk_index);
}

/* Whether VCL's calls to vcl_send_session_worker_update reach
 * vppsys_vcl_send_session_worker_update (the process preloads libvls.so):
 * the first definition of that name in the process is this one. */
int
vppsys_worker_updates_corrected (void)
{
  static int corrected = -1;

  if (corrected < 0)
    corrected = dlsym (RTLD_DEFAULT, "vcl_send_session_worker_update") ==
		(void *) vppsys_vcl_send_session_worker_update;
  return corrected;
}

/* Waits at most wait_s seconds, handling worker wrk's queue, for VPP's
 * answer to a worker update for session_index (VCL's reply handler sets
 * the state to UPDATED), then gives the session back state. 0,
 * VPPSYS_MOVE_NO_SESSION or VPPSYS_MOVE_VPP_TIMEOUT. */
static int
vppsys_wait_worker_update (vcl_worker_t *wrk, uint32_t session_index,
			   vcl_session_state_t state, double wait_s)
{
  f64 deadline = clib_time_now (&wrk->clib_time) + wait_s;
  vcl_session_t *s;

  while (1)
    {
      s = vppsys_session_get (wrk->wrk_index, session_index);
      if (!s)
	return VPPSYS_MOVE_NO_SESSION;
      if (s->session_state == VCL_STATE_UPDATED)
	break;
      if (clib_time_now (&wrk->clib_time) > deadline)
	{
	  s->session_state = state;
	  return VPPSYS_MOVE_VPP_TIMEOUT;
	}
      if (svm_msg_q_is_empty (wrk->app_event_queue))
	usleep (20);
      else
	vcl_worker_flush_mq_events (wrk);
    }
  s->session_state = state;
  return 0;
}

/*
 * After move_in of a listener: makes the current worker the listener's
 * owner in VPP (new connections come here), waiting at most wait_s seconds
 * for VPP's answer while handling this worker's queue. 1 (a listener: its
 * stub on the old worker is to be taken, see above), 0 (nothing to do: a
 * session VPP does not know, an epoll set), VPPSYS_MOVE_NO_SESSION,
 * VPPSYS_MOVE_NOT_MOVABLE (a connection, see above), or
 * VPPSYS_MOVE_VPP_TIMEOUT (no answer: VPP may still send the previous
 * worker new connections).
 */
int
vppsys_session_take_over (uint32_t sh, double wait_s)
{
  vcl_worker_t *wrk = vcl_worker_get_current ();
  vcl_session_t *s = vppsys_current_session (sh);
  vcl_session_state_t state;
  uint32_t session_index;
  int rv;

  if (!s)
    return VPPSYS_MOVE_NO_SESSION;
  if (s->vpp_handle == SESSION_INVALID_HANDLE || (s->flags & VCL_SESSION_F_IS_VEP))
    return 0;
  if (!vppsys_session_is_listener (s))
    return VPPSYS_MOVE_NOT_MOVABLE;
  state = s->session_state;
  session_index = s->session_index;
  vppsys_send_worker_update (wrk, s, vcl_worker_ctrl_mq (wrk));
  rv = vppsys_wait_worker_update (wrk, session_index, state, wait_s);
  return rv ? rv : 1;
}

/*
 * A connection VPP gave another worker of this app, just accepted here (it
 * was queued on a listener that then moved here): hands it to the current
 * worker with VPP's worker update, but only while that is safe (see the
 * note on connections above): not a cut-through connection, and each FIFO
 * is still its first, only chunk,
 * starting at 0, with at most half of it used, so the copy VPP makes fits
 * the new FIFO's first chunk even if some more data arrives before VPP
 * handles the update (4 KiB chunks: the peer would have to send more than
 * 2 KiB within that time). Then tells VPP this worker's index for the
 * session, which also makes VPP signal data already waiting.
 * 0, VPPSYS_MOVE_NOT_MOVABLE (not safe: the caller aborts the connection),
 * VPPSYS_MOVE_NO_SESSION or VPPSYS_MOVE_VPP_TIMEOUT.
 */
static int
vppsys_fifo_fresh (svm_fifo_t *f)
{
  svm_fifo_chunk_t *c;
  u32 head, tail;

  if (!f || !f->shr || !f->fs_hdr)
    return 0;
  c = f_start_cptr (f);
  if (!c || c != f_end_cptr (f) || c->start_byte != 0)
    return 0;
  head = clib_atomic_load_acq_n (&f->shr->head);
  tail = clib_atomic_load_acq_n (&f->shr->tail);
  return head <= tail && tail <= c->length / 2;
}

/* An accepted cut-through connection: its FIFOs are shared with the peer
 * application, and VPP's worker update would replace (and free) them under
 * the peer. VPP's accept message names no addresses for cut-through
 * connections (only ports), and always both for connections through its
 * stack. */
static int
vppsys_accepted_cut_through (vcl_session_t *s)
{
  static const ip46_address_t zero;
  return !memcmp (&s->transport.rmt_ip, &zero, sizeof (zero)) &&
	 !memcmp (&s->transport.lcl_ip, &zero, sizeof (zero));
}

int
vppsys_session_take_over_accepted (uint32_t sh, double wait_s)
{
  vcl_worker_t *wrk = vcl_worker_get_current ();
  vcl_session_t *s = vppsys_current_session (sh);
  vcl_session_state_t state;
  svm_fifo_t *old_rx, *old_tx;
  fifo_segment_t *fs;
  uint32_t session_index;
  int rv;

  if (!s)
    return VPPSYS_MOVE_NO_SESSION;
  if (s->session_state != VCL_STATE_READY || !s->vpp_evt_q ||
      s->vpp_handle == SESSION_INVALID_HANDLE || s->ct_rx_fifo ||
      vppsys_accepted_cut_through (s) || !vppsys_fifo_fresh (s->rx_fifo) ||
      !vppsys_fifo_fresh (s->tx_fifo))
    return VPPSYS_MOVE_NOT_MOVABLE;
  state = s->session_state;
  session_index = s->session_index;
  old_rx = s->rx_fifo;
  old_tx = s->tx_fifo;
  vppsys_send_worker_update (wrk, s, s->vpp_evt_q);
  if ((rv = vppsys_wait_worker_update (wrk, session_index, state, wait_s)))
    return rv;
  s = vppsys_session_get (wrk->wrk_index, session_index);
  if (s->rx_fifo != old_rx)
    {
      /* The client-side structures of the FIFOs VPP replaced. */
      clib_rwlock_reader_lock (&vcm->segment_table_lock);
      fs = fifo_segment_get_segment_if_valid (&vcm->segment_main,
					      old_rx->segment_index);
      if (fs)
	{
	  vppsys_fifo_segment_free_client_fifo (fs, old_rx);
	  vppsys_fifo_segment_free_client_fifo (fs, old_tx);
	}
      clib_rwlock_reader_unlock (&vcm->segment_table_lock);
    }
  vppsys_session_claim_events (sh);
  return 0;
}

/* The next accept on listener sh (current worker) takes a connection VPP
 * gave another worker: 1, else 0. */
int
vppsys_listener_next_accept_foreign (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  vcl_session_msg_t *m;

  if (!s || !vppsys_session_is_listener (s) ||
      !clib_fifo_elts (s->accept_evts_fifo))
    return 0;
  m = clib_fifo_head (s->accept_evts_fifo);
  return (m->flags & VPPSYS_ACCEPT_F_FOREIGN) != 0;
}

/* Session sh is a member of an epoll set (on the current worker): 1, or 0;
 * -1 no session. */
int
vppsys_session_in_epoll (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s)
    return -1;
  return (s->flags & VCL_SESSION_F_IS_VEP_SESSION) != 0;
}

/* Puts session sh back into epoll set ep_sh (both on the current worker)
 * with the events it was registered with before it moved. */
int
vppsys_session_rejoin (uint32_t ep_sh, uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  struct epoll_event ev;

  if (!s)
    return VPPCOM_EBADFD;
  if (s->flags & VCL_SESSION_F_IS_VEP_SESSION)
    return 0;
  ev = s->vep.ev;
  return vppcom_epoll_ctl (ep_sh, EPOLL_CTL_ADD, sh, &ev);
}

/* A record the application closed, kept until VPP confirms (VCL's close
 * leaves it so); not an epoll set or a session never connected, which are
 * in the same state but have no VPP handle. */
static int
vppsys_closed_by_app (vcl_session_t *s)
{
  return s->session_state == VCL_STATE_CLOSED &&
	 !(s->flags & VCL_SESSION_F_IS_VEP) &&
	 s->vpp_handle != SESSION_INVALID_HANDLE;
}

/*
 * Per-process workers (fork).
 *
 * VCL's heap is a shared mapping, so a forked child sees every worker of the
 * application. fork_copy_sessions gives the child's (current) worker a copy
 * of its parent's sessions at the same indices: epoll links are re-based to
 * the child's worker, the child subscribes to each session's FIFOs, and
 * listeners are copied as "listening elsewhere" (no message queue) until
 * the child itself listens (listener_start). Heap blocks a record owns
 * are duplicated (or, for the parent's pending accepts, not copied), so
 * no two records point to the same block.
 */
int
vppsys_fork_copy_sessions (uint32_t parent_wrk_index)
{
  vcl_worker_t *wrk = vppsys_worker_get (vppsys_worker_index ());
  vcl_worker_t *parent = vppsys_worker_get (parent_wrk_index);
  vcl_session_t *s;
  u32 *dropped = 0, *si;

  if (!wrk || !parent)
    return -1;
  pool_free (wrk->sessions);
  hash_free (wrk->session_index_by_vpp_handles);
  wrk->sessions = pool_dup (parent->sessions);
  wrk->session_index_by_vpp_handles =
    hash_dup (parent->session_index_by_vpp_handles);
  /* The copies keep their places in the level-triggered epoll ring: the
   * ring's head comes along, or they would never be added again. */
  wrk->ep_lt_current = parent->ep_lt_current;

  pool_foreach (s, wrk->sessions)
    {
      if (vppsys_session_is_stub (s) || vppsys_closed_by_app (s))
	{
	  /* A moved listener's stub is the parent's to take; a session the
	   * parent closed (its record waits for VPP's cleanup notice, which
	   * goes to the parent) is nobody's here. Copying the closed ones
	   * made every child subscribe to their FIFOs and leave the copies in
	   * the heap all relatives share when it ended: a forking server
	   * whose parent kept closed records (connections its children closed
	   * in VPP) lost more of that heap with every child. */
	  vec_add1 (dropped, s->session_index);
	  continue;
	}
      if (s->vep.vep_sh != (uint32_t) ~0)
	s->vep.vep_sh = vcl_session_handle_from_index (s->vep.vep_sh & 0xFFFFFF);
      if (s->vep.next_sh != (uint32_t) ~0)
	s->vep.next_sh =
	  vcl_session_handle_from_index (s->vep.next_sh & 0xFFFFFF);
      if (s->vep.prev_sh != (uint32_t) ~0)
	s->vep.prev_sh =
	  vcl_session_handle_from_index (s->vep.prev_sh & 0xFFFFFF);
      /* Heap blocks the record points to are the parent's: the copy gets
       * its own (pending accepts were queued for the parent's worker). */
      s->accept_evts_fifo = 0;
      if (s->ext_config)
	{
	  uword len = clib_mem_size (s->ext_config);
	  void *cfg = clib_mem_alloc (len);
	  clib_memcpy (cfg, s->ext_config, len);
	  s->ext_config = cfg;
	}
      s->tep_attrs = vec_dup (s->tep_attrs);
      if (s->session_state == VCL_STATE_LISTEN)
	{
	  s->flags |= VCL_SESSION_F_LISTEN_NO_MQ;
	  s->flags &= ~VCL_SESSION_F_PENDING_LISTEN;
	  s->rx_fifo = s->tx_fifo = 0;
	}
      else if (s->rx_fifo && s->tx_fifo)
	vcl_session_share_fifos (s, s->rx_fifo, s->tx_fifo);
    }
  vec_foreach (si, dropped)
    {
      uword *p;

      s = pool_elt_at_index (wrk->sessions, *si);
      p = hash_get (wrk->session_index_by_vpp_handles, s->vpp_handle);
      if (p && p[0] == *si)
	vcl_session_table_del_listener (wrk, s->vpp_handle);
      /* (Its queued connections are the parent's, as is their queue; the
       * heap blocks it points to are the parent's record's.) */
      s->accept_evts_fifo = 0;
      pool_put (wrk->sessions, s);
    }
  vec_free (dropped);
  return 0;
}

/* Listener state of a session of the current worker. */
#define VPPSYS_NOT_LISTENER 0
#define VPPSYS_LISTENING_HERE 1
#define VPPSYS_LISTENING_ELSEWHERE 2

int
vppsys_listener_state (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || s->session_state != VCL_STATE_LISTEN)
    return VPPSYS_NOT_LISTENER;
  if (s->flags & VCL_SESSION_F_LISTEN_NO_MQ)
    return VPPSYS_LISTENING_ELSEWHERE;
  return VPPSYS_LISTENING_HERE;
}

/* The current worker starts listening on a listener copied at fork. */
int
vppsys_listener_start (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || s->session_state != VCL_STATE_LISTEN)
    return -1;
  if (!(s->flags & VCL_SESSION_F_LISTEN_NO_MQ) ||
      (s->flags & VCL_SESSION_F_PENDING_LISTEN))
    return 0;
  s->flags &= ~VCL_SESSION_F_LISTEN_NO_MQ;
  vcl_send_session_listen (vcl_worker_get_current (), s);
  return 1;
}

/* Worker wrk_index (another process's) stops listening on a listener. */
int
vppsys_listener_stop_on (uint32_t wrk_index, uint32_t session_index)
{
  vcl_session_t *s = vppsys_session_get (wrk_index, session_index);
  if (!s || s->session_state != VCL_STATE_LISTEN ||
      (s->flags & VCL_SESSION_F_LISTEN_NO_MQ))
    return 0;
  vcl_send_session_unlisten (vppsys_worker_get (wrk_index), s);
  s->flags |= VCL_SESSION_F_LISTEN_NO_MQ;
  return 1;
}

/*
 * VCL (25.10 to 26.10) crashes closing (unbinding) a listener while
 * connections wait in its accept queue: it answers them on the listener's
 * event queue, which a listener does not have. They are accepted and closed first (their
 * peers see the connection closed).
 */
static void
vppsys_refuse_pending_accepts (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);
  uint32_t n;
  int a;

  if (!s || s->session_state != VCL_STATE_LISTEN)
    return;
  n = clib_fifo_elts (s->accept_evts_fifo);
  while (n--)
    {
      /* Taken from the queue, so it never waits; may move `s`. */
      a = vppcom_session_accept (sh, 0, 0);
      if (a < 0)
	break;
      vppcom_session_close ((uint32_t) a);
    }
}

/*
 * VCL (25.10 to 26.10) postpones a non-blocking session's control events
 * (connected, disconnected, reset) into the worker's unhandled-events
 * vector when a call other than an epoll wait takes them from the message
 * queue (listen waiting for its reply, the end of a blocking wait, select,
 * an epoll wait with more events than room), and marks the session
 * PENDING_DISCONNECT so that it is freed only when the epoll wait handles
 * the event. A session can collect two such events; the first one handled
 * after the app closed the session frees it, the second dereferences the
 * freed session (vcl_epoll_wait_handle_mq_event, "s->flags &= ..." of a
 * postponed disconnect or reset). Events postponed for a session that has
 * since been freed also reach the new session that took its index.
 *
 * The app is closing the session: nobody is to hear of it again. Its
 * events leave the vector (postponed ones, and I/O events, which name it
 * the same way) and the session is no longer waiting for them, so VCL
 * frees it on the usual path (at once, or on VPP's clean-up). Once the
 * session is CLOSED, VCL postpones no disconnect or reset for it.
 */
static void
vppsys_forget_postponed_events (uint32_t sh)
{
  vcl_worker_t *wrk = vppsys_worker_get (vppsys_worker_index ());
  vcl_session_t *s = vppsys_current_session (sh);

  if (!s || !wrk)
    return;
  vppsys_forget_events_of (wrk, s->session_index);
  s->flags &= ~VCL_SESSION_F_PENDING_DISCONNECT;
}

/*
 * What a kernel socket reports with getsockopt(SO_ERROR) for session sh,
 * as a positive errno, or 0: for a connect that failed (VCL marks the
 * session DETACHED and keeps VPP's reason), and for a connection the peer
 * reset. VCL's VPPCOM_ATTR_GET_ERROR, which LDP's SO_ERROR asks, always
 * says 0 (25.10 to 26.10), so a program that connects without blocking and
 * checks SO_ERROR once the socket is writable (nginx, curl, libuv, Python's
 * asyncio) took a refused connection for an established one. Unlike the
 * kernel's, the error is not cleared by reading it.
 */
int
vppsys_session_socket_error (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);

  if (!s)
    return 0;
  if (s->session_state == VCL_STATE_DISCONNECT)
    return ECONNRESET;
  if (s->session_state != VCL_STATE_DETACHED || s->vpp_error == SESSION_E_NONE)
    return 0;
  switch (s->vpp_error)
    {
    case SESSION_E_TIMEDOUT:
      return ETIMEDOUT;
    case SESSION_E_NOROUTE:
      return ENETUNREACH;
    case SESSION_E_PORTINUSE:
      return EADDRINUSE;
    case SESSION_E_NOPORT:
      return EADDRNOTAVAIL;
    default:
      /* refused, nobody listening, and VPP's other reasons */
      return ECONNREFUSED;
    }
}

/* vppcom_session_close, safe for a listener with connections waiting, for
 * a session with postponed events, and for a bound datagram session's
 * last datagrams (vppsys_wait_dgrams_taken). */
int
vppsys_session_close (uint32_t sh)
{
  vppsys_wait_dgrams_taken (sh);
  vppsys_refuse_pending_accepts (sh);
  vppsys_forget_postponed_events (sh);
  return vppcom_session_close (sh);
}

/*
 * Whether VPP can hand connection s over to another worker without
 * corrupting it. VPP's worker update (app_worker_own_session, 25.10 to
 * 26.10) gives the connection new FIFOs and copies old ones that hold data
 * with svm_fifo_clone, which copies the old head chunk whole into the new
 * FIFO's first chunk and keeps head and tail: right only for a FIFO that
 * is still its first, only chunk. VPP starts a FIFO with a 4 KiB chunk and
 * grows it chunk by chunk, so once a connection carried more than that the
 * copy overruns the new chunk in VPP's segment (VPP crashes) or loses data.
 * Safe: a connected cut-through connection (VCL keeps its cut-through FIFOs
 * apart, and they stay where they are), or both FIFOs in their first chunk
 * with at most half of it used (data arriving before VPP handles the update
 * must still fit: vppsys_fifo_fresh). Never handed over: an accepted
 * cut-through connection, whose FIFOs are the ones the peer application
 * writes and reads: the update (app_worker_own_session) gives the session
 * FIFOs of its own and frees those (seen with socat forking a child per
 * connection: with the hand-over its children never got the client's
 * request; kept, they did; not reproduced by the fork tests' smaller
 * scenario).
 */
static int
vppsys_handover_is_safe (vcl_session_t *s)
{
  if (s->ct_rx_fifo)
    return 1;
  if (vppsys_accepted_cut_through (s))
    return 0;
  return vppsys_fifo_fresh (s->rx_fifo) && vppsys_fifo_fresh (s->tx_fifo);
}

/*
 * Whether worker w would take a connection VPP offers it. Asked by the
 * owner (REQ_WORKER_UPDATE), VCL answers with a worker update naming the
 * new owner by its VCL worker index (vcl_handle_pending_wrk_updates), which
 * VPP reads as the index of the app's worker in VPP (application_get_worker,
 * 25.10 to 26.10). The two are the same unless w is the worker of a forked
 * process: VCL and VPP each give a new worker the index freed last, and
 * workers of exited processes are freed in a different order by each (seen
 * with PostgreSQL forking a backend per connection while others exit). Then
 * VPP gives the connection to whichever worker has that index, maybe
 * another process's, frees the FIFOs w still reads and answers that other
 * worker: w waits 5 s for the answer and then reads the freed FIFOs. A
 * process that preloads libvls.so answers with the right index
 * (vppsys_vcl_send_session_worker_update), so there any worker takes them.
 */
static int
vppsys_worker_takes_handovers (vcl_worker_t *w)
{
  return w->wrk_index == w->vpp_wrk_index ||
	 vppsys_worker_updates_corrected ();
}

/* Whether the len bytes at p (within two pages) are mapped in this
 * process. */
static int
vppsys_range_mapped (const void *p, size_t len)
{
  uintptr_t page = (uintptr_t) getpagesize ();
  uintptr_t first = (uintptr_t) p & ~(page - 1);
  uintptr_t last = ((uintptr_t) p + len - 1) & ~(page - 1);
  unsigned char v[2];

  return mincore ((void *) first, last - first + 1, v) == 0;
}

/*
 * Whether fifo f, its header (in VCL's heap) and its shared part and
 * signals (in the segment), is mapped in this process. A connection
 * handed over to a relative gets new FIFOs in a segment only that
 * relative maps; when it exits without closing the connection, the
 * process cleaning up after it (vppsys_session_unshare acting as its
 * worker, notify_vpp 0) must not touch them: nobody else uses them, and
 * VPP frees them with the exited app worker.
 */
static int
vppsys_mapped_here (svm_fifo_t *f)
{
  return vppsys_range_mapped (f, sizeof (*f)) &&
	 vppsys_range_mapped (f->shr, sizeof (*f->shr)) &&
	 vppsys_range_mapped (f->signals, sizeof (*f->signals));
}

/* Whether session s has FIFOs this process does not map (any more): see
 * vppsys_session_unshare. */
static int
vppsys_fifos_unmapped (vcl_session_t *s)
{
  return s->rx_fifo && s->tx_fifo &&
	 !(vppsys_mapped_here (s->rx_fifo) && vppsys_mapped_here (s->tx_fifo));
}

/* vppsys_session_unshare kept the copy as VPP's owner (see there). */
#define VPPSYS_UNSHARE_KEPT 1

/* The current worker's copy sh of a connection others hold stays VPP's
 * owner: VPPSYS_UNSHARE_KEPT, or VPPCOM_EBADFD. */
int
vppsys_session_keep_owner (uint32_t sh)
{
  vcl_session_t *s = vppsys_current_session (sh);

  if (!s)
    return VPPCOM_EBADFD;
  /* This copy stays VPP's owner, out of any epoll set. The other workers
   * holding it are FIFO subscribers: VPP tells them of the peer's close or
   * reset, but of data and space only this owner (the layer's waits there
   * look at the FIFOs instead). The caller keeps watching it
   * (vppsys_kept_state). */
  if (s->flags & VCL_SESSION_F_IS_VEP_SESSION)
    vppcom_epoll_ctl (s->vep.vep_sh, EPOLL_CTL_DEL, sh, 0);
  return VPPSYS_UNSHARE_KEPT;
}

/*
 * The current worker drops its copy of a session other workers still use:
 * unsubscribes from the FIFOs, hands VPP's events to new_owner_wrk (a VCL
 * worker index, ~0 to keep the owner) and frees the copy. Only a listener
 * listening on this worker is unbound; nothing is sent for a session
 * without an event queue. With notify_vpp 0 nothing at all is sent to VPP
 * (the copy of a worker whose process is gone: VPP cleans up that app
 * worker itself, and messages on its behalf can reach VPP after it did).
 * A connection VPP cannot hand over (vppsys_handover_is_safe), or not to
 * that worker (vppsys_worker_takes_handovers), is kept:
 * VPPSYS_UNSHARE_KEPT, nothing changed but its leaving any epoll set.
 */
int
vppsys_session_unshare (uint32_t sh, uint32_t new_owner_wrk, int notify_vpp)
{
  vcl_worker_t *wrk, *new_owner;
  vcl_session_t *s = vppsys_current_session (sh);
  int listening_here, fifos_here;

  if (!s)
    return VPPCOM_EBADFD;
  listening_here = s->session_state == VCL_STATE_LISTEN &&
		   !(s->flags & VCL_SESSION_F_LISTEN_NO_MQ);
  if (notify_vpp && listening_here)
    {
      vppsys_refuse_pending_accepts (sh);
      s = vppsys_current_session (sh);
      if (!s)
	return VPPCOM_EBADFD;
    }
  wrk = vcl_worker_get_current ();
  new_owner = vppsys_worker_get (new_owner_wrk);
  /* An exited worker's copy (notify_vpp 0) may have FIFOs this process
   * never mapped: a connection whose FIFOs are in that child's own segment
   * (VPP tells only a segment's owner worker of it). PostgreSQL's
   * postmaster, cleaning up after a backend, died of that (SIGSEGV in
   * VCL's epoll removal below, clearing the dequeue-notice flag in the
   * FIFO's header). Such a copy is not open here any more: VCL's cleanup
   * then leaves its FIFOs alone, and it is not unsubscribed. A live
   * worker's own copy is mapped (mincore is not asked for it). */
  fifos_here = notify_vpp || !vppsys_fifos_unmapped (s);
  if (!fifos_here && vcl_session_is_open (s))
    s->session_state = VCL_STATE_DETACHED;
  if (notify_vpp && new_owner && s->vpp_evt_q &&
      s->session_state != VCL_STATE_LISTEN &&
      (!vppsys_handover_is_safe (s) ||
       !vppsys_worker_takes_handovers (new_owner)))
    /* VPP cannot hand it over. */
    return vppsys_session_keep_owner (sh);
  if (s->session_state != VCL_STATE_LISTEN && s->rx_fifo && s->tx_fifo &&
      fifos_here)
    {
      vppsys_svm_fifo_del_subscriber (s->rx_fifo, wrk->vpp_wrk_index);
      vppsys_svm_fifo_del_subscriber (s->tx_fifo, wrk->vpp_wrk_index);
    }
  if (notify_vpp && new_owner && s->vpp_evt_q &&
      s->session_state != VCL_STATE_LISTEN)
    /* VPP asks the new owner to take the session; that worker completes the
     * hand-over the next time it handles its queue (epoll_wait, select). */
    vppsys_send_worker_update_naming (wrk, s, s->vpp_evt_q,
				      new_owner->vpp_wrk_index);
  return vcl_session_cleanup (wrk, s, sh, notify_vpp && listening_here);
}

/*
 * A copy kept as VPP's owner (VPPSYS_UNSHARE_KEPT), on the current worker:
 * 0 open, 1 the peer closed, 2 reset, 3 gone (VPP cleaned it up, or no
 * such session). *vpp_handle gets its VPP handle.
 */
int
vppsys_kept_state (uint32_t sh, uint64_t *vpp_handle)
{
  vcl_session_t *s = vppsys_current_session (sh);

  if (!s)
    return 3;
  *vpp_handle = s->vpp_handle;
  switch (s->session_state)
    {
    case VCL_STATE_READY:
      return 0;
    case VCL_STATE_VPP_CLOSING:
      return 1;
    case VCL_STATE_DISCONNECT:
      return 2;
    default:
      return 3;
    }
}

/* Ends a kept copy; how is the Rust side's KeptEnd. how 1: closes the
 * connection in VPP too (no process uses it any more); 0: only frees the
 * record once VPP is done with it (EAGAIN before); 2: a relative closed
 * the connection in VPP: the record is marked closed by the app, which
 * VCL's own close does after sending its disconnect, so that VCL frees it
 * on VPP's cleanup notice (its late events still find it), but nothing is
 * sent: a second close could reach another connection, as VPP gives a
 * freed session's handle to the next. */
int
vppsys_kept_end (uint32_t sh, int how)
{
  vcl_worker_t *wrk = vcl_worker_get_current ();
  vcl_session_t *s = vppsys_current_session (sh);

  if (!s)
    return VPPCOM_EBADFD;
  if (how == 1)
    return vppsys_session_close (sh);
  if (how == 2 && s->session_state != VCL_STATE_DETACHED &&
      s->vpp_handle != SESSION_INVALID_HANDLE)
    {
      vppsys_forget_postponed_events (sh);
      s->session_state = VCL_STATE_CLOSED;
      return 0;
    }
  if (how == 0 && (s->session_state == VCL_STATE_READY ||
      s->session_state == VCL_STATE_VPP_CLOSING ||
      s->session_state == VCL_STATE_DISCONNECT))
    {
      /* VPP still has it: leave it to VPP's notices. */
      return VPPCOM_EAGAIN;
    }
  vppsys_forget_postponed_events (sh);
  return vcl_session_cleanup (wrk, s, sh, 0);
}

/* Frees worker wrk_index of process pid, which is gone. Nothing if the
 * worker is gone already (the process's exit handler freed it) or belongs
 * to another process: VCL's workers live in a heap forked processes share,
 * and a newer child may have been given the index since (fork per
 * connection); freeing that one freed its live hash tables, and its own
 * cleanup at exit then aborted in the heap (double free). Its descriptors
 * were the exited process's: the same numbers here may be files of this
 * process (VCL's cleanup closes the worker's mq epoll fd), so they are
 * forgotten first. */
void
vppsys_worker_cleanup_dead (uint32_t wrk_index, pid_t pid)
{
  vcl_worker_t *wrk = vppsys_worker_get (wrk_index);
  if (!wrk || wrk->current_pid != pid)
    return;
  wrk->mqs_epfd = -1;
  vcl_worker_cleanup (wrk, vcm->cfg.vpp_app_socket_api ? 0 : 1);
}

/* The rx FIFO of session_index on worker wrk_index as that worker sees it
 * (it changes when VPP hands the session over to that worker), or 0. */
uintptr_t
vppsys_session_rx_fifo (uint32_t wrk_index, uint32_t session_index)
{
  vcl_session_t *s = vppsys_session_get (wrk_index, session_index);
  return s ? (uintptr_t) s->rx_fifo : 0;
}

/*
 * After VPP handed a session over to the current worker (worker update),
 * VPP (25.10 to 26.10) keeps sending the session's I/O events with the
 * session index of the old owner's record (it is kept in VPP's fifo
 * structures, which the hand-over replaces without it). This tells VPP the index on this worker,
 * with the message that does so at accept time; VPP also re-signals data
 * already waiting. Not for listeners or sessions without an event queue.
 */
int
vppsys_session_claim_events (uint32_t sh)
{
  app_session_evt_t _app_evt, *app_evt = &_app_evt;
  session_accepted_reply_msg_t *rmp;
  vcl_session_t *s = vppsys_current_session (sh);

  if (!s || !s->vpp_evt_q || s->session_state == VCL_STATE_LISTEN ||
      s->vpp_handle == SESSION_INVALID_HANDLE)
    return -1;
  app_alloc_ctrl_evt_to_vpp (s->vpp_evt_q, app_evt,
			     SESSION_CTRL_EVT_ACCEPTED_REPLY);
  rmp = (session_accepted_reply_msg_t *) app_evt->evt->data;
  memset (rmp, 0, sizeof (*rmp));
  rmp->handle = s->vpp_handle;
  rmp->context = vcm->app_index;
#if VPPSYS_RELEASE >= 2602
  rmp->app_session_index = s->session_index;
#else
  /* 25.10: the message has no index; VPP reads it from the FIFOs' shared
   * headers, where VCL wrote this worker's index when it took the FIFOs
   * over at the hand-over (vcl_segment_attach_session). */
#endif
  rmp->retval = 0;
  app_send_ctrl_evt_to_vpp (s->vpp_evt_q, app_evt);
  return 0;
}

