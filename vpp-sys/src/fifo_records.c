/*
 * vpp-sys: FIFO records and subscriber lists that forked processes share.
 *
 * VCL's heap is a MAP_SHARED mapping, so the processes forked from an
 * application share it, and with it every segment's allocator of FIFO
 * records (the svm_fifo_t a worker gets for each FIFO it attaches, accepts,
 * copies or frees: libsvm's clib_mem_bulk allocator, one per segment) and
 * the subscriber lists in the FIFOs' shared headers. VCL changes both
 * under the segment table's *reader* lock only, which lets any number of
 * callers in. One worker per process never races with itself, related
 * processes do: a parent accepting a connection (a record from the
 * listener's segment) while a forked child copied the parent's sessions
 * (records from the same segment) took the same record twice, and the
 * child crashed in svm_fifo_add_subscriber, or each used the other's FIFO;
 * other interleavings broke the allocator's free lists (a later crash in
 * clib_mem_bulk_alloc). And a process that handles VPP's unmapping of a
 * segment destroys its record allocator, records of other processes
 * included.
 *
 * So the client's records do not come from the segments' allocators
 * here: libvls.so exports the functions below under libsvm's names (see
 * the root build script; VCL calls them through its PLT), and they take
 * records from VCL's heap itself, whose allocator has a lock of its own
 * that works across processes (the heap's). Each record is preceded by a
 * cache line whose last word tells this file's records from the
 * allocator's (a free of one of those still goes to libsvm). Records do
 * not depend on their segment's table entry either (a copy reads only the
 * record it copies).
 *
 * Subscriber lists are changed one process at a time: a process-shared,
 * robust mutex in a page mapped when the library is loaded, so before the
 * process forks (an exec'd program loads its own). A holder that dies
 * leaves it to the next caller (EOWNERDEAD); a thread calling again while
 * it holds it (from a signal handler) goes on without it (error-checking:
 * EDEADLK) rather than waiting for itself.
 *
 * Where libvls.so is not preloaded (an application linking the crate)
 * only the shim's own calls come here; VCL's go to libsvm directly.
 */
#include <svm/fifo_segment.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>

static pthread_mutex_t *vppsys_fifo_mutex;

static void (*real_free_client_fifo) (fifo_segment_t *, svm_fifo_t *);
static void (*real_add_subscriber) (svm_fifo_t *, u8);
static void (*real_del_subscriber) (svm_fifo_t *, u8);

/* libsvm's function by that name: the next definition after this object
 * (this library's own exports of the name are these wrappers). */
static void *
vppsys_next (const char *name)
{
  return dlsym (RTLD_NEXT, name);
}

