/* libtppp public C API: the only header a host needs.
 *
 * Why this shape: hosts in C, Rust, Go and Python (ctypes) bind to it without a
 * compiler or CUDA headers, so it uses only <stdint.h>/<stddef.h>, opaque
 * handles, fixed-width fields, status returns and versioned params structs
 * (struct_size first, filled by *_params_init, append-only), like nccl.h and
 * llama.h. Conventions: docs/DESIGN.md section 7.
 *
 * Errors: every function returns a tppp_status (int32_t). On failure the
 * out-params are untouched and tppp_last_error() holds a thread-local message
 * naming the rank, peer, operation and underlying library text.
 *
 * Thread safety: calls on one group (and on requests it made) must be
 * serialised by the host, except tppp_group_abort and
 * tppp_group_get_async_error, which any thread may call at any time.
 * tppp_get_unique_id, tppp_status_string, tppp_version and friends are
 * thread-safe.
 */
#ifndef TPPP_C_API_H
#define TPPP_C_API_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define TPPP_API __declspec(dllexport)
#else
#define TPPP_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- versions */
#define TPPP_VERSION_MAJOR 0
#define TPPP_VERSION_MINOR 5
#define TPPP_VERSION_PATCH 0
/* major * 10000 + minor * 100 + patch */
#define TPPP_VERSION_CODE \
  (TPPP_VERSION_MAJOR * 10000 + TPPP_VERSION_MINOR * 100 + TPPP_VERSION_PATCH)

/* The library's version code (compare with TPPP_VERSION_CODE). */
TPPP_API uint32_t tppp_version(void);
/* ABI check: call as tppp_abi_check(TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR).
 * Returns TPPP_OK when the library can serve a host built against that header
 * (same major, library minor >= header minor), else TPPP_ERR_VERSION_MISMATCH. */
TPPP_API int32_t tppp_abi_check(uint32_t header_major, uint32_t header_minor);

/* ---------------------------------------------------------------- statuses */
/* Values are fixed forever. */
typedef int32_t tppp_status;
#define TPPP_OK 0
#define TPPP_ERR_INVALID_ARGUMENT 1 /* a null pointer, bad size, bad enum   */
#define TPPP_ERR_INVALID_USAGE 2    /* wrong call order, mismatched peers   */
#define TPPP_ERR_OUT_OF_MEMORY 3
#define TPPP_ERR_IO 4               /* file missing, truncated, unreadable  */
#define TPPP_ERR_FORMAT 5           /* malformed file or message            */
#define TPPP_ERR_CUDA 6
#define TPPP_ERR_NCCL 7
#define TPPP_ERR_UCX 8
#define TPPP_ERR_SYSTEM 9           /* an OS call failed (errno text given) */
#define TPPP_ERR_REMOTE 10          /* a peer failed or died                */
#define TPPP_ERR_TIMEOUT 11         /* a blocking step ran past timeout_ms  */
#define TPPP_ERR_IN_PROGRESS 12     /* an async request is not done yet     */
#define TPPP_ERR_ABORTED 13         /* the group was aborted                */
#define TPPP_ERR_VERSION_MISMATCH 14
#define TPPP_ERR_NOT_SUPPORTED 15   /* not built in, or not on this device  */
#define TPPP_ERR_INTERNAL 16

/* Static text for a status ("TPPP_ERR_TIMEOUT"); never NULL. */
TPPP_API const char* tppp_status_string(tppp_status s);
/* Thread-local detail of the last failed call on this thread ("" if none yet);
 * a successful call leaves it as it was (like ncclGetLastError), so read it
 * right after the status says failure. Valid until the next failure on this
 * thread. */
TPPP_API const char* tppp_last_error(void);

/* ---------------------------------------------------------------- logging */
#define TPPP_LOG_ERROR 0
#define TPPP_LOG_WARN 1
#define TPPP_LOG_INFO 2
#define TPPP_LOG_DEBUG 3
typedef void (*tppp_log_fn)(int32_t level, const char* message, void* user);
/* Process-wide. fn == NULL restores the default (stderr, level from the
 * TPPP_LOG_LEVEL environment variable, default WARN). Messages above
 * max_level are dropped. The callback may run on internal threads. */
TPPP_API tppp_status tppp_set_log_callback(tppp_log_fn fn, void* user,
                                           int32_t max_level);

/* ---------------------------------------------------------------- dtypes */
#define TPPP_DTYPE_F32 0
#define TPPP_DTYPE_F16 1
#define TPPP_DTYPE_BF16 2
#define TPPP_DTYPE_F8E4M3 3
#define TPPP_DTYPE_F8E5M2 4
#define TPPP_DTYPE_I8 5
#define TPPP_DTYPE_U8 6
#define TPPP_DTYPE_I32 7
#define TPPP_DTYPE_I64 8
/* Bytes per element into *out. */
TPPP_API tppp_status tppp_dtype_size(int32_t dtype, size_t* out);

/* ---------------------------------------------------------------- tensors */
#define TPPP_MEM_HOST 0
#define TPPP_MEM_PINNED 1
#define TPPP_MEM_CUDA 2
#define TPPP_MAX_DIMS 8
/* DLPack-like descriptor. The library never owns `data`. */
typedef struct tppp_tensor {
  void* data;
  int32_t mem_kind;               /* TPPP_MEM_*                          */
  int32_t device;                 /* CUDA ordinal, -1 for host memory    */
  int32_t dtype;                  /* TPPP_DTYPE_*                        */
  int32_t ndim;                   /* 0..TPPP_MAX_DIMS                    */
  int64_t shape[TPPP_MAX_DIMS];
  const int64_t* strides;         /* in elements; NULL = contiguous      */
} tppp_tensor;

/* ---------------------------------------------------------------- groups */
typedef struct tppp_group_s* tppp_group_t;
typedef struct tppp_request_s* tppp_request_t;

/* Opaque bootstrap id (rank 0's listening address + a random magic), passed
 * by the host to every rank by any channel, like ncclUniqueId. Single use:
 * rank 0 must call tppp_group_create in the process that made it. */
#define TPPP_UNIQUE_ID_BYTES 128
typedef struct tppp_unique_id {
  char internal[TPPP_UNIQUE_ID_BYTES];
} tppp_unique_id;

#define TPPP_TRANSPORT_AUTO 0
#define TPPP_TRANSPORT_UCX 1
#define TPPP_TRANSPORT_NCCL 2

#define TPPP_DEVICE_CPU (-1)

typedef struct tppp_group_params {
  uint32_t struct_size; /* sizeof(tppp_group_params) as the host knows it   */
  int32_t tp_size;      /* default 1 (from_env: 1 means tp = world / pp)    */
  int32_t pp_size;      /* default 1; world_size must equal tp * pp          */
  int32_t device;       /* TPPP_DEVICE_CPU (default) or a CUDA ordinal       */
  int32_t transport;    /* TPPP_TRANSPORT_*; default AUTO                    */
  int32_t timeout_ms;   /* every blocking step; default 60000; > 0           */
} tppp_group_params;

/* Fills defaults; size is sizeof *p as the caller knows it. */
TPPP_API tppp_status tppp_group_params_init(tppp_group_params* p, size_t size);

/* Called on rank 0 only: opens the bootstrap listener (TPPP_BOOTSTRAP_ADDR or
 * the first non-loopback IPv4 interface, else 127.0.0.1; port from
 * TPPP_BOOTSTRAP_PORT or ephemeral). */
