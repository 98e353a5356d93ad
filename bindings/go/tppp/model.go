// The model runtime from Go: a checkpoint, a decoder over the group's
// TP x PP grid (docs/DESIGN.md section 9), llama.h-style batches, greedy
// generation with a token callback, and follow mode (only the driver calls;
// the other ranks Follow).
package tppp

// #include <stdlib.h>
// #include "c_api.h"
// extern void goTpppOnToken(void*, int32_t, int32_t);
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// Checkpoint is an open safetensors checkpoint; Close frees it.
type Checkpoint struct{ h C.tppp_checkpoint_t }

// OpenCheckpoint opens a .safetensors file, an index, or a directory with config.json.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	var h C.tppp_checkpoint_t
	if err := check(C.tppp_checkpoint_open(p, &h)); err != nil {
		return nil, err
	}
	return &Checkpoint{h}, nil
}

// Close frees the checkpoint (a model made from it keeps its weights).
func (c *Checkpoint) Close() {
	if c.h != nil {
		C.tppp_checkpoint_close(c.h)
		c.h = nil
	}
}

// ModelOptions are tppp_model_params; zero fields keep the library's defaults.
type ModelOptions struct {
	KVTokens int64
	PageSize int
	MaxSeqs  int
	MaxBatch int
	Follow   bool // only the driver (world rank 0) calls; the others call Follow
}

// Model is a decoder on a group; Close frees it (the driver's Close stops followers).
type Model struct {
	h      C.tppp_model_t
	vocab  int
	driver bool
}

// NewModel is collective over the group: every rank with the same checkpoint.
func NewModel(g *Group, c *Checkpoint, o ModelOptions) (*Model, error) {
	var p C.tppp_model_params
	if err := check(C.tppp_model_params_init(&p, C.size_t(unsafe.Sizeof(p)))); err != nil {
		return nil, err
	}
	if o.KVTokens > 0 {
		p.kv_tokens = C.int64_t(o.KVTokens)
	}
	if o.PageSize > 0 {
		p.page_size = C.int32_t(o.PageSize)
	}
	if o.MaxSeqs > 0 {
		p.max_seqs = C.int32_t(o.MaxSeqs)
	}
	if o.MaxBatch > 0 {
		p.max_batch = C.int32_t(o.MaxBatch)
	}
	p.follow = b2i(o.Follow)
	var h C.tppp_model_t
	if err := check(C.tppp_model_create(g.h, c.h, &p, &h)); err != nil {
		return nil, err
	}
	info, err := g.Info()
	m := &Model{h: h, driver: err == nil && info.Rank == 0}
	mi, err := m.Info()
	if err != nil {
		m.Close()
		return nil, err
	}
	m.vocab = mi.Vocab
	return m, nil
}

// ModelInfo describes the model and this rank's stage.
type ModelInfo struct {
	Architecture                  string
	Vocab, Hidden, Layers         int
	LayerBegin, LayerEnd          int
	NumPages, FreePages, PageSize int
}

// Info returns the architecture, sizes, this stage's layers and the KV pages.
func (m *Model) Info() (ModelInfo, error) {
	var i C.tppp_model_info
	i.struct_size = C.uint32_t(unsafe.Sizeof(i))
	if err := check(C.tppp_model_get_info(m.h, &i)); err != nil {
		return ModelInfo{}, err
	}
	return ModelInfo{C.GoString(i.architecture), int(i.vocab_size), int(i.hidden_size), int(i.num_layers),
		int(i.layer_begin), int(i.layer_end), int(i.num_pages), int(i.free_pages), int(i.page_size)}, nil
}

// Forward runs one batch (token i: tokens[i] at position pos[i] of sequence seq[i]; want[i]: its outputs).
// On the driver it returns logits [nOut*vocab] and greedy ids [nOut]; elsewhere nil, nil.
func (m *Model) Forward(tokens, pos, seq []int32, want []bool) ([]float32, []int64, error) {
	n := len(tokens)
	if len(pos) != n || len(seq) != n || len(want) != n || n == 0 {
		return nil, nil, &Error{Status: 1, Message: "Forward: tokens, pos, seq and want must be non-empty and equal in length"}
	}
	// The batch struct holds pointers, so what they point at lives in C memory (cgo's rules).
	cb := (*[1 << 28]C.int32_t)(C.malloc(C.size_t(4 * 4 * n)))[: 4*n : 4*n]
	defer C.free(unsafe.Pointer(&cb[0]))
	nOut := 0
	for i := 0; i < n; i++ {
		cb[i], cb[n+i], cb[2*n+i] = C.int32_t(tokens[i]), C.int32_t(pos[i]), C.int32_t(seq[i])
		w := (*[1 << 30]C.int8_t)(unsafe.Pointer(&cb[3*n]))
		w[i] = 0
		if want[i] {
			w[i] = 1
			nOut++
		}
	}
	b := C.tppp_batch{n_tokens: C.int32_t(n), token: &cb[0], pos: &cb[n], seq_id: &cb[2*n],
		logits: (*C.int8_t)(unsafe.Pointer(&cb[3*n]))}
	var logits []float32
	var ids []int64
	var lp *C.float
	var ip *C.int64_t
	if m.driver && nOut > 0 {
		logits, ids = make([]float32, nOut*m.vocab), make([]int64, nOut)
		lp, ip = (*C.float)(unsafe.Pointer(&logits[0])), (*C.int64_t)(unsafe.Pointer(&ids[0]))
	}
	if err := check(C.tppp_model_forward(m.h, &b, C.TPPP_OUT_LOGITS|C.TPPP_OUT_IDS, lp, ip, nil)); err != nil {
		return nil, nil, err
	}
	return logits, ids, nil
}

