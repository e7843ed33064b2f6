// Every schema of the library, declared once, here. gdn_ext/_library.py
// declares the same strings where no library is loaded;
// tests/test_registration.py compares the two.
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY(gdn, m) {
  // Op 1: the conv output -> q, k, v, g, beta.
  m.def(
      "fused_post_conv_prep(Tensor conv_output, Tensor a, Tensor b, "
      "Tensor A_log, Tensor dt_bias, int num_k_heads, int head_k_dim, "
      "int head_v_dim, bool apply_l2norm=True, bool output_g_exp=False) -> "
      "(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)");
  // The .out variants return nothing: torch.compile functionalizes a custom
  // op's mutations, but not outputs that alias its inputs.
  m.def(
      "fused_post_conv_prep.out(Tensor conv_output, Tensor a, Tensor b, "
      "Tensor A_log, Tensor dt_bias, int num_k_heads, int head_k_dim, "
      "int head_v_dim, bool apply_l2norm=True, bool output_g_exp=False, *, "
      "Tensor(a!) q, Tensor(b!) k, Tensor(c!) v, Tensor(d!) g, Tensor(e!) beta) -> ()");
  // Op 2: the conv's input -> the causal conv (+ SiLU) -> op 1, in one pass;
  // conv_states is read and updated.
  m.def(
      "causal_conv1d_post_conv_prep(Tensor x, Tensor conv_weight, Tensor? conv_bias, "
      "Tensor(s!) conv_states, Tensor query_start_loc, Tensor? cache_indices, "
      "Tensor? has_initial_state, Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, "
      "int num_k_heads, int head_k_dim, int head_v_dim, bool apply_l2norm=True, "
      "bool output_g_exp=False, bool silu=True, int pad_slot_id=-1) -> "
      "(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)");
  m.def(
      "causal_conv1d_post_conv_prep.out(Tensor x, Tensor conv_weight, Tensor? conv_bias, "
      "Tensor(s!) conv_states, Tensor query_start_loc, Tensor? cache_indices, "
      "Tensor? has_initial_state, Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, "
      "int num_k_heads, int head_k_dim, int head_v_dim, bool apply_l2norm=True, "
      "bool output_g_exp=False, bool silu=True, int pad_slot_id=-1, *, "
      "Tensor(a!) q, Tensor(b!) k, Tensor(c!) v, Tensor(d!) g, Tensor(e!) beta) -> ()");
}