TPPP_API tppp_status tppp_get_unique_id(tppp_unique_id* out);

/* Collective over world_size processes: returns when every rank has joined
 * and every transport connection is up, or fails within timeout_ms (+1 s). */
TPPP_API tppp_status tppp_group_create(const tppp_unique_id* id,
                                       int32_t world_size, int32_t rank,
                                       const tppp_group_params* params,
                                       tppp_group_t* out);

/* Same, with world, rank and the bootstrap address read from the launcher's
 * environment: torchrun / tppp-run (RANK, WORLD_SIZE, LOCAL_RANK,
 * MASTER_ADDR, MASTER_PORT), Open MPI (OMPI_COMM_WORLD_*), Slurm
 * (SLURM_PROCID, SLURM_NTASKS). With none of them set the process runs
 * alone, world 1 and rank 0 (logged at INFO), like an MPI program started
 * without mpirun; half of a pair (RANK without WORLD_SIZE) is
 * TPPP_ERR_INVALID_USAGE naming it. See README "Launchers". */
TPPP_API tppp_status tppp_group_create_from_env(const tppp_group_params* params,
                                                tppp_group_t* out);

/* Any thread, any time: every pending and later call on the group (and its
 * requests) returns TPPP_ERR_ABORTED. Idempotent. */
TPPP_API tppp_status tppp_group_abort(tppp_group_t g);

/* Any thread: the first asynchronous error seen (a peer that died, an abort),
 * or TPPP_OK, into *out. */
TPPP_API tppp_status tppp_group_get_async_error(tppp_group_t g,
                                                tppp_status* out);

/* Frees the group; accepts NULL. Requests still alive keep the transport
 * until tppp_request_free, so freeing them later is safe. */
TPPP_API void tppp_group_destroy(tppp_group_t g);

/* Scope of a call: the whole group, this rank's TP group (same pp_rank,
 * contiguous global ranks) or its PP group (same tp_rank, stride tp). Peer
 * and root arguments are ranks inside the scope. */
#define TPPP_SCOPE_WORLD 0
#define TPPP_SCOPE_TP 1
#define TPPP_SCOPE_PP 2

typedef struct tppp_group_info {
  uint32_t struct_size;  /* set by the caller to sizeof, like params        */
  int32_t world_size;
  int32_t rank;          /* global rank = pp_rank * tp_size + tp_rank        */
  int32_t tp_size;
  int32_t tp_rank;
  int32_t pp_size;
  int32_t pp_rank;
  int32_t prev_stage_rank; /* global rank of the same tp_rank one stage up, -1 */
  int32_t next_stage_rank; /* same, one stage down, -1 on the last stage       */
  int32_t local_rank;      /* from the launcher, else -1                        */
  int32_t device;
  int32_t transport;       /* the transport actually chosen                    */
  int32_t timeout_ms;
} tppp_group_info;

TPPP_API tppp_status tppp_group_get_info(tppp_group_t g, tppp_group_info* out);
/* Size of a scope and this rank's index in it. */
TPPP_API tppp_status tppp_group_scope(tppp_group_t g, int32_t scope,
                                      int32_t* rank, int32_t* size);
/* Global rank of member `index` of this rank's `scope`. */
TPPP_API tppp_status tppp_group_global_rank(tppp_group_t g, int32_t scope,
                                            int32_t index, int32_t* out);

/* ---------------------------------------------------------------- p2p */
/* Buffers are in the group's memory space (host memory for a CPU group).
 * A receive must be posted with exactly the size sent: a mismatch fails with
 * TPPP_ERR_INVALID_USAGE naming both sizes. Messages between a pair with the
 * same (scope, tag) arrive in order. tag: 0 .. 2^31-1. `stream` is a
 * cudaStream_t for device groups and ignored (may be NULL) on the CPU. */
TPPP_API tppp_status tppp_isend(tppp_group_t g, int32_t scope, int32_t peer,
                                int32_t tag, const void* buf, size_t bytes,
                                void* stream, tppp_request_t* out);
TPPP_API tppp_status tppp_irecv(tppp_group_t g, int32_t scope, int32_t peer,
                                int32_t tag, void* buf, size_t bytes,
                                void* stream, tppp_request_t* out);
/* *done = 1 when complete (then the request's result is returned). Returns
 * the request's error if it failed, TPPP_ERR_TIMEOUT once it has been pending
 * longer than the group's timeout. */
TPPP_API tppp_status tppp_request_test(tppp_request_t r, int32_t* done);
/* Blocks until done, failed, aborted or timed out (group timeout_ms). */
TPPP_API tppp_status tppp_request_wait(tppp_request_t r);
/* Cancels if pending (a transfer a live peer has begun gets up to 0.2 s to
 * finish first, so the buffer is not touched after this returns); accepts
 * NULL. */
TPPP_API void tppp_request_free(tppp_request_t r);

TPPP_API tppp_status tppp_send(tppp_group_t g, int32_t scope, int32_t peer,
                               int32_t tag, const void* buf, size_t bytes,
                               void* stream);
TPPP_API tppp_status tppp_recv(tppp_group_t g, int32_t scope, int32_t peer,
                               int32_t tag, void* buf, size_t bytes,
                               void* stream);

/* ---------------------------------------------------------------- collectives */
/* Every rank of a scope makes the same collective calls in the same order.
 * Each call is numbered per scope and carries its fingerprint (collective,
 * op, dtype, count, root), so a call never returns TPPP_OK with another
 * call's data:
 *  - calls that differ across ranks fail on those ranks with
 *    TPPP_ERR_INVALID_USAGE naming both sides;
 *  - a rank whose call fails its argument checks (a layer forward with a bad
 *    shape included) still counts the call and tells the scope's other
 *    ranks, whose same call fails with TPPP_ERR_REMOTE naming that rank and
 *    its status; a layer forward with 0 rows on some ranks only makes the
 *    others fail with TPPP_ERR_INVALID_USAGE ("made no such call").
 * After a call that failed its own argument checks (INVALID_ARGUMENT, before
 * any byte moved) and its peers' REMOTE naming that failure, the group stays
 * usable: the next call pairs correctly on every rank. After any other
 * failure (INVALID_USAGE from differing calls, TIMEOUT, REMOTE for a dead
 * peer, ABORTED) destroy the group: the failed call's messages may still be
 * in flight (they can never pass for another call's data, but a later call
 * may fail on them). A failed call lets its transfers with live peers finish
 * (for up to 0.2 s) before it returns; those with a stuck peer may still
 * read or write its buffers until tppp_group_destroy returns, so free them
 * after it.
 * Not detectable (as in NCCL): a rank that skips a call without calling it at
 * all; its peers fail with TPPP_ERR_TIMEOUT. Device buffers over NCCL are
 * not fingerprinted: there a mismatch ends in TIMEOUT and the watchdog's
 * abort. */
#define TPPP_OP_SUM 0
#define TPPP_OP_MAX 1
#define TPPP_OP_MIN 2

/* recv[i] = op over the scope of send[i], i < count. send == recv is allowed.
 * Dtypes: F32, F16 and BF16 (arithmetic in f32, rounded once per step, like
 * NCCL), I32, I64. Every rank ends with the same bits. */
TPPP_API tppp_status tppp_all_reduce(tppp_group_t g, int32_t scope,
                                     const void* send, void* recv, size_t count,
                                     int32_t dtype, int32_t op, void* stream);