__attribute__ ((constructor)) static void
vppsys_fifo_records_init (void)
{
  pthread_mutexattr_t attr;
  void *page;

  real_free_client_fifo = vppsys_next ("fifo_segment_free_client_fifo");
  real_add_subscriber = vppsys_next ("svm_fifo_add_subscriber");
  real_del_subscriber = vppsys_next ("svm_fifo_del_subscriber");

  page = mmap (0, sizeof (pthread_mutex_t), PROT_READ | PROT_WRITE,
	       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED)
    return;
  pthread_mutexattr_init (&attr);
  pthread_mutexattr_setpshared (&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust (&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype (&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (pthread_mutex_init (page, &attr) == 0)
    vppsys_fifo_mutex = page;
  else
    munmap (page, sizeof (pthread_mutex_t));
  pthread_mutexattr_destroy (&attr);
}

/* Takes the mutex: 1 if taken (give it back with vppsys_fifo_unlock),
 * 0 if there is none or this thread holds it already. */
static int
vppsys_fifo_lock (void)
{
  int rv;

  if (!vppsys_fifo_mutex)
    return 0;
  rv = pthread_mutex_lock (vppsys_fifo_mutex);
  if (rv == EOWNERDEAD)
    {
      /* Its holder died inside one of these calls: what it changed may
       * be half done, which waiting forever would not mend. */
      pthread_mutex_consistent (vppsys_fifo_mutex);
      return 1;
    }
  return rv == 0;
}

static void
vppsys_fifo_unlock (int taken)
{
  if (taken)
    pthread_mutex_unlock (vppsys_fifo_mutex);
}

/* The wrappers resolve libsvm's function again if the constructor could
 * not (not loaded yet then). */
#define VPPSYS_REAL(var, name)                                                \
  do                                                                          \
    {                                                                         \
      if (!var)                                                               \
	var = vppsys_next (name);                                             \
    }                                                                         \
  while (0)

/* The word before a record from vppsys_record_alloc: live or freed. */
#define VPPSYS_RECORD_LIVE 0x7670707379734c56ull
#define VPPSYS_RECORD_FREED 0x7670707379734644ull

typedef struct
{
  u64 unused[7];
  u64 mark;
} vppsys_record_head_t;

STATIC_ASSERT (sizeof (vppsys_record_head_t) == CLIB_CACHE_LINE_BYTES,
	       "a record starts on a cache line");

/* A zeroed record from VCL's heap, or 0. */
static svm_fifo_t *
vppsys_record_alloc (void)
{
  vppsys_record_head_t *h;
  svm_fifo_t *f;

  h = clib_mem_alloc_aligned_or_null (sizeof (*h) + sizeof (svm_fifo_t),
				      CLIB_CACHE_LINE_BYTES);
  if (!h)
    return 0;
  h->mark = VPPSYS_RECORD_LIVE;
  f = (svm_fifo_t *) (h + 1);
  clib_memset (f, 0, sizeof (*f));
  return f;
}

svm_fifo_t *
vppsys_fifo_segment_alloc_fifo_w_offset (fifo_segment_t *fs, uword offset)
{
  svm_fifo_t *f = vppsys_record_alloc ();

  if (!f)
    return 0;
  /* As libsvm's: the FIFO's shared part at offset in the segment. */
  f->fs_hdr = fs->h;
  f->shr = (svm_fifo_shared_t *) ((u8 *) fs->h + offset);
  f->ooos_list_head = OOO_SEGMENT_INVALID_INDEX;
  f->segment_index = SVM_FIFO_INVALID_INDEX;
  f->refcnt = 1;
  return f;
}

svm_fifo_t *
vppsys_fifo_segment_duplicate_fifo (fifo_segment_t *fs, svm_fifo_t *f)
{
  svm_fifo_t *nf = vppsys_record_alloc ();

  if (nf)
    clib_memcpy (nf, f, sizeof (*f));
  return nf;
}

void
vppsys_fifo_segment_free_client_fifo (fifo_segment_t *fs, svm_fifo_t *f)
{
  vppsys_record_head_t *h;
  int taken;

  if (!f)
    return;
  h = (vppsys_record_head_t *) f - 1;
  if (h->mark == VPPSYS_RECORD_LIVE)
    {
      h->mark = VPPSYS_RECORD_FREED;
      clib_mem_free (h);
      return;
    }
  /* Freed already (by a relative cleaning up after this worker, say):
   * nothing to give back. */
  if (h->mark == VPPSYS_RECORD_FREED)
    return;
  /* One of the segment allocator's (not preloaded when it was made). */
  VPPSYS_REAL (real_free_client_fifo, "fifo_segment_free_client_fifo");
  taken = vppsys_fifo_lock ();
  real_free_client_fifo (fs, f);
  vppsys_fifo_unlock (taken);
}

typedef void (vppsys_subscriber_fn_t) (svm_fifo_t *, u8);

/* libsvm's change of f's subscriber list (*real, resolved by name if the
 * constructor could not), with the mutex held. */
static void
vppsys_subscriber_change (vppsys_subscriber_fn_t **real, const char *name,
			  svm_fifo_t *f, u8 subscriber)
{
  int taken;

  VPPSYS_REAL (*real, name);
  taken = vppsys_fifo_lock ();
  (*real) (f, subscriber);
  vppsys_fifo_unlock (taken);
}

void
vppsys_svm_fifo_add_subscriber (svm_fifo_t *f, u8 subscriber)
{
  vppsys_subscriber_change (&real_add_subscriber, "svm_fifo_add_subscriber",
			    f, subscriber);
}

void
vppsys_svm_fifo_del_subscriber (svm_fifo_t *f, u8 subscriber)
{
  vppsys_subscriber_change (&real_del_subscriber, "svm_fifo_del_subscriber",
			    f, subscriber);
}
