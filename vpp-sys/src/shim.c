/*
 * vpp-sys C shim: what bindgen cannot express.
 *
 * - the thread-local worker index (binding a __thread variable as a Rust
 *   static links but reads garbage);
 * - vppinfra pool/hash macros (pool_is_free_index, pool_elts, hash_get);
 * - fields of the global `vcm` that are set once at start-up.
 *
 * Every function is a few lines, has no state of its own and never blocks.
 */
#include <vcl/vcl_private.h>

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

uint32_t
vppsys_n_workers (void)
{
  return vcm && vcm->workers ? pool_elts (vcm->workers) : 0;
}

/* Session lookup that never asserts: 0 when the worker or session is gone. */
vcl_session_t *
vppsys_session_get (uint32_t wrk_index, uint32_t session_index)
{
  vcl_worker_t *wrk;
  if (!vppsys_worker_is_valid (wrk_index))
    return 0;
  wrk = pool_elt_at_index (vcm->workers, wrk_index);
  if (!wrk->sessions || pool_is_free_index (wrk->sessions, session_index))
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
 * 64 KiB are free. */
int
vppsys_sh_write_nonblk (uint32_t sh)
{
  int rv;
  vcl_session_t *s = vppsys_current_session (sh);
  if (!s || (s->flags & VCL_SESSION_F_IS_VEP))
    return -1;
  rv = vcl_session_write_ready (s);
  if (!s->is_dgram)
    return rv != 0;
  return rv < 0 ? 1 : (rv > (64 << 10));
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
 * Moving a session between workers (per-thread workers, "migration").
 *
 * Only a session that holds nothing tied to its worker can move: an epoll
 * session with no members, or a session that was created and never opened
 * (no VPP session, no FIFOs, in no epoll set). Everything else answers
 * VPPSYS_MOVE_NOT_MOVABLE.
 *
 * move_out copies the session into *out and removes it from its worker: the
 * heap blocks it owns (extended config, endpoint attributes) now belong to
 * *out, so the freed original does not free them. move_in puts such a copy
 * on the calling thread's worker; discard frees what a copy owns when it is
 * not moved in after all.
 */
#define VPPSYS_MOVE_NO_WORKER (-1)
#define VPPSYS_MOVE_NO_SESSION (-2)
#define VPPSYS_MOVE_NOT_MOVABLE (-3)

static int
vppsys_session_is_movable (vcl_session_t *s)
{
  if (s->flags & VCL_SESSION_F_IS_VEP)
    return s->vep.next_sh == (uint32_t) ~0;
  return s->session_state == VCL_STATE_CLOSED &&
	 s->vpp_handle == SESSION_INVALID_HANDLE && !s->rx_fifo &&
	 !s->tx_fifo && !(s->flags & VCL_SESSION_F_IS_VEP_SESSION);
}

int
vppsys_session_move_out (uint32_t wrk_index, uint32_t session_index,
			 vcl_session_t *out)
{
  vcl_worker_t *wrk;
  vcl_session_t *s;
  int rv = 0;

  if (!vcm || !vcm->workers)
    return VPPSYS_MOVE_NO_WORKER;
  clib_spinlock_lock (&vcm->workers_lock);
  if (!vppsys_worker_is_valid (wrk_index))
    {
      rv = VPPSYS_MOVE_NO_WORKER;
      goto done;
    }
  wrk = pool_elt_at_index (vcm->workers, wrk_index);
  if (!wrk->sessions || pool_is_free_index (wrk->sessions, session_index))
    {
      rv = VPPSYS_MOVE_NO_SESSION;
      goto done;
    }
  s = pool_elt_at_index (wrk->sessions, session_index);
  if (!vppsys_session_is_movable (s))
    {
      rv = VPPSYS_MOVE_NOT_MOVABLE;
      goto done;
    }
  clib_memcpy (out, s, sizeof (*s));
  s->ext_config = 0;
  s->tep_attrs = 0;
  s->accept_evts_fifo = 0;
  vcl_session_free (wrk, s);
done:
  clib_spinlock_unlock (&vcm->workers_lock);
  return rv;
}

int
vppsys_session_move_in (const vcl_session_t *in)
{
  uint32_t wrk_index = vppsys_worker_index ();
  vcl_worker_t *wrk;
  vcl_session_t *s;
  uint32_t session_index;

  if (!vppsys_worker_is_valid (wrk_index))
    return VPPSYS_MOVE_NO_WORKER;
  wrk = pool_elt_at_index (vcm->workers, wrk_index);
  s = vcl_session_alloc (wrk);
  session_index = s->session_index;
  clib_memcpy (s, in, sizeof (*s));
  s->session_index = session_index;
  return (int) session_index;
}

void
vppsys_session_discard (vcl_session_t *copy)
{
  if (copy->ext_config)
    clib_mem_free (copy->ext_config);
  vec_free (copy->tep_attrs);
  copy->ext_config = 0;
}
