// Steps in flight from Go (docs/DESIGN.md section 9, "Serving"): Submit a
// batch without waiting, Wait or Poll for the oldest step's results, SeqRm a
// sequence's tail; sampling parameters per token.
package tppp

// #include <stdlib.h>
// #include "c_api.h"
import "C"

import "unsafe"

// Sampling are tppp_sampling_params; the zero value is greedy (TopP 0 means 1: off).
type Sampling struct {
	Temperature       float32
	TopK              int
	TopP              float32 // 0 or 1: off
	MinP              float32
	RepetitionPenalty float32 // 0 or 1: off
	FrequencyPenalty  float32
	PresencePenalty   float32
	Logprobs          bool
	TopLogprobs       int
	Seed              uint64
}

func (s *Sampling) fill(p *C.tppp_sampling_params) error {
	if err := check(C.tppp_sampling_params_init(p, C.size_t(unsafe.Sizeof(*p)))); err != nil {
		return err
	}
	p.temperature, p.top_k, p.min_p = C.float(s.Temperature), C.int32_t(s.TopK), C.float(s.MinP)
	if s.TopP > 0 {
		p.top_p = C.float(s.TopP)
	}
	if s.RepetitionPenalty > 0 {
		p.repetition_penalty = C.float(s.RepetitionPenalty)
	}
	p.frequency_penalty, p.presence_penalty = C.float(s.FrequencyPenalty), C.float(s.PresencePenalty)
	p.logprobs, p.top_logprobs, p.seed = b2i(s.Logprobs), C.int32_t(s.TopLogprobs), C.uint64_t(s.Seed)
	return nil
}

// StepResult is one step's rows (a cancelled sequence's rows dropped); Tokens and Logprobs on the driver only.
type StepResult struct {
	Step     int64
	SeqIDs   []int32
	Tokens   []int32
	Logprobs []float32
}

// Submit checks the batch, runs it on this rank's stage and returns its step number without waiting for the
// later stages. sampling: nil (greedy), or one entry per token (nil entries greedy; read for wanted tokens).
func (m *Model) Submit(tokens, pos, seq []int32, want []bool, sampling []*Sampling) (int64, error) {
	n := len(tokens)
	if len(pos) != n || len(seq) != n || len(want) != n || n == 0 || (sampling != nil && len(sampling) != n) {
		return -1, &Error{Status: 1, Message: "Submit: tokens, pos, seq, want (and sampling) must be non-empty and equal in length"}
	}
	cb := (*[1 << 28]C.int32_t)(C.malloc(C.size_t(4 * 4 * n)))[: 4*n : 4*n]
	defer C.free(unsafe.Pointer(&cb[0]))
	w := (*[1 << 30]C.int8_t)(unsafe.Pointer(&cb[3*n]))
	for i := 0; i < n; i++ {
		cb[i], cb[n+i], cb[2*n+i] = C.int32_t(tokens[i]), C.int32_t(pos[i]), C.int32_t(seq[i])
		w[i] = 0
		if want[i] {
			w[i] = 1
		}
	}
	b := C.tppp_batch{n_tokens: C.int32_t(n), token: &cb[0], pos: &cb[n], seq_id: &cb[2*n],
		logits: (*C.int8_t)(unsafe.Pointer(&cb[3*n]))}
	var sp C.tppp_step_params
	if err := check(C.tppp_step_params_init(&sp, C.size_t(unsafe.Sizeof(sp)))); err != nil {
		return -1, err
	}
	if sampling != nil {
		// What the params point at lives in C memory (cgo's rules).
		var one C.tppp_sampling_params
		params := (*[1 << 20]C.tppp_sampling_params)(C.malloc(C.size_t(uintptr(n) * unsafe.Sizeof(one))))[:n:n]
		ptrs := (*[1 << 24]*C.tppp_sampling_params)(C.malloc(C.size_t(uintptr(n) * unsafe.Sizeof(uintptr(0)))))[:n:n]
		defer C.free(unsafe.Pointer(&params[0]))
		defer C.free(unsafe.Pointer(&ptrs[0]))
		for i, s := range sampling {
			ptrs[i] = nil
			if s != nil {
				if err := s.fill(&params[i]); err != nil {
					return -1, err
				}
				ptrs[i] = &params[i]
			}
		}
		sp.sampling = &ptrs[0]
	}
	var step C.int64_t
	if err := check(C.tppp_model_submit(m.h, &b, &sp, &step)); err != nil {
		return -1, err
	}
	return int64(step), nil
}

func (m *Model) result(r *C.tppp_step_result) StepResult {
	n := int(r.n_out)
	out := StepResult{Step: int64(r.step)}
	for i := 0; i < n; i++ {
		out.SeqIDs = append(out.SeqIDs, int32((*[1 << 28]C.int32_t)(unsafe.Pointer(r.seq_id))[i]))
		if r.token != nil {
			out.Tokens = append(out.Tokens, int32((*[1 << 28]C.int32_t)(unsafe.Pointer(r.token))[i]))
			out.Logprobs = append(out.Logprobs, float32((*[1 << 28]C.float)(unsafe.Pointer(r.logprob))[i]))
		}
	}
	return out
}

// Wait returns the oldest step's results (blocking, bounded by the group's timeout).
func (m *Model) Wait() (StepResult, error) {
	var r C.tppp_step_result
	r.struct_size = C.uint32_t(unsafe.Sizeof(r))
	if err := check(C.tppp_model_wait(m.h, &r)); err != nil {
		return StepResult{}, err
	}
	return m.result(&r), nil
}

// Poll returns the oldest step's results if they are here (ok), without blocking (follow mode or one rank).
func (m *Model) Poll() (res StepResult, ok bool, err error) {
	var r C.tppp_step_result
	r.struct_size = C.uint32_t(unsafe.Sizeof(r))
	var ready C.int32_t
	if err := check(C.tppp_model_poll(m.h, &r, &ready)); err != nil {
		return StepResult{}, false, err
	}
	if ready == 0 {
		return StepResult{}, false, nil
	}
	return m.result(&r), true, nil
}

// SeqRm removes positions [p0, p1) of a sequence (p1 < 0: to the end; a tail only).
func (m *Model) SeqRm(seq, p0, p1 int) error {
	return check(C.tppp_model_seq_rm(m.h, C.int32_t(seq), C.int32_t(p0), C.int32_t(p1)))
}
