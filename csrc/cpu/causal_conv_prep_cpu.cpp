// Op 2's CPU backend: the conv and op 1 for blocks of tokens, parallel over
// tokens (kernels.h's conv_rows for this CPU's instruction set); then each
// sequence's cache line, once every read of the old lines is done. Checks
// and allocation are shared with CUDA (causal_conv_prep.cpp).
#include <cstring>
#include <vector>

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>

#include "../post_conv_prep_math.h"
#include "kernels.h"

namespace gdn::cpu {
namespace {

// Sequence i's new cache line: the last W-1 columns of [old line | its x],
// copied bit for bit. Column c takes old column c + n where it does not come
// from x, a column to its right that is written later, so the line is
// updated in place in order.
template <typename Bits>
void write_cache_line(const CausalConvPrepParams& p, int64_t i) {
  const int64_t T = p.prep.L;
  const int64_t bound0 = p.query_start_loc[i * p.query_start_loc_stride];
  const int64_t bound1 = p.query_start_loc[(i + 1) * p.query_start_loc_stride];
  // Clamped: bounds that are not what SPEC asks for never reach outside x.
  const int64_t start = std::min<int64_t>(std::max<int64_t>(bound0, 0), T);
  const int64_t end = std::min<int64_t>(std::max<int64_t>(bound1, start), T);
  const int64_t n = end - start;
  const int64_t line = p.cache_indices ? p.cache_indices[i * p.cache_indices_stride] : i;
  if (n == 0 || line == p.pad_slot_id || line < 0 || line >= p.N) return;
  const bool initial = p.has_initial_state && p.has_initial_state[i * p.has_initial_state_stride];
  const Bits* x = static_cast<const Bits*>(p.x);
  Bits* state = static_cast<Bits*>(p.states) + line * p.states_stride_line;
  for (int64_t c = 0; c < p.W - 1; ++c) {
    const int64_t pos = end - (p.W - 1) + c;
    Bits* out = state + c * p.states_stride_tap;
    for (int64_t d = 0; d < p.D; ++d) {
      Bits value{};
      if (pos >= start) {
        value = x[pos * p.x_stride_row + d * p.x_stride_feat];
      } else if (initial) {
        value = state[(c + n) * p.states_stride_tap + d * p.states_stride_feat];
      }
      out[d * p.states_stride_feat] = value;
    }
  }
}

void run_cpu(const CausalConvPrepParams& p, int32_t /*device_index*/) {
  const int64_t D = p.D, W = p.W;
  std::vector<float> weight(W * D), bias(D, 0.f);
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t j = 0; j < W; ++j) {
      weight[j * D + d] = bits_to_float(
          p.weight.kind, load_bits(p.weight, d * p.weight.stride0 + j * p.weight.stride1));
    }
    if (p.bias.data != nullptr) {
      bias[d] = bits_to_float(p.bias.kind, load_bits(p.bias, d * p.bias.stride0));
    }
  }
  const ConvTables tables{weight.data(), bias.data()};
  const bool wide = p.prep.conv_kind == ScalarKind::kFloat32;
  const int64_t row_bytes = D * element_bytes(p.prep.conv_kind) + 8 * p.prep.HV;
  const RowSchedule schedule = row_schedule(p.prep.L, row_bytes);
  const ConvRowsKernel kernel = capability().conv_rows;
  torch::stable::parallel_for(0, p.prep.L, schedule.grain, [&](int64_t begin, int64_t end) {
    kernel(p, tables, begin, end, schedule.stream_stores);
  });
  torch::stable::parallel_for(0, p.B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (wide) {
        write_cache_line<uint32_t>(p, i);
      } else {
        write_cache_line<uint16_t>(p, i);
      }
    }
  });
}

}  // namespace
}  // namespace gdn::cpu

STABLE_TORCH_LIBRARY_IMPL(gdn, CPU, m) {
  m.impl("causal_conv1d_post_conv_prep",
         TORCH_BOX(&gdn::causal_conv_prep_with<&gdn::cpu::run_cpu>));
  m.impl("causal_conv1d_post_conv_prep.out",
         TORCH_BOX(&gdn::causal_conv_prep_out_with<&gdn::cpu::run_cpu>));
}