/* recv = concat over scope ranks of send (count elements each); recv holds
 * count * scope_size elements. send may be recv + rank * count * esize. */
TPPP_API tppp_status tppp_all_gather(tppp_group_t g, int32_t scope,
                                     const void* send, void* recv, size_t count,
                                     int32_t dtype, void* stream);
/* buf on `root` (a scope rank) is copied to every rank of the scope. */
TPPP_API tppp_status tppp_broadcast(tppp_group_t g, int32_t scope, void* buf,
                                    size_t count, int32_t dtype, int32_t root,
                                    void* stream);
TPPP_API tppp_status tppp_barrier(tppp_group_t g, int32_t scope);

/* ---------------------------------------------------------------- checkpoints */
/* A Hugging Face safetensors checkpoint: a .safetensors file, or a directory
 * with model.safetensors or model.safetensors.index.json (+ config.json).
 * Opening validates every header, the index against the shards and the
 * shapes against config.json, reading no tensor data. A checkpoint handle is
 * used by one thread at a time. Strings it returns live until close. */
typedef struct tppp_checkpoint_s* tppp_checkpoint_t;

TPPP_API tppp_status tppp_checkpoint_open(const char* path, tppp_checkpoint_t* out);
TPPP_API void tppp_checkpoint_close(tppp_checkpoint_t c);
TPPP_API tppp_status tppp_checkpoint_num_tensors(tppp_checkpoint_t c, size_t* out);
/* Index of `name` in name order, or TPPP_ERR_INVALID_ARGUMENT. */
TPPP_API tppp_status tppp_checkpoint_find(tppp_checkpoint_t c, const char* name, size_t* out);

typedef struct tppp_tensor_info {
  uint32_t struct_size;
  int32_t dtype;           /* TPPP_DTYPE_*, or -1 for a type libtppp cannot load (F64, BOOL, ...) */
  const char* name;
  const char* dtype_name;  /* as in the file: "BF16" */
  const char* file;        /* the shard holding it */
  int32_t ndim;            /* shape[] holds the first TPPP_MAX_DIMS dims */
  int32_t reserved;
  int64_t shape[TPPP_MAX_DIMS];
  uint64_t nbytes;
} tppp_tensor_info;
/* index in [0, num_tensors): tensors in name order. */
TPPP_API tppp_status tppp_checkpoint_tensor_info(tppp_checkpoint_t c, size_t index, tppp_tensor_info* out);

typedef struct tppp_model_config {
  uint32_t struct_size;
  int32_t present;  /* 1 if config.json was found, else the rest is 0 */
  int64_t hidden_size, num_heads, num_kv_heads, head_dim, intermediate_size, num_layers, vocab_size;
  int32_t tie_word_embeddings;
  int32_t reserved;
} tppp_model_config;
TPPP_API tppp_status tppp_checkpoint_model_config(tppp_checkpoint_t c, tppp_model_config* out);

/* Where a rank sits, for the sharding rules (docs/DESIGN.md section 4). */
typedef struct tppp_shard_params {
  uint32_t struct_size;
  int32_t tp_size, tp_rank, pp_size, pp_rank; /* defaults 1, 0, 1, 0 */
  const int32_t* layer_split; /* NULL: even split, remainder to earlier stages;
                                 else pp_size layer counts */
} tppp_shard_params;
TPPP_API tppp_status tppp_shard_params_init(tppp_shard_params* p, size_t size);

#define TPPP_SHARD_REPLICATED 0
#define TPPP_SHARD_COLUMN 1      /* split dim 0 */
#define TPPP_SHARD_ROW 2         /* split dim 1 */
#define TPPP_SHARD_KV_COLUMN 3   /* dim 0 by kv heads; replicated when kv_heads < tp */
#define TPPP_SHARD_VOCAB 4       /* dim 0, vocab padded to a multiple of tp; pad rows are 0 */
#define TPPP_SHARD_OTHER_STAGE 5 /* another pipeline stage's: nothing to read */

typedef struct tppp_slice {
  uint32_t struct_size;
  int32_t rule;        /* TPPP_SHARD_* */
  int32_t dim;         /* split dimension */
  int32_t pad;         /* 1: rows past the tensor's end are zero padding */
  int64_t parts, index;
  int32_t ndim;        /* the slice's shape */
  int32_t reserved;
  int64_t shape[TPPP_MAX_DIMS];
  uint64_t read_bytes; /* bytes this rank reads from the file */
  uint64_t out_bytes;  /* bytes of the slice in the file's dtype */
  const char* source;  /* tensor actually read (lm_head tied -> embed_tokens) */
} tppp_slice;
/* The slice of `name` this grid position owns. Fails with
 * TPPP_ERR_INVALID_ARGUMENT naming the tensor when the rule needs a dimension
 * divisible by tp and it is not. */
TPPP_API tppp_status tppp_checkpoint_shard_info(tppp_checkpoint_t c, const char* name,
                                                const tppp_shard_params* p, tppp_slice* out);
/* shard_info for every tensor: checks a grid before anything is allocated. */
TPPP_API tppp_status tppp_checkpoint_validate_grid(tppp_checkpoint_t c, const tppp_shard_params* p);
/* Reads a slice (NULL: the whole tensor) into dst: contiguous, shape equal
 * to the slice's; F32/F16/BF16 convert among themselves on the way. Only the
 * slice's bytes are read. Host/pinned dst: done on return. CUDA dst (CUDA
 * builds): pieces go through pinned staging buffers and cudaMemcpyAsync on
 * the default stream (load_async: on `stream`, a cudaStream_t), reads
 * overlapping copies; on return every copy has completed. Each copy is
 * waited for at most 60 s: a stream held up longer by other work gives
 * TPPP_ERR_TIMEOUT. */
TPPP_API tppp_status tppp_checkpoint_load(tppp_checkpoint_t c, const char* name, const tppp_slice* slice,
                                          const tppp_tensor* dst);
TPPP_API tppp_status tppp_checkpoint_load_async(tppp_checkpoint_t c, const char* name, const tppp_slice* slice,
                                                const tppp_tensor* dst, void* stream);

/* The shard params of this group member: tp/pp sizes and ranks (layer_split NULL). */
TPPP_API tppp_status tppp_shard_params_from_group(tppp_group_t g, tppp_shard_params* p);
/* Loads the slice of each of n tensors for p and stacks them along dim 0
 * into dst, in order: the merged per-rank layouts [gate_r; up_r] and
 * [q_r; k_r; v_r]. The slices must agree on every other dimension. */
TPPP_API tppp_status tppp_checkpoint_load_merged(tppp_checkpoint_t c, const char* const* names, size_t n,
                                                 const tppp_shard_params* p, const tppp_tensor* dst,
                                                 void* stream);

/* Everything one rank owns, in one call: the sharding rules pick the slices,
 * reads run in parallel across files and tensors, only the slices' bytes are
 * read, and every rule is checked before anything is allocated. */
typedef struct tppp_weights_s* tppp_weights_t;
/* Return non-zero to cancel (the load then fails with TPPP_ERR_ABORTED).
 * Called on the thread that called tppp_checkpoint_load_rank. */
typedef int32_t (*tppp_progress_fn)(uint64_t done_bytes, uint64_t total_bytes, void* user);
/* Host-owned storage: return `bytes` of host memory for tensor `name` (the
 * host frees it after tppp_weights_free), or NULL to fail the load. */
