/* Prints the sizes and field offsets of the public structs as JSON, from
 * c_api.h itself: the bindings' tests compare their declarations with it. */
#include <stddef.h>
#include <stdio.h>

#include "c_api.h"

#include <string.h>

static int flat; /* --flat: "name size N" and "name.field offset" lines, for parsers without JSON */
#define F(s, f)                                                         \
  (flat ? printf(#s "." #f " %zu\n", offsetof(s, f))                     \
        : printf("%s\"%s\": %zu", first ? "" : ", ", #f, offsetof(s, f))), \
      first = 0
#define printf_json(...) (flat ? 0 : printf(__VA_ARGS__))
int main(int argc, char** argv) {
  int first;
  flat = argc > 1 && !strcmp(argv[1], "--flat");
  if (flat) {
    printf("tppp_group_params size %zu\ntppp_group_info size %zu\ntppp_tensor size %zu\ntppp_layer_params size %zu\n",
           sizeof(tppp_group_params), sizeof(tppp_group_info), sizeof(tppp_tensor), sizeof(tppp_layer_params));
  }
  printf_json("{\"tppp_group_params\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_group_params));
  first = 1;
  F(tppp_group_params, struct_size); F(tppp_group_params, tp_size); F(tppp_group_params, pp_size);
  F(tppp_group_params, device); F(tppp_group_params, transport); F(tppp_group_params, timeout_ms);
  printf_json("}},\n \"tppp_group_info\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_group_info));
  first = 1;
  F(tppp_group_info, world_size); F(tppp_group_info, rank); F(tppp_group_info, tp_rank);
  F(tppp_group_info, pp_rank); F(tppp_group_info, next_stage_rank); F(tppp_group_info, timeout_ms);
  printf_json("}},\n \"tppp_tensor\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_tensor));
  first = 1;
  F(tppp_tensor, data); F(tppp_tensor, mem_kind); F(tppp_tensor, dtype); F(tppp_tensor, ndim);
  F(tppp_tensor, shape); F(tppp_tensor, strides);
  printf_json("}},\n \"tppp_layer_params\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_layer_params));
  first = 1;
  F(tppp_layer_params, kind); F(tppp_layer_params, bias); F(tppp_layer_params, in_features);
  F(tppp_layer_params, out_features); F(tppp_layer_params, gather_output); F(tppp_layer_params, num_heads);
  F(tppp_layer_params, vocab_size); F(tppp_layer_params, gather_to_rank0);
  if (!flat) { /* JSON only: the flat form's readers (Go, Rust) do not use it */
    printf_json("}},\n \"tppp_tensor_info\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_tensor_info));
    first = 1;
    F(tppp_tensor_info, dtype); F(tppp_tensor_info, name); F(tppp_tensor_info, dtype_name);
    F(tppp_tensor_info, file); F(tppp_tensor_info, ndim); F(tppp_tensor_info, shape); F(tppp_tensor_info, nbytes);
    printf_json("}},\n \"tppp_scheduler_params\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_scheduler_params));
    first = 1;
    F(tppp_scheduler_params, policy); F(tppp_scheduler_params, num_microbatches); F(tppp_scheduler_params, steps);
    F(tppp_scheduler_params, dtype); F(tppp_scheduler_params, hidden);
    printf_json("}},\n \"tppp_scheduler_stats\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_scheduler_stats));
    first = 1;
    F(tppp_scheduler_stats, stage); F(tppp_scheduler_stats, steps); F(tppp_scheduler_stats, wall_ms);
    F(tppp_scheduler_stats, bubble); F(tppp_scheduler_stats, theory_bubble);
  }
  if (flat)
    printf("tppp_model_params size %zu\ntppp_model_info size %zu\ntppp_batch size %zu\ntppp_generate_params size %zu\n",
           sizeof(tppp_model_params), sizeof(tppp_model_info), sizeof(tppp_batch), sizeof(tppp_generate_params));
  {
    printf_json("}},\n \"tppp_model_params\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_model_params));
    first = 1;
    F(tppp_model_params, dtype); F(tppp_model_params, page_size); F(tppp_model_params, max_seqs);
    F(tppp_model_params, kv_tokens); F(tppp_model_params, max_batch); F(tppp_model_params, follow);
    printf_json("}},\n \"tppp_model_info\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_model_info));
    first = 1;
    F(tppp_model_info, dtype); F(tppp_model_info, architecture); F(tppp_model_info, vocab_size);
    F(tppp_model_info, layer_begin); F(tppp_model_info, page_size); F(tppp_model_info, max_seqs);
    printf_json("}},\n \"tppp_batch\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_batch));
    first = 1;
    F(tppp_batch, n_tokens); F(tppp_batch, token); F(tppp_batch, pos); F(tppp_batch, seq_id); F(tppp_batch, logits);
    printf_json("}},\n \"tppp_generate_params\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_generate_params));
    first = 1;
    F(tppp_generate_params, max_new); F(tppp_generate_params, stop_ids); F(tppp_generate_params, n_stop);
    F(tppp_generate_params, microbatches); F(tppp_generate_params, on_token); F(tppp_generate_params, user);
    F(tppp_generate_params, prefill_chunk); F(tppp_generate_params, sampling); F(tppp_generate_params, ignore_eos);
    F(tppp_generate_params, max_new_each); F(tppp_generate_params, on_token_stop);
    F(tppp_generate_params, stop_ids_each); F(tppp_generate_params, n_stop_each);
    printf_json("}},\n \"tppp_sampling_params\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_sampling_params));
    first = 1;
    F(tppp_sampling_params, temperature); F(tppp_sampling_params, top_k); F(tppp_sampling_params, top_p);
    F(tppp_sampling_params, min_p); F(tppp_sampling_params, repetition_penalty);
    F(tppp_sampling_params, frequency_penalty); F(tppp_sampling_params, presence_penalty);
    F(tppp_sampling_params, logprobs); F(tppp_sampling_params, top_logprobs); F(tppp_sampling_params, seed);
    printf_json("}},\n \"tppp_step_params\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_step_params));
    first = 1;
    F(tppp_step_params, outputs); F(tppp_step_params, sampling);
    printf_json("}},\n \"tppp_step_result\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_step_result));
    first = 1;
    F(tppp_step_result, n_out); F(tppp_step_result, step); F(tppp_step_result, seq_id); F(tppp_step_result, token);
    F(tppp_step_result, logprob); F(tppp_step_result, n_top); F(tppp_step_result, top_ids);
    F(tppp_step_result, top_logprobs); F(tppp_step_result, logits);
    printf_json("}},\n \"tppp_model_stats\": {\"size\": %zu, \"offsets\": {", sizeof(tppp_model_stats));
    first = 1;
    F(tppp_model_stats, stage); F(tppp_model_stats, busy_ms); F(tppp_model_stats, wall_ms); F(tppp_model_stats, tokens);
    F(tppp_model_stats, graph_replays); F(tppp_model_stats, graph_captures);
  }
  printf_json("}}}\n");
  return 0;
}