// Remove frees the sequence's KV pages; its id can start again at position 0.
func (m *Model) Remove(seq int) error { return check(C.tppp_model_remove_seq(m.h, C.int32_t(seq))) }

// GenerateOptions are tppp_generate_params.
// GenerateOptions: zero values mean the library's defaults.
type GenerateOptions struct {
	MaxNew       int // new tokens per prompt; 0: the library's default (16)
	StopIDs      []int32
	Microbatches int // PP > 1: groups of sequences in flight; 0: min(PP, prompts/16), at least 1
	PrefillChunk int // prompt tokens per micro-batch; 0: the library's default
	OnToken      func(prompt, token int)
}

//export goTpppOnToken
func goTpppOnToken(user unsafe.Pointer, prompt, token C.int32_t) {
	h := *(*cgo.Handle)(user)
	h.Value().(func(int, int))(int(prompt), int(token))
}

// Generate decodes greedily. On the driver it returns each prompt's tokens and the prompts'
// last-position logits [prompts*vocab]; elsewhere nil, nil.
func (m *Model) Generate(prompts [][]int32, o GenerateOptions) ([][]int32, []float32, error) {
	np := len(prompts)
	if np == 0 {
		return nil, nil, &Error{Status: 1, Message: "Generate: no prompts"}
	}
	// The prompts and the callback handle live in C memory for the call.
	total := 0
	for _, p := range prompts {
		total += len(p)
	}
	buf := (*[1 << 30]C.int32_t)(C.malloc(C.size_t(4 * (total + 1))))[: total+1 : total+1]
	ptrs := (*[1 << 28]*C.int32_t)(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)) * uintptr(np))))[:np:np]
	lens := make([]C.int32_t, np)
	defer C.free(unsafe.Pointer(&buf[0]))
	defer C.free(unsafe.Pointer(&ptrs[0]))
	at := 0
	for i, p := range prompts {
		ptrs[i] = &buf[at]
		for _, t := range p {
			buf[at] = C.int32_t(t)
			at++
		}
		lens[i] = C.int32_t(len(p))
	}
	var g C.tppp_generate_params
	if err := check(C.tppp_generate_params_init(&g, C.size_t(unsafe.Sizeof(g)))); err != nil {
		return nil, nil, err
	}
	if o.MaxNew != 0 {
		g.max_new = C.int32_t(o.MaxNew) // 0 keeps the library's default
	}
	g.microbatches = C.int32_t(o.Microbatches)
	g.prefill_chunk = C.int32_t(o.PrefillChunk)
	if len(o.StopIDs) > 0 {
		stop := (*[1 << 28]C.int32_t)(C.malloc(C.size_t(4 * len(o.StopIDs))))[:len(o.StopIDs):len(o.StopIDs)]
		defer C.free(unsafe.Pointer(&stop[0]))
		for i, s := range o.StopIDs {
			stop[i] = C.int32_t(s)
		}
		g.stop_ids, g.n_stop = &stop[0], C.int32_t(len(o.StopIDs))
	}
	if o.OnToken != nil {
		h := cgo.NewHandle(o.OnToken)
		defer h.Delete()
		hp := (*cgo.Handle)(C.malloc(C.size_t(unsafe.Sizeof(h))))
		defer C.free(unsafe.Pointer(hp))
		*hp = h
		g.on_token = C.tppp_token_fn(C.goTpppOnToken)
		g.user = unsafe.Pointer(hp)
	}
	maxNew := int(g.max_new)
	if maxNew < 1 {
		maxNew = 1
	}
	out := make([]int32, np*maxNew)
	counts := make([]int32, np)
	var first []float32
	var fp *C.float
	if m.driver {
		first = make([]float32, np*m.vocab)
		fp = (*C.float)(unsafe.Pointer(&first[0]))
	}
	if err := check(C.tppp_model_generate(m.h, C.int32_t(np), &ptrs[0], &lens[0], &g,
		(*C.int32_t)(unsafe.Pointer(&out[0])), (*C.int32_t)(unsafe.Pointer(&counts[0])), fp)); err != nil {
		return nil, nil, err
	}
	if !m.driver {
		return nil, nil, nil
	}
	toks := make([][]int32, np)
	for i := range toks {
		toks[i] = append([]int32(nil), out[i*maxNew:i*maxNew+int(counts[i])]...)
	}
	return toks, first, nil
}

// Follow runs the driver's calls until it calls Stop (follow mode, every rank but the driver).
// idleTimeoutMs bounds the wait for each next call; -1: no bound.
func (m *Model) Follow(idleTimeoutMs int64) error {
	return check(C.tppp_model_follow(m.h, C.int64_t(idleTimeoutMs)))
}

// Stop ends the followers' Follow (follow mode, the driver).
func (m *Model) Stop() error { return check(C.tppp_model_stop(m.h)) }

// Close frees the model.
func (m *Model) Close() {
	if m.h != nil {
		C.tppp_model_destroy(m.h)
		m.h = nil
	}
}