typedef void* (*tppp_alloc_fn)(size_t bytes, const char* name, void* user);

typedef struct tppp_load_params {
  uint32_t struct_size;
  int32_t dtype;        /* -1 (default): keep the file's; else F32/F16/BF16 convert */
  int32_t num_threads;  /* 0 (default): min(8, cores) */
  int32_t reserved;
  tppp_progress_fn progress;
  void* progress_user;
  tppp_alloc_fn alloc;  /* NULL (default): one library-owned, pre-touched arena */
  void* alloc_user;
  /* TPPP_DEVICE_CPU (default): host memory. A CUDA ordinal: every tensor in
   * one device allocation the weights own (tppp_weights_get then describes
   * TPPP_MEM_CUDA memory), filled by parallel reads into page-locked staging
   * buffers whose copies run on num_streams streams (0: one per thread), reads
   * overlapping copies; alloc must be NULL. */
  int32_t device;
  int32_t num_streams;
} tppp_load_params;
TPPP_API tppp_status tppp_load_params_init(tppp_load_params* p, size_t size);
TPPP_API tppp_status tppp_checkpoint_load_rank(tppp_checkpoint_t c, const tppp_shard_params* shard,
                                               const tppp_load_params* params, tppp_weights_t* out);
TPPP_API tppp_status tppp_weights_count(tppp_weights_t w, size_t* out);
/* Entry i (name order of the checkpoint; a tied lm_head last): *name lives
 * until tppp_weights_free; *out describes host memory, or device memory for
 * a load with params.device set. */
TPPP_API tppp_status tppp_weights_get(tppp_weights_t w, size_t i, const char** name, tppp_tensor* out);
TPPP_API tppp_status tppp_weights_find(tppp_weights_t w, const char* name, tppp_tensor* out);
/* Frees library-owned storage; accepts NULL. */
TPPP_API void tppp_weights_free(tppp_weights_t w);

/* ---------------------------------------------------------------- TP layers */
/* Tensor-parallel layers of a Llama/Qwen2 block on the group's device (CPU
 * groups: OpenBLAS, f32 accumulate; CUDA groups: cuBLASLt, bf16/f16 with f32
 * accumulate, f32 without TF32 unless TPPP_ALLOW_TF32=1). Each rank binds its
 * own shard (tppp_layer_weight_shape says which) from host buffers or a
 * checkpoint; forward is collective over the group's TP scope. Shapes are
 * row-major.
 * CUDA groups: x, y and ids are device memory (TPPP_MEM_CUDA) of the group's
 * device; work is queued on `stream` (a cudaStream_t, NULL = legacy default)
 * and y is ready when the stream reaches it. Token ids on the device are not
 * read back: an id outside the vocabulary gives a zero row (host ids are
 * checked). After one forward with the largest M, a forward allocates nothing
 * and can be captured in a CUDA graph, when the TP collectives go over NCCL
 * (one GPU per rank) or TP = 1; UCX staging (ranks sharing a GPU) waits for
 * the stream and refuses a capturing one with TPPP_ERR_INVALID_USAGE.
 * Streams: the layers of one group share a cuBLASLt workspace and reuse
 * freed scratch in the order of the last stream used, like a cuBLAS handle:
 * use one stream per group, or before switching make the new stream wait
 * for the old one (cudaEventRecord + cudaStreamWaitEvent). */
typedef struct tppp_layer_s* tppp_layer_t;

#define TPPP_LAYER_COLUMN 0     /* W[out/tp, in]; y[M, out/tp], or [M, out] with gather_output   */
#define TPPP_LAYER_ROW 1        /* W[out, in/tp]; x[M, in/tp] (input_is_parallel) or [M, in];
                                   partial sums all-reduced, bias added once after              */
#define TPPP_LAYER_REPLICATED 2 /* W[out, in] on every rank                                     */
#define TPPP_LAYER_GATE_UP 3    /* W[2*I/tp, H] = [gate_r; up_r]; y[M, I/tp] = silu(gate) * up  */
#define TPPP_LAYER_QKV 4        /* W[(nh/tp + 2*kv_r)*hd, H]; kv heads replicated when kv < tp  */
#define TPPP_LAYER_EMBEDDING 5  /* W[ceil(V/tp), H]; x = token ids [M] (I32/I64); y[M, H]        */
#define TPPP_LAYER_LM_HEAD 6    /* W[ceil(V/tp), H]; y = logits [M, V]; tppp_layer_argmax       */
#define TPPP_LAYER_MLP 7        /* GATE_UP then ROW(down): x[M, H] -> y[M, H]; 2 weight parts   */

typedef struct tppp_layer_params {
  uint32_t struct_size;
  int32_t kind;              /* TPPP_LAYER_* */
  int32_t dtype;             /* F32 (default), F16 or BF16: x, y and the stored weights */
  int32_t bias;              /* 1: the layer has a bias (COLUMN, ROW, REPLICATED, QKV)   */
  int64_t in_features;       /* GATE_UP/MLP/EMBEDDING/LM_HEAD: the hidden size           */
  int64_t out_features;      /* GATE_UP/MLP: the intermediate size                       */
  int32_t gather_output;     /* COLUMN: all-gather y to [M, out]                         */
  int32_t input_is_parallel; /* ROW: default 1                                           */
  int64_t num_heads, num_kv_heads, head_dim; /* QKV */
  int64_t vocab_size;        /* EMBEDDING, LM_HEAD */
  int32_t gather_to_rank0;   /* LM_HEAD: logits only on TP rank 0 (others pass y NULL)   */
  int32_t reserved;
} tppp_layer_params;
TPPP_API tppp_status tppp_layer_params_init(tppp_layer_params* p, size_t size);
TPPP_API tppp_status tppp_layer_create(tppp_group_t g, const tppp_layer_params* p, tppp_layer_t* out);
TPPP_API void tppp_layer_destroy(tppp_layer_t l);
/* Shape of this rank's shard of weight part `part` (0; MLP: 0 gate_up, 1 down). */
TPPP_API tppp_status tppp_layer_weight_shape(tppp_layer_t l, int32_t part, int32_t* ndim, int64_t* shape);
/* Copies this rank's shard from host memory (any float dtype); bias NULL
 * when the layer has none. */
TPPP_API tppp_status tppp_layer_bind(tppp_layer_t l, int32_t part, const tppp_tensor* weight,
                                     const tppp_tensor* bias);
/* Reads this rank's slices by Hugging Face name: prefix "model.layers.3.mlp"
 * (GATE_UP, MLP), "model.layers.3.self_attn" (QKV), or the tensor without
 * ".weight" (COLUMN/ROW/REPLICATED: "model.layers.3.self_attn.o_proj";
 * "model.embed_tokens"; "lm_head", tied when config.json says so). */
TPPP_API tppp_status tppp_layer_bind_checkpoint(tppp_layer_t l, tppp_checkpoint_t c, const char* prefix);
/* Collective over the TP scope. y may be NULL only on LM_HEAD ranks other
 * than TP rank 0 with gather_to_rank0. */
TPPP_API tppp_status tppp_layer_forward(tppp_layer_t l, const tppp_tensor* x, const tppp_tensor* y, void* stream);
/* LM_HEAD: greedy token per row into ids (I64 [M]) on every TP rank; only
 * (max, index) per row crosses the wire. */
