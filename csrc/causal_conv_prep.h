// Op 2, gdn::causal_conv1d_post_conv_prep: the causal depthwise conv (+ SiLU)
// over the conv's input and op 1 on its result, in one pass, reading and
// updating each sequence's conv-state cache line (SPEC.md, "Op 2").
//
// Its parameters as every C++ backend sees them, and the host-side entry
// points (argument checks, outputs, the backend's kernel). Kernels take
// CausalConvPrepParams and never see a tensor; all strides are in elements.
#pragma once

#include <cstdint>
#include <optional>

#include "post_conv_prep.h"

namespace gdn {

struct CausalConvPrepParams {
  // Op 1's parameters for the conv output y = act(conv(x)) of T = prep.L
  // tokens: sizes, a, b, A_log, dt_bias, flags and the five outputs. y never
  // exists in memory, so prep.conv is null; prep.conv_kind is x's dtype.
  PostConvPrepParams prep;
  int64_t D;  // features: 2*H*K + HV*V
  int64_t W;  // taps, 2..4
  int64_t B;  // sequences
  int64_t N;  // cache lines

  const void* x;  // [T, D], dtype prep.conv_kind
  int64_t x_stride_row, x_stride_feat;

  StridedInput weight;  // [D, W]: stride0 over features, stride1 over taps
  StridedInput bias;    // [D]; data null when there is none

  void* states;  // [N, D, W-1], x's dtype
  int64_t states_stride_line, states_stride_feat, states_stride_tap;

  const int32_t* query_start_loc;  // [B+1]
  int64_t query_start_loc_stride;
  const int32_t* cache_indices;    // [B]; null: sequence i uses line i
  int64_t cache_indices_stride;
  const bool* has_initial_state;   // [B]; null: no sequence has one
  int64_t has_initial_state_stride;
  int64_t pad_slot_id;

  bool silu;
};

// A backend's kernel: for T >= 1, writes the outputs and the cache lines of
// the sequences that have one, on the inputs' device (and, on a GPU, that
// device's current stream).
using CausalConvPrepKernel = void (*)(const CausalConvPrepParams& params, int32_t device_index);

using OptionalTensor = std::optional<Tensor>;

// The op: checks every argument (SPEC.md, op 2 "Inputs accepted"), allocates
// the five outputs on x's device and runs `kernel`. Throws
// std::runtime_error (a RuntimeError in Python) naming the argument.
PostConvPrepOutputs causal_conv_prep(
    const Tensor& x, const Tensor& conv_weight, const OptionalTensor& conv_bias,
    const Tensor& conv_states, const Tensor& query_start_loc, const OptionalTensor& cache_indices,
    const OptionalTensor& has_initial_state, const Tensor& a, const Tensor& b,
    const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads, int64_t head_k_dim,
    int64_t head_v_dim, bool apply_l2norm, bool output_g_exp, bool silu, int64_t pad_slot_id,
    CausalConvPrepKernel kernel);

// The .out variant, as op 1's (post_conv_prep_out).
void causal_conv_prep_out(
    const Tensor& x, const Tensor& conv_weight, const OptionalTensor& conv_bias,
    const Tensor& conv_states, const Tensor& query_start_loc, const OptionalTensor& cache_indices,
    const OptionalTensor& has_initial_state, const Tensor& a, const Tensor& b,
    const Tensor& A_log, const Tensor& dt_bias, int64_t num_k_heads, int64_t head_k_dim,
    int64_t head_v_dim, bool apply_l2norm, bool output_g_exp, bool silu, int64_t pad_slot_id,
    Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, CausalConvPrepKernel kernel);

// The boxed entry points a backend registers for its dispatch key.
template <CausalConvPrepKernel kKernel>
PostConvPrepOutputs causal_conv_prep_with(
    Tensor x, Tensor conv_weight, OptionalTensor conv_bias, Tensor conv_states,
    Tensor query_start_loc, OptionalTensor cache_indices, OptionalTensor has_initial_state,
    Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, int64_t num_k_heads, int64_t head_k_dim,
    int64_t head_v_dim, bool apply_l2norm, bool output_g_exp, bool silu, int64_t pad_slot_id) {
  return causal_conv_prep(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
                          has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                          head_v_dim, apply_l2norm, output_g_exp, silu, pad_slot_id, kKernel);
}

template <CausalConvPrepKernel kKernel>
void causal_conv_prep_out_with(
    Tensor x, Tensor conv_weight, OptionalTensor conv_bias, Tensor conv_states,
    Tensor query_start_loc, OptionalTensor cache_indices, OptionalTensor has_initial_state,
    Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, int64_t num_k_heads, int64_t head_k_dim,
    int64_t head_v_dim, bool apply_l2norm, bool output_g_exp, bool silu, int64_t pad_slot_id,
    Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta) {
  causal_conv_prep_out(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
                       has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                       head_v_dim, apply_l2norm, output_g_exp, silu, pad_slot_id, q, k, v, g,
                       beta, kKernel);
}

}  // namespace gdn