TPPP_API tppp_status tppp_layer_argmax(tppp_layer_t l, const tppp_tensor* x, const tppp_tensor* ids, void* stream);

/* ---------------------------------------------------------------- pipeline */
/* Micro-batch scheduler over the group's PP scope (docs/DESIGN.md section 6). A
 * pure plan (per stage: RECV m / FORWARD m / SEND m) is replayed with
 * receives posted ahead and sends in flight; each TP rank sends 1/tp of an
 * activation and the next stage all-gathers it. While a run is submitted the
 * host must not use the group; the stage function runs on an internal thread.
 * A failing stage function, or a dead stage, makes every stage's run fail
 * (REMOTE downstream, TIMEOUT at the latest after timeout_ms). */
typedef struct tppp_scheduler_s* tppp_scheduler_t;

#define TPPP_POLICY_FILL_DRAIN 0  /* GPipe forward over M micro-batches            */
#define TPPP_POLICY_DECODE_RING 1 /* last stage hands each micro-batch back to the
                                     first for the next step (contract below)      */
/* Micro-batches: stage 0's `in` [rows, hidden] is cut by rows into M
 * micro-batches in order, micro-batch m holding rows/M rows plus one when
 * m < rows % M (rows >= M, else INVALID_ARGUMENT). Every stage function call
 * gets (microbatch, step) and in/out of that micro-batch's rows.
 * FILL_DRAIN: one step (0). Stage s > 0 gets stage s-1's output; the last
 * stage's outputs are joined in order into `out`.
 * Both policies: `in` is read and `out` written on the internal thread, so
 * the host keeps both unchanged until tppp_scheduler_wait returns.
 * DECODE_RING, steps = S: `in` is read once, for step 0 of stage 0. At step
 * k > 0, stage 0's input for micro-batch m is the last stage's output for m
 * at step k-1 (the hand-back: what the last stage writes is what stage 0
 * reads next, e.g. the embedding of the sampled token); stage s > 0 gets
 * stage s-1's output of the same step. With P = 1 a stage's output is its
 * own next input. `out` receives only the last step's (S-1) outputs,
 * joined in order; earlier steps' outputs are not kept. Micro-batch m's
 * steps run in order; different micro-batches overlap, so M >= P keeps
 * every stage busy. M < P is allowed: it runs correctly with stages idle
 * (theory_bubble = 1 - M/P). */

/* in: this stage's input [rows, hidden]; out: [rows, hidden] to fill. Return
 * 0, or a non-zero code that fails the run on every stage. */
typedef int32_t (*tppp_stage_fn)(void* user, int32_t microbatch, int32_t step, const tppp_tensor* in,
                                 const tppp_tensor* out);

typedef struct tppp_scheduler_params {
  uint32_t struct_size;
  int32_t policy;            /* TPPP_POLICY_*; default FILL_DRAIN */
  int32_t num_microbatches;  /* default 1 */
  int32_t steps;             /* DECODE_RING steps; default 1 */
  int32_t dtype;             /* activation dtype; default F32 */
  int32_t reserved;
  int64_t hidden;            /* activation columns; divisible by tp */
  /* CUDA groups: activations live in device memory (in/out may be host or
   * device memory; stage functions get device tensors). Compute is ordered on
   * this cudaStream_t (NULL: the legacy default stream): a stage function
   * queues its work on it and returns without waiting; the scheduler moves
   * activations on a stream of its own, ordered with events, and waits once
   * at the end of a run. */
  void* stream;
} tppp_scheduler_params;

typedef struct tppp_scheduler_stats {
  uint32_t struct_size;
  int32_t stage, num_microbatches, steps;
  double wall_ms, busy_ms, idle_ms;
  double bubble;         /* idle / wall, measured on this stage */
  double theory_bubble;  /* (P-1)/(M+P-1) fill-drain; 1 - min(M,P)/P decode ring */
} tppp_scheduler_stats;

TPPP_API tppp_status tppp_scheduler_params_init(tppp_scheduler_params* p, size_t size);
TPPP_API tppp_status tppp_scheduler_create(tppp_group_t g, const tppp_scheduler_params* p, tppp_scheduler_t* out);
TPPP_API tppp_status tppp_scheduler_set_stage_fn(tppp_scheduler_t s, tppp_stage_fn fn, void* user);
/* Built-in stage: this stage's layers in order (e.g. TP MLP blocks), used
 * when no stage function is set. The layers must outlive the scheduler. */
TPPP_API tppp_status tppp_scheduler_add_layer(tppp_scheduler_t s, tppp_layer_t layer);
/* Stage 0 passes the batch (in, [rows, hidden], split into micro-batches by
 * rows); the last stage passes out (joined in order); others NULL. */
TPPP_API tppp_status tppp_scheduler_submit(tppp_scheduler_t s, const tppp_tensor* in, const tppp_tensor* out);
TPPP_API tppp_status tppp_scheduler_poll(tppp_scheduler_t s, int32_t* done);
/* The submitted run's result. */
TPPP_API tppp_status tppp_scheduler_wait(tppp_scheduler_t s);
/* submit + wait. */
TPPP_API tppp_status tppp_scheduler_run(tppp_scheduler_t s, const tppp_tensor* in, const tppp_tensor* out);
TPPP_API tppp_status tppp_scheduler_get_stats(tppp_scheduler_t s, tppp_scheduler_stats* out);
/* Collective over the world: rank 0 writes a Chrome trace (Perfetto), a track per rank. */
TPPP_API tppp_status tppp_scheduler_write_trace(tppp_scheduler_t s, const char* path);
/* Waits for a submitted run; accepts NULL. */
TPPP_API void tppp_scheduler_destroy(tppp_scheduler_t s);

/* ---------------------------------------------------------------- api table */
/* ---------------------------------------------------------------- model */
/* A Llama / Qwen2 / Qwen3 (and Mistral) decoder over the group's TP x PP
 * grid (docs/DESIGN.md section 9): each rank loads only its stage's layers
 * and its TP rank's heads (kv heads replicated when kv_heads < tp), the
 * embedding slice on the first stage and the LM head slice on the last,
 * and keeps a paged KV cache of its layers and kv heads. World rank 0 is
 * the driver: it gets the outputs. Two ways to drive it. By default every
 * rank calls tppp_model_forward, _remove_seq and _generate in the same order
 * with the same arguments (the driver's output buffers aside); a bad batch
 * is refused identically on every rank before any traffic. With
 * params.follow, only the driver calls them (it checks each call, then sends
 * it to the others) while every other rank calls tppp_model_follow, which
 * runs the driver's calls until the driver calls tppp_model_stop (or
 * destroys the model). The group must outlive the model; the
 * checkpoint may be closed after create. CPU backend (the CUDA backend's
 * decoder ops are the next step: NOT_SUPPORTED naming the op until then).
 * Unsupported configs (another architecture or RoPE type, sliding window,
 * MoE, mlp_bias) are refused at create with NOT_SUPPORTED naming the field. */
typedef struct tppp_model_s* tppp_model_t;

#define TPPP_OUT_LOGITS 1 /* f32 [n_out, vocab] */
#define TPPP_OUT_IDS 2    /* greedy token ids, I64 [n_out] (ties: the smallest id) */

typedef struct tppp_model_params {
  uint32_t struct_size;
  int32_t dtype;     /* compute dtype F32/F16/BF16; default -1: the checkpoint's */
  int32_t page_size; /* KV tokens per page; default 16 */
  int32_t max_seqs;  /* sequence ids are [0, max_seqs); default 64 */
  int64_t kv_tokens; /* KV capacity per rank in tokens, all sequences; default 4096 */
  int32_t max_batch; /* tokens per forward; default 2048 */
  int32_t follow;    /* 1: only the driver calls; the others call tppp_model_follow. Default 0 */
  int32_t max_inflight; /* host steps (tppp_model_submit) whose results may be on their way at once;
                           default 0: the number of pipeline stages */
  const int32_t* layer_split; /* [pp] layers per stage; NULL (default): the split that evens out the
                                 stages' weight bytes, the last stage's LM head included */
} tppp_model_params;

typedef struct tppp_model_info {
  uint32_t struct_size;
  int32_t dtype;
  const char* architecture; /* "LlamaForCausalLM", ...; lives as long as the model */
  int64_t vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, head_dim;
  int64_t layer_begin, layer_end; /* this rank's stage: layers [begin, end) */
  int32_t page_size, num_pages, free_pages, max_seqs;
  /* EOS token ids: generation_config.json's eos_token_id, else config.json's
   * (one id or a list; none when absent); live as long as the model */
  const int32_t* eos_ids;
  int32_t n_eos;
  int32_t steps_in_flight; /* host steps submitted and not yet taken by wait/poll (this rank's count) */
} tppp_model_info;

/* llama_batch: n_tokens tokens; token i is token[i] at position pos[i] of
 * sequence seq_id[i]; logits[i] != 0 asks for its outputs (logits NULL:
 * only the last token's). Prefill and decode of many sequences mix freely.
 * Each sequence's positions continue its cache in batch order (a new or
 * removed sequence starts at 0); a gap, a rewrite, a sequence id outside
 * [0, max_seqs) or a token outside the vocabulary is INVALID_ARGUMENT naming
 * the token and sequence, and a cache too small OUT_OF_MEMORY naming
 * capacity and demand; either way nothing is written. */
typedef struct tppp_batch {
  int32_t n_tokens;
  const int32_t* token;
  const int32_t* pos;
  const int32_t* seq_id;
  const int8_t* logits;
} tppp_batch;

typedef struct tppp_model_stats {
  uint32_t struct_size;
  int32_t stage;
  double busy_ms; /* this rank's compute inside model calls */
  double wall_ms; /* the calls' time */
  int64_t tokens; /* batch tokens run */
  int64_t graph_replays;  /* CUDA: decode steps run as a replayed CUDA graph (TPPP_CUDA_GRAPHS) */
  int64_t graph_captures; /* CUDA: graphs captured (a bucket's first, or after its buffers moved) */
} tppp_model_stats;

/* Fills defaults; size is sizeof *p as the caller knows it. */
TPPP_API tppp_status tppp_model_params_init(tppp_model_params* p, size_t size);
/* Collective over the group: every rank with the same checkpoint. */
TPPP_API tppp_status tppp_model_create(tppp_group_t g, tppp_checkpoint_t c, const tppp_model_params* p,
                                       tppp_model_t* out);
TPPP_API tppp_status tppp_model_get_info(tppp_model_t m, tppp_model_info* out);
/* Runs the batch. outputs: TPPP_OUT_* flags, the same on every rank. On the
 * driver, for the n_out flagged tokens in batch order: logits f32
 * [n_out, vocab] and/or ids [n_out] (each non-NULL when asked for); other
 * ranks pass NULL. n_out (may be NULL) gets the count on every rank. */
TPPP_API tppp_status tppp_model_forward(tppp_model_t m, const tppp_batch* b, int32_t outputs, float* logits,
                                        int64_t* ids, int32_t* n_out);
/* Frees the sequence's KV pages; its id can start again at position 0. */
TPPP_API tppp_status tppp_model_remove_seq(tppp_model_t m, int32_t seq_id);

/* Sampling one output row on the last stage, in transformers' order:
 * repetition penalty (over the sequence's tokens, prompt included), then
 * frequency / presence penalties (OpenAI's, over its output tokens), then
 * temperature, top-k, top-p, min-p, then the draw. The draw is Gumbel-max
 * with noise keyed on (seed, position, token id) alone, so a seed gives the
 * same tokens on every TP x PP grid, batch composition, prefill chunking and
 * number of steps in flight (and the same tokens to two requests with the
 * same seed: a server gives unseeded requests random seeds). logprobs are
 * of the model's raw distribution (log_softmax of the logits, before
 * penalties and warpers), as vLLM's default. Defaults: greedy (temperature
 * 0; ties: the smallest id), every filter and penalty off. */
typedef struct tppp_sampling_params {
  uint32_t struct_size;
  float temperature;        /* 0: greedy; else > 0 */
  int32_t top_k;            /* 0: off */
  float top_p;              /* (0, 1]; 1: off */
  float min_p;              /* [0, 1]; 0: off */
  float repetition_penalty; /* > 0; 1: off */
  float frequency_penalty;  /* 0: off */
  float presence_penalty;   /* 0: off */
  int32_t logprobs;         /* 1: the sampled token's logprob */
  int32_t top_logprobs;     /* 0..20: the most likely tokens' logprobs */
  uint64_t seed;
} tppp_sampling_params;
TPPP_API tppp_status tppp_sampling_params_init(tppp_sampling_params* p, size_t size);

/* Called on the driver for each generated token, in order. */
typedef void (*tppp_token_fn)(void* user, int32_t prompt, int32_t token);
/* The same, and a non-zero return ends that prompt (the token is kept). */
typedef int32_t (*tppp_token_stop_fn)(void* user, int32_t prompt, int32_t token);
typedef struct tppp_generate_params {
  uint32_t struct_size;
  int32_t max_new;         /* new tokens per prompt at most; default 16 */
  const int32_t* stop_ids; /* a generated stop id ends its prompt (and is kept) */
  int32_t n_stop;
  int32_t microbatches;    /* PP > 1: groups of sequences in flight; default 0: min(PP, prompts / 16), >= 1 */
  tppp_token_fn on_token;  /* may be NULL */
  void* user;
  int32_t prefill_chunk;   /* prompt tokens per micro-batch; default 0: at most min(max_batch, 512),
                              with PP > 1 the prompts' tokens / (2 PP) but >= 64 */
  int32_t reserved;
  const tppp_sampling_params* sampling; /* every prompt's; NULL: greedy */
  int32_t ignore_eos;      /* 0 (default): a generated EOS id (tppp_model_info) ends its prompt (and is kept) */
  int32_t reserved2;
  const int32_t* max_new_each; /* [n_prompts] per-prompt max_new, each <= max_new (the rows' stride); NULL: max_new */
  /* Called instead of on_token when set; its non-zero return ends the prompt.
   * Every-rank mode: set it on every rank (it is called on the driver only,
   * whose verdicts go to the other ranks of stage 0). */
  tppp_token_stop_fn on_token_stop;
  /* Per-prompt stop ids, besides stop_ids: prompt i's are stop_ids_each[i]
   * [n_stop_each[i]] (a NULL row: none). Both NULL: none. */
  const int32_t* const* stop_ids_each;
  const int32_t* n_stop_each;
} tppp_generate_params;
TPPP_API tppp_status tppp_generate_params_init(tppp_generate_params* p, size_t size);
/* Greedy decoding of n_prompts prompts (prompt i of prompt_lens[i] tokens,
 * run as sequence i, which must hold nothing; removed afterwards). The
 * prompts go through the stages in chunks and, with PP > 1, `microbatches`
 * groups of sequences take turns, so the stages overlap. On the
 * driver: out_tokens [n_prompts, max_new] (row i: prompt i's tokens),
 * out_counts [n_prompts], and when non-NULL first_logits [n_prompts, vocab]
 * (each prompt's last-position logits). Other ranks may pass NULL. */
TPPP_API tppp_status tppp_model_generate(tppp_model_t m, int32_t n_prompts, const int32_t* const* prompts,
                                         const int32_t* prompt_lens, const tppp_generate_params* p,
                                         int32_t* out_tokens, int32_t* out_counts, float* first_logits);
TPPP_API tppp_status tppp_model_get_stats(tppp_model_t m, tppp_model_stats* out);
/* Steps in flight: the engine core a server embeds (docs/DESIGN.md section
 * 9). The host composes each step as a batch (continuous batching:
 * sequences join, finish and leave between steps) and submits it without
 * waiting for its results; up to max_inflight steps move through the
 * pipeline stages at once, so every stage works on a different step. The
 * last stage samples each wanted row (sampling[i] for token i; NULL, or a
 * NULL entry: greedy) and sends the results to the driver, where
 * tppp_model_wait / _poll return them in submission order. A sequence that
 * is in a step not yet taken by wait/poll cannot be in another
 * (INVALID_USAGE naming it). tppp_model_remove_seq (or seq_rm) on a sequence
 * with a step in flight cancels it: its rows of that step are dropped from
 * the result, its pages freed; the model stays usable. Every-rank mode:
 * every rank calls submit and wait (not poll) in the same order with the
 * same arguments; a rank whose batch differs from stage 0's fails with
 * INVALID_USAGE naming the first differing field. Follow mode: the driver
 * alone calls; the others sit in tppp_model_follow. */
typedef struct tppp_step_params {
  uint32_t struct_size;
  int32_t outputs; /* TPPP_OUT_LOGITS: the wanted rows' f32 logits in the result too. Default 0 */
  const tppp_sampling_params* const* sampling; /* [n_tokens] or NULL */
} tppp_step_params;
TPPP_API tppp_status tppp_step_params_init(tppp_step_params* p, size_t size);

/* A step's results, rows in batch order (a cancelled sequence's rows
 * dropped). Arrays belong to the model and stay valid until its next
 * wait / poll. On ranks other than the driver only step and n_out are set. */
typedef struct tppp_step_result {
  uint32_t struct_size;
  int32_t n_out;             /* rows */
  int64_t step;              /* submit's number */
  const int32_t* seq_id;     /* [n_out] */
  const int32_t* token;      /* [n_out] the sampled token */
  const float* logprob;      /* [n_out] its raw logprob (0 unless asked) */
  int32_t n_top;             /* top logprobs per row (the step's largest top_logprobs) */
  int32_t reserved;
  const int32_t* top_ids;    /* [n_out, n_top], -1 past a row's own count */
  const float* top_logprobs; /* [n_out, n_top] */
  const float* logits;       /* [n_out, vocab] with TPPP_OUT_LOGITS, else NULL */
} tppp_step_result;

/* Checks the batch (as tppp_model_forward), runs it on this rank's stage and
 * returns its number in *step without waiting for the later stages. */
TPPP_API tppp_status tppp_model_submit(tppp_model_t m, const tppp_batch* b, const tppp_step_params* p, int64_t* step);
/* The oldest step's results; blocks (bounded by the group's timeout).
 * INVALID_USAGE when none is in flight. */
TPPP_API tppp_status tppp_model_wait(tppp_model_t m, tppp_step_result* out);
/* The oldest step's results if they are here (*ready = 1), else *ready = 0
 * at once. Follow mode or a one-rank group only. */
TPPP_API tppp_status tppp_model_poll(tppp_model_t m, tppp_step_result* out, int32_t* ready);
/* llama.h's seq_rm: removes positions [p0, p1) (p0 < 0: from the start;
 * p1 < 0: to the end) of a sequence and frees the pages past what is left. Only a tail may go
 * (NOT_SUPPORTED otherwise: positions stay contiguous); p0 = 0 removes the
 * sequence. A step in flight for the sequence is dropped for it. */
TPPP_API tppp_status tppp_model_seq_rm(tppp_model_t m, int32_t seq_id, int32_t p0, int32_t p1);
/* llama.h's seq_cp, for prefix sharing (0.5): sequence dst, which must hold
 * nothing, gets positions [0, p1) of src (p0 <= 0; p1 < 0: all of src) by
 * sharing the KV pages that hold them, so a common prefix (a system prompt)
 * is prefilled once. p1 must be a whole number of pages (NOT_SUPPORTED
 * otherwise, naming the largest that is: the host prefills the rest, as
 * vLLM's prefix cache recomputes a partial block); shared pages are never
 * written (a batch that would write one is refused). Pages are freed when
 * the last sequence holding them lets go. */
TPPP_API tppp_status tppp_model_seq_cp(tppp_model_t m, int32_t seq_id_src, int32_t seq_id_dst, int32_t p0,
                                       int32_t p1);

/* Follow mode, every rank but the driver: runs the driver's calls until it
 * calls tppp_model_stop (TPPP_OK). idle_timeout_ms bounds the wait for each
 * next call (-1: none; a dead driver still ends it with TPPP_ERR_REMOTE). A
 * call refused or failed alike on every rank (a bad batch, a full cache) is
 * logged and following goes on; a dead, stuck or mismatched peer ends it
 * with that error. */
TPPP_API tppp_status tppp_model_follow(tppp_model_t m, int64_t idle_timeout_ms);
/* Follow mode, the driver: ends the followers' tppp_model_follow. */
TPPP_API tppp_status tppp_model_stop(tppp_model_t m);
/* Accepts NULL. In follow mode the driver's destroy stops the followers. */
TPPP_API void tppp_model_destroy(tppp_model_t m);

/* Versioned, append-only table of every function above, for hosts that
 * dlopen(RTLD_NOW | RTLD_LOCAL) the library and dlsym only tppp_get_api. */
typedef struct tppp_api {
  uint32_t struct_size;    /* sizeof the table the library fills      */
  uint32_t version_major;
  uint32_t version_minor;
  uint32_t version_patch;
  uint32_t (*version)(void);
  int32_t (*abi_check)(uint32_t, uint32_t);
  const char* (*status_string)(tppp_status);
  const char* (*last_error)(void);
  tppp_status (*set_log_callback)(tppp_log_fn, void*, int32_t);
  tppp_status (*dtype_size)(int32_t, size_t*);
  tppp_status (*group_params_init)(tppp_group_params*, size_t);
  tppp_status (*get_unique_id)(tppp_unique_id*);
  tppp_status (*group_create)(const tppp_unique_id*, int32_t, int32_t,
                              const tppp_group_params*, tppp_group_t*);
  tppp_status (*group_create_from_env)(const tppp_group_params*, tppp_group_t*);
  tppp_status (*group_abort)(tppp_group_t);
  tppp_status (*group_get_async_error)(tppp_group_t, tppp_status*);
  void (*group_destroy)(tppp_group_t);
  tppp_status (*group_get_info)(tppp_group_t, tppp_group_info*);
  tppp_status (*group_scope)(tppp_group_t, int32_t, int32_t*, int32_t*);
  tppp_status (*group_global_rank)(tppp_group_t, int32_t, int32_t, int32_t*);
  tppp_status (*isend)(tppp_group_t, int32_t, int32_t, int32_t, const void*,
                       size_t, void*, tppp_request_t*);
  tppp_status (*irecv)(tppp_group_t, int32_t, int32_t, int32_t, void*, size_t,
                       void*, tppp_request_t*);
  tppp_status (*request_test)(tppp_request_t, int32_t*);
  tppp_status (*request_wait)(tppp_request_t);
  void (*request_free)(tppp_request_t);
  tppp_status (*send)(tppp_group_t, int32_t, int32_t, int32_t, const void*,
                      size_t, void*);
  tppp_status (*recv)(tppp_group_t, int32_t, int32_t, int32_t, void*, size_t,
                      void*);
  tppp_status (*all_reduce)(tppp_group_t, int32_t, const void*, void*, size_t,
                            int32_t, int32_t, void*);
  tppp_status (*all_gather)(tppp_group_t, int32_t, const void*, void*, size_t,
                            int32_t, void*);
  tppp_status (*broadcast)(tppp_group_t, int32_t, void*, size_t, int32_t,
                           int32_t, void*);
  tppp_status (*barrier)(tppp_group_t, int32_t);
  tppp_status (*checkpoint_open)(const char*, tppp_checkpoint_t*);
  void (*checkpoint_close)(tppp_checkpoint_t);
  tppp_status (*checkpoint_num_tensors)(tppp_checkpoint_t, size_t*);
  tppp_status (*checkpoint_find)(tppp_checkpoint_t, const char*, size_t*);
  tppp_status (*checkpoint_tensor_info)(tppp_checkpoint_t, size_t, tppp_tensor_info*);
  tppp_status (*checkpoint_model_config)(tppp_checkpoint_t, tppp_model_config*);
  tppp_status (*shard_params_init)(tppp_shard_params*, size_t);
  tppp_status (*checkpoint_shard_info)(tppp_checkpoint_t, const char*, const tppp_shard_params*, tppp_slice*);
  tppp_status (*checkpoint_validate_grid)(tppp_checkpoint_t, const tppp_shard_params*);
  tppp_status (*checkpoint_load)(tppp_checkpoint_t, const char*, const tppp_slice*, const tppp_tensor*);
  tppp_status (*load_params_init)(tppp_load_params*, size_t);
  tppp_status (*checkpoint_load_rank)(tppp_checkpoint_t, const tppp_shard_params*, const tppp_load_params*,
                                      tppp_weights_t*);
  tppp_status (*weights_count)(tppp_weights_t, size_t*);
  tppp_status (*weights_get)(tppp_weights_t, size_t, const char**, tppp_tensor*);
  tppp_status (*weights_find)(tppp_weights_t, const char*, tppp_tensor*);
  void (*weights_free)(tppp_weights_t);
  tppp_status (*checkpoint_load_async)(tppp_checkpoint_t, const char*, const tppp_slice*, const tppp_tensor*, void*);
  tppp_status (*shard_params_from_group)(tppp_group_t, tppp_shard_params*);
  tppp_status (*checkpoint_load_merged)(tppp_checkpoint_t, const char* const*, size_t, const tppp_shard_params*,
                                        const tppp_tensor*, void*);
  tppp_status (*layer_params_init)(tppp_layer_params*, size_t);
  tppp_status (*layer_create)(tppp_group_t, const tppp_layer_params*, tppp_layer_t*);
  void (*layer_destroy)(tppp_layer_t);
  tppp_status (*layer_weight_shape)(tppp_layer_t, int32_t, int32_t*, int64_t*);
  tppp_status (*layer_bind)(tppp_layer_t, int32_t, const tppp_tensor*, const tppp_tensor*);
  tppp_status (*layer_bind_checkpoint)(tppp_layer_t, tppp_checkpoint_t, const char*);
  tppp_status (*layer_forward)(tppp_layer_t, const tppp_tensor*, const tppp_tensor*, void*);
  tppp_status (*layer_argmax)(tppp_layer_t, const tppp_tensor*, const tppp_tensor*, void*);
  tppp_status (*scheduler_params_init)(tppp_scheduler_params*, size_t);
  tppp_status (*scheduler_create)(tppp_group_t, const tppp_scheduler_params*, tppp_scheduler_t*);
  tppp_status (*scheduler_set_stage_fn)(tppp_scheduler_t, tppp_stage_fn, void*);
  tppp_status (*scheduler_add_layer)(tppp_scheduler_t, tppp_layer_t);
  tppp_status (*scheduler_submit)(tppp_scheduler_t, const tppp_tensor*, const tppp_tensor*);
  tppp_status (*scheduler_poll)(tppp_scheduler_t, int32_t*);
  tppp_status (*scheduler_wait)(tppp_scheduler_t);
  tppp_status (*scheduler_run)(tppp_scheduler_t, const tppp_tensor*, const tppp_tensor*);
  tppp_status (*scheduler_get_stats)(tppp_scheduler_t, tppp_scheduler_stats*);
  tppp_status (*scheduler_write_trace)(tppp_scheduler_t, const char*);
  void (*scheduler_destroy)(tppp_scheduler_t);
  /* 0.3 */
  tppp_status (*model_params_init)(tppp_model_params*, size_t);
  tppp_status (*model_create)(tppp_group_t, tppp_checkpoint_t, const tppp_model_params*, tppp_model_t*);
  tppp_status (*model_get_info)(tppp_model_t, tppp_model_info*);
  tppp_status (*model_forward)(tppp_model_t, const tppp_batch*, int32_t, float*, int64_t*, int32_t*);
  tppp_status (*model_remove_seq)(tppp_model_t, int32_t);
  tppp_status (*generate_params_init)(tppp_generate_params*, size_t);
  tppp_status (*model_generate)(tppp_model_t, int32_t, const int32_t* const*, const int32_t*,
                                const tppp_generate_params*, int32_t*, int32_t*, float*);
  tppp_status (*model_get_stats)(tppp_model_t, tppp_model_stats*);
  void (*model_destroy)(tppp_model_t);
  tppp_status (*model_follow)(tppp_model_t, int64_t);
  tppp_status (*model_stop)(tppp_model_t);
  /* 0.4 */
  tppp_status (*sampling_params_init)(tppp_sampling_params*, size_t);
  tppp_status (*step_params_init)(tppp_step_params*, size_t);
  tppp_status (*model_submit)(tppp_model_t, const tppp_batch*, const tppp_step_params*, int64_t*);
  tppp_status (*model_wait)(tppp_model_t, tppp_step_result*);
  tppp_status (*model_poll)(tppp_model_t, tppp_step_result*, int32_t*);
  tppp_status (*model_seq_rm)(tppp_model_t, int32_t, int32_t, int32_t);
  /* 0.5 */
  tppp_status (*model_seq_cp)(tppp_model_t, int32_t, int32_t, int32_t, int32_t);
  /* later versions append here */
} tppp_api;

/* The table for (major, minor): NULL if major differs from the library's or
 * minor is newer than the library's. */
TPPP_API const tppp_api* tppp_get_api(uint32_t major, uint32_t minor);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TPPP_C_API_H */
